"""How a model does on one site's labelled films (`cxr validate`): every film scored by the one predictor, then the
figures a local acceptance test asks for, with 95 % bootstrap intervals by patient, beside the model card's own,
and the site's calibration measured by cross-validation (runtime/site_calibration.py).

Files that cannot be decoded are skipped and listed, never fatal.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from core import metrics as stats
from core.checksum import sha256_file
from core.jsonio import write_json

from .bands import BANDS
from .predictor import Predictor, each_file
from .site_calibration import cross_validate
from .site_data import Film, read_labelled_set
from .site_profile import fit_profile, write_profile
from .site_report import reliability_svg, report

RELIABILITY_BINS = 10  # a site has tens of films, not thousands: 15 bins would leave most nearly empty


def score_films(predictor, films: list[Film], progress: bool = True) -> tuple[list[dict], list[dict]]:
    """(one entry per film scored: file, label, patient_id, logits, probabilities, top_class, band, withheld,
    unlike_training; one entry per film that could not be decoded: file, label, reason). `predictor` must apply no
    site profile: this is the model as it comes."""
    scored, unreadable = [], []
    outcomes = each_file(predictor, [film.file for film in films], progress=progress, desc="validate")
    for film, (_, result, reason) in zip(films, outcomes):
        if reason is not None:
            unreadable.append({"file": film.file, "label": film.label, "reason": reason})
            continue
        scored.append({"file": film.file, "label": film.label, "patient_id": film.patient_id,
                       "logits": result["logits"], "probabilities": list(result["probabilities"].values()),
                       "top_class": result["top_class"], "band": result["band"],
                       # no class given (OOD, or any other reason the predictor withholds one): no band either
                       "withheld": result["class"] is None,
                       "unlike_training": bool(result.get("unlike_training", False))})
    return scored, unreadable


def arrays(scored: list[dict], classes: list[str]) -> dict:
    """The scored films as arrays: y (class index), probabilities, logits, patients, bands, withheld,
    unlike_training."""
    return {"y": np.array([classes.index(s["label"]) for s in scored], int),
            "probabilities": np.array([s["probabilities"] for s in scored], np.float64).reshape(-1, len(classes)),
            "logits": np.array([s["logits"] for s in scored], np.float64).reshape(-1, len(classes)),
            "patients": np.array([s["patient_id"] for s in scored], str),
            "bands": np.array([s["band"] for s in scored], object),
            "withheld": np.array([s["withheld"] for s in scored], bool),
            "unlike_training": np.array([s["unlike_training"] for s in scored], bool)}


def band_figures(correct, bands, withheld, unlike_training, patients, n_boot: int, seed: int = 0) -> dict:
    """Each band's films and accuracy (95 % CI by patient), the share of films given no class at all, and the share
    marked unlike the training films (shown, always uncertain)."""
    def rate(hits, inside):
        if not inside.any():  # an empty band: nothing to resample
            return {"n": 0, "value": None, "ci95": [None, None]}
        return {"n": int(inside.sum()), **stats.rate_with_ci(hits[inside], patients[inside], n_boot, seed)}

    out = {name: rate(correct, bands == name) for name in BANDS}
    everything = np.ones(len(withheld), bool)
    out["withheld"] = {**rate(withheld, everything), "n": int(withheld.sum())}
    out["unlike_training"] = {**rate(unlike_training, everything), "n": int(unlike_training.sum())}
    return out


def card_figures(card: dict, model_file: str) -> dict:
    """The model card's own figures for this model file: its test split's metrics and bands (None where absent)."""
    files = card.get("files", {})
    entry = files.get(model_file) or files.get(card.get("default_model", ""), {})
    uncertainty = card.get("uncertainty") or {}
    return {"metrics_test": (entry.get("metrics_test") or {}).get("all"), "bands_test": uncertainty.get("bands"),
            "uncertainty_rule": uncertainty.get("rule")}


def site_metrics(scored: list[dict], card: dict, n_boot: int = 1000, seed: int = 0) -> dict:
    """The site's figures (the model as it comes): classification metrics with their CIs, bands, the withheld share,
    reliability, per class counts."""
    classes = list(card["classes"])
    a = arrays(scored, classes)
    y, probs, patients = a["y"], a["probabilities"], a["patients"]
    correct = probs.argmax(1) == y
    return {
        "films": int(len(y)), "patients": int(len(set(patients.tolist()))),
        "films_per_class": {c: int((y == k).sum()) for k, c in enumerate(classes)},
        "metrics": {**stats.classification_metrics(y, probs),
                    "ci95": stats.bootstrap_ci(y, probs, patients, n_boot, seed)},
        "bands": band_figures(correct, a["bands"], a["withheld"], a["unlike_training"], patients, n_boot, seed),
        "reliability": {"bins": stats.reliability_bins(probs, y, RELIABILITY_BINS),
                        "ece": stats.expected_calibration_error(probs, y, RELIABILITY_BINS)},
    }


def calibrated_reliability(scored: list[dict], card: dict, seed: int = 0) -> dict:
    """Reliability of the cross-validated calibrated probabilities (each film scored by a fit on the other patients
    only): what the reliability plot shows after calibration."""
    a = arrays(scored, list(card["classes"]))
    checked = cross_validate(a["logits"], a["y"], a["patients"], a["withheld"], card, seed, a["unlike_training"])
    probs = checked["probabilities"]
    return {"bins": stats.reliability_bins(probs, a["y"], RELIABILITY_BINS),
            "ece": stats.expected_calibration_error(probs, a["y"], RELIABILITY_BINS)}


def default_site_name(src: Path) -> str:
    """The site's name when none is given: the data folder's name (a CSV's own folder)."""
    src = Path(src).resolve()
    return (src if src.is_dir() else src.parent).name or "site"


def validate_site(model_file: Path, src: Path, site: str | None = None, *, n_boot: int = 1000, seed: int = 0,
                  threads: int = 0, progress: bool = True) -> tuple[dict, dict | None]:
    """Score a site's labelled films with the model as it comes and fit its site profile: (metrics.json's content,
    the profile, or None when the films cannot support one: `metrics["profile_refused"]` says why). Raises
    FileNotFoundError / ValueError for a source that is not a labelled set of the model's classes, or one in which
    no film could be read."""
    model_file, src = Path(model_file), Path(src)
    predictor = Predictor(model_file, threads)
    card = predictor.card
    films = read_labelled_set(src, card["classes"])
    scored, unreadable = score_films(predictor, films, progress)
    if not scored:
        reasons = "; ".join(f"{u['file']}: {u['reason']}" for u in unreadable[:3])
        raise ValueError(f"{src}: none of its {len(films)} films could be read ({reasons})")
    site = site or default_site_name(src)
    return summarise(scored, unreadable, card, site=site, data=str(src), model_file=model_file.name,
                     sha256=sha256_file(model_file), n_boot=n_boot, seed=seed)


def summarise(scored: list[dict], unreadable: list[dict], card: dict, *, site: str, data: str, model_file: str,
              sha256: str, n_boot: int = 1000, seed: int = 0, created: str | None = None) -> tuple[dict, dict | None]:
    """validate_site after the scoring: (metrics.json's content, the site profile or None) of the films scored by
    `score_films` (at least one) and those it could not read. The app computes the same from the films its worker
    scored (pwa/static/page/site-validation.js); tests compare the two on the same scored films."""
    a = arrays(scored, list(card["classes"]))
    metrics = {
        "site": site, "data": data, "created": created or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "model": {"name": card["name"], "version": card["version"], "file": model_file, "sha256": sha256},
        "site_figures": site_metrics(scored, card, n_boot, seed),
        "model_card": card_figures(card, model_file),
        "unreadable": unreadable,
    }
    metrics["reliability"] = {"before": metrics["site_figures"]["reliability"]}
    try:
        profile = fit_profile(a["logits"], [s["label"] for s in scored], a["patients"], card, site,
                              model_sha256=sha256, withheld=a["withheld"], unlike_training=a["unlike_training"],
                              n_boot=n_boot, seed=seed,
                              created=metrics["created"])
    except ValueError as e:
        profile = None
        metrics["profile_refused"] = str(e)
        metrics["calibration"] = None
    else:
        metrics["profile_refused"] = None
        metrics["calibration"] = profile["cross_validated"]
        metrics["reliability"]["after"] = calibrated_reliability(scored, card, seed)
    metrics["scored"] = [{k: s[k] for k in ("file", "label", "patient_id", "logits", "probabilities", "top_class",
                                             "band", "withheld", "unlike_training")} for s in scored]
    return metrics, profile


def write_outputs(out: Path, metrics: dict, profile: dict | None) -> list[Path]:
    """report.md, metrics.json, reliability.svg and, when one was fitted, site-profile.json in `out`; a
    site-profile.json left there by an earlier run is removed when this one refuses, so that the folder never holds
    a profile its report does not describe. The paths written."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "metrics.json", metrics)
    (out / "reliability.svg").write_text(reliability_svg(metrics["reliability"]["before"]["bins"],
                                                         (metrics["reliability"].get("after") or {}).get("bins")))
    (out / "report.md").write_text(report(metrics, profile))
    written = [out / "report.md", out / "metrics.json", out / "reliability.svg"]
    if profile:
        write_profile(out / "site-profile.json", profile)
        written.append(out / "site-profile.json")
    else:
        (out / "site-profile.json").unlink(missing_ok=True)
    return written
