"""Site calibration measured in the loop (issue 24 point 5; docs/site.md): a source the model never saw, holding two
labels, stands for "a new site". Over many random draws, k of its labelled films fit a site calibration (the one
`cxr validate` fits: runtime.site_calibration.fit) and the rest of its films are scored before and after.

The new sites:

- **ieee8023 held out, LOSO.** A model trained the `cxr loso` way (the leave-one-source-out protocol of
  training/evaluation/loso.py: its `baseline` variant's settings, 160 px, 8 epochs, EfficientNet-Lite0 from
  ImageNet) without any ieee8023 patient (holdout "ieee8023": all its images, COVID-19, Pneumonia and its two
  Normal films) and without the hospitals the baseline never trains on (Hannover, Montgomery, Shenzhen). It learns
  from NIH alone: Normal and Pneumonia. **It has never seen a COVID-19 film**: its COVID-19 output was trained
  towards "no" on every image. A second run takes `cxr loso`'s `hannover` variant (Hannover's COVID-19 films in
  training): it knows COVID-19 from one hospital's ICU films. The new site is ieee8023's COVID-19 and Pneumonia
  films (two labels). `cxr loso`'s own folds hold out one label of ieee8023 at a time (`ieee8023-covid` needs
  Hannover's COVID-19 in training); `parse_holdout("ieee8023")` holds out the whole source, which these runs do.
- **The released model** on the held-out hospitals: Hannover (COVID-19) and Montgomery + Shenzhen (Normal) pooled,
  scored by the exported model through the one Predictor (onnxruntime).

Per draw: k films at random among the site's films, redrawn until they hold at least two classes (`cxr validate`
refuses one class); the calibration is fitted on them by `runtime.site_calibration.fit` (`cxr validate` needs 10
films: k = 5 is what the maths gives below that floor); every film of a patient not in the draw is scored, with the
model's own probabilities (before) and the calibrated ones (after): accuracy, macro AUC (one-vs-rest, over the
classes the site holds), and the share and accuracy of the confident results (the band: the model's rule before,
the calibration's after; withheld films have none). Mean, standard deviation, 2.5 and 97.5 percentiles and the
worst draw, over draws.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.classes import CLASSES
from core.markdown import table
from core.metrics import macro_auc
from runtime.bands import KIND, MIN_SUPPORT, TARGET_ACCURACY, band, choose_threshold
from runtime.site_calibration import calibrated_probabilities, fit

from ..data.dataset import held_out_patients, load_prepared
from ..loop.config import TrainConfig
from .loso import OPTIONAL_SOURCES, VARIANTS

NEW_SITE_SOURCE = "ieee8023"
NEW_SITE_LABELS = ("COVID-19", "Pneumonia")
NEW_SITE_VARIANTS = ("baseline", "hannover")  # `cxr loso` variants: NIH alone; NIH and Hannover's COVID-19
KS = (5, 10, 20)
DRAWS = 200
MAX_REDRAWS = 1000


# ---------------------------------------------------------------------------------------------------------------
# The draws: pure numpy on logits, for any model.


@dataclass
class SiteFilms:
    """One new site's films as the model scored them: raw logits [n, K], labels (class index), patients, withheld
    (no class given), unlike_training (shown, marked so), and the model's card (classes, temperature,
    uncertainty rule), as model.json has them."""

    logits: np.ndarray
    labels: np.ndarray
    patients: np.ndarray
    withheld: np.ndarray
    unlike_training: np.ndarray
    card: dict


def draw_films(rng: np.random.Generator, labels: np.ndarray, k: int) -> np.ndarray:
    """k film indices at random (without replacement) holding at least two classes (redrawn until they do)."""
    if len(set(labels.tolist())) < 2:
        raise ValueError("a new site needs films of at least two classes")
    if k >= len(labels):
        raise ValueError(f"k = {k} leaves no film of {len(labels)} to score")
    for _ in range(MAX_REDRAWS):
        chosen = rng.choice(len(labels), k, replace=False)
        if len(set(labels[chosen].tolist())) >= 2:
            return np.sort(chosen)
    raise ValueError(f"no draw of {k} films held two classes in {MAX_REDRAWS} tries")


def _scores(probabilities, labels, bands) -> dict:
    correct = probabilities.argmax(1) == labels
    confident = np.asarray([b == "confident" for b in bands])
    return {"accuracy": float(correct.mean()), "macro_auc": macro_auc(labels, probabilities),
            "confident_share": float(confident.mean()),
            "confident_accuracy": float(correct[confident].mean()) if confident.any() else float("nan")}


def calibration_draws(site: SiteFilms, ks=KS, draws: int = DRAWS, seed: int = 0) -> dict:
    """{k: {"before": {metric: [per draw]}, "after": {...}, "scored": [films scored per draw],
    "classes_drawn": [...]}}: per draw, the calibration fitted on k films and every film of the other patients
    scored before and after."""
    z, y = np.asarray(site.logits, np.float64), np.asarray(site.labels, int)
    patients = np.asarray(site.patients).astype(str)
    withheld, unlike = np.asarray(site.withheld, bool), np.asarray(site.unlike_training, bool)
    card, temperature = site.card, float(site.card["temperature"])
    model_rule = card.get("uncertainty")
    before_all = calibrated_probabilities(z, np.zeros(z.shape[1]), temperature)
    before_bands = [band(p, bool(w), model_rule, bool(u)) for p, w, u in zip(before_all, withheld, unlike)]
    rng = np.random.default_rng(seed)
    out = {}
    for k in ks:
        per = {"before": {}, "after": {}, "scored": [], "fitted_temperature": []}
        for _ in range(draws):
            chosen = draw_films(rng, y, k)
            rest = ~np.isin(patients, patients[chosen])
            if len(set(y[rest].tolist())) < 2:
                continue
            calibration = fit(z[chosen], y[chosen], withheld[chosen] | unlike[chosen], card)
            after = calibrated_probabilities(z[rest], calibration.offsets, temperature, calibration.temperature)
            after_bands = [band(p, bool(w), calibration.band, bool(u))
                           for p, w, u in zip(after, withheld[rest], unlike[rest])]
            for name, scores in (("before", _scores(before_all[rest], y[rest], np.asarray(before_bands,
                                                                                         object)[rest])),
                                 ("after", _scores(after, y[rest], after_bands))):
                for metric, value in scores.items():
                    per[name].setdefault(metric, []).append(value)
            per["scored"].append(int(rest.sum()))
            per["fitted_temperature"].append(bool(calibration.fitted_temperature))
        out[k] = per
    return out


def spread(values) -> dict:
    """mean, sd, 2.5 / 97.5 percentiles and min over draws (NaN ignored: a draw with no confident result)."""
    v = np.asarray(values, float)
    v = v[~np.isnan(v)]
    if not len(v):
        return {"mean": None, "sd": None, "p2_5": None, "p97_5": None, "min": None, "draws": 0}
    return {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
            "p2_5": float(np.percentile(v, 2.5)), "p97_5": float(np.percentile(v, 97.5)), "min": float(v.min()),
            "draws": int(len(v))}


def summarise(draws: dict) -> dict:
    """Per k: each metric's spread before and after, the change in accuracy (after - before, per draw), the share
    of draws in which accuracy fell, and the films scored per draw."""
    out = {}
    for k, per in draws.items():
        before, after = per["before"], per["after"]
        change = np.asarray(after["accuracy"]) - np.asarray(before["accuracy"])
        out[k] = {"draws": len(per["scored"]), "scored_mean": float(np.mean(per["scored"])),
                  "before": {m: spread(v) for m, v in before.items()},
                  "after": {m: spread(v) for m, v in after.items()},
                  "accuracy_change": spread(change),
                  "accuracy_fell": float((change < 0).mean()),
                  "temperature_fitted": float(np.mean(per["fitted_temperature"]))}
    return out


def _cell(s: dict, digits: int = 2) -> str:
    if s["mean"] is None:
        return "n/a"
    return f"{s['mean']:.{digits}f} ± {s['sd']:.{digits}f}"


def _pair(summary: dict, metric: str) -> str:
    b, a = summary["before"][metric], summary["after"][metric]
    text = f"{_cell(b)} → {_cell(a)}"
    if a["mean"] is not None:
        text += f" [{a['p2_5']:.2f}, {a['p97_5']:.2f}]"
    return text


def calibration_table(sites: dict[str, dict]) -> str:
    """Markdown: one row per site and k. `sites`: {site title: summarise(...)}. Cells: mean ± sd over draws before
    → after, and the after's 2.5-97.5 percentile range over draws."""
    head = ["new site", "k", "draws", "films scored", "accuracy before → after", "worst draw after",
            "draws worse", "macro AUC before → after", "confident share before → after",
            "confident accuracy before → after"]
    rows = []
    for title, summary in sites.items():
        for k, s in summary.items():
            rows.append([title, str(k), str(s["draws"]), f"{s['scored_mean']:.0f}", _pair(s, "accuracy"),
                         f"{s['after']['accuracy']['min']:.2f}", f"{100 * s['accuracy_fell']:.0f}%",
                         _pair(s, "macro_auc"), _pair(s, "confident_share"), _pair(s, "confident_accuracy")])
    return table(head, rows) + "\n"


# ---------------------------------------------------------------------------------------------------------------
# The LOSO new site: ieee8023 held out (torch: training and scoring the run).


def new_site_holdout(prepared: Path, variant: str = "baseline") -> str:
    """The run's holdout: the hospitals the `cxr loso` variant does not train on (those the prepared data holds), and
    the whole of ieee8023."""
    available = {r["source"] for r in load_prepared(prepared)[1]}
    if NEW_SITE_SOURCE not in available:
        raise ValueError(f"{prepared} holds no {NEW_SITE_SOURCE} film: prepare ../shared/data/cxr")
    missing = set(VARIANTS[variant].sources) - available
    if missing:
        raise ValueError(f"variant {variant} trains on {', '.join(sorted(missing))}, which {prepared} does not hold")
    trained = VARIANTS[variant].sources
    return ",".join([s for s in OPTIONAL_SOURCES if s in available and s not in trained] + [NEW_SITE_SOURCE])


def new_site_config(prepared: Path, out: Path, variant: str = "baseline", epochs: int = 8, seed: int = 0,
                    arch: str = "efficientnet_lite0", weights: str = "imagenet") -> TrainConfig:
    """The training run: a `cxr loso` variant's settings (training/evaluation/loso.py VARIANTS and run_variant) with
    all of ieee8023 out. `baseline`: NIH alone (Normal, Pneumonia); `hannover`: with Hannover's COVID-19."""
    return TrainConfig(data=str(prepared), out=str(out), **{"arch": arch, "weights": weights, "epochs": epochs,
                       "seed": seed, "holdout": new_site_holdout(prepared, variant), **VARIANTS[variant].options})


def train_new_site(config: TrainConfig) -> Path:
    """Train (resumably; a finished run is not trained again) and return its best.pt."""
    from ..loop.train import train

    folder = Path(config.out)
    if not (folder / "summary.json").exists():
        train(config, resume=(folder / "last.pt").exists())
    return folder / "best.pt"


def _model_rule(probabilities: np.ndarray, labels: np.ndarray, ood: np.ndarray) -> dict:
    """The uncertainty rule of a checkpoint chosen on its validation split as the export chooses it
    (export/uncertainty.py: runtime.bands.choose_threshold on the films not flagged OOD), in model.json's form."""
    kept = ~ood
    correct = probabilities.argmax(1) == labels
    threshold = choose_threshold(probabilities[kept].max(1), correct[kept], TARGET_ACCURACY, MIN_SUPPORT)
    return {"rule": {"kind": KIND, "threshold": threshold}, "target_accuracy": TARGET_ACCURACY,
            "min_support": MIN_SUPPORT, "target_reached": threshold is not None}


def new_site_films(checkpoint: Path, prepared: Path) -> tuple[SiteFilms, dict]:
    """The held-out ieee8023 films (COVID-19 and Pneumonia) scored by the run's checkpoint on the prepared cache,
    as the exported model would score them without a gate (the OOD distance withholds), and what the model knows:
    (the site's films, a description of the run)."""
    import torch

    from ..model.checkpoint import load_checkpoint
    from .loso import scored

    s = scored(checkpoint, prepared)
    ckpt = s["checkpoint"]
    rows, logits = s["rows"], s["logits"].double().numpy()
    ood = ckpt.ood_scorer()(torch.as_tensor(s["features"])).double().numpy() > ckpt.ood_threshold
    labels = np.array([CLASSES.index(r["label"]) for r in rows])
    holdout = load_checkpoint(checkpoint).config["holdout"]
    excluded = held_out_patients(rows, holdout)
    val = np.array([r["split"] == "val" and r["patient_id"] not in excluded for r in rows])
    probabilities = calibrated_probabilities(logits, np.zeros(len(CLASSES)), ckpt.temperature)
    card = {"classes": list(CLASSES), "temperature": ckpt.temperature,
            "uncertainty": _model_rule(probabilities[val], labels[val], ood[val])}
    site = np.array([r["source"] == NEW_SITE_SOURCE and r["label"] in NEW_SITE_LABELS for r in rows])
    films = SiteFilms(logits[site], labels[site], np.array([r["patient_id"] for r in rows])[site], ood[site],
                      np.zeros(int(site.sum()), bool), card)
    trained = [r for r in rows if r["patient_id"] not in excluded and r["split"] == "train"]
    counts = {}
    for r in trained:
        counts[f"{r['source']} {r['label']}"] = counts.get(f"{r['source']} {r['label']}", 0) + 1
    about = {"checkpoint": str(checkpoint), "holdout": holdout, "trained_on": counts,
             "site_films": {c: int((labels[site] == k).sum()) for k, c in enumerate(CLASSES)},
             "site_patients": len(set(films.patients.tolist())),
             "uncertainty_threshold": card["uncertainty"]["rule"]["threshold"], "temperature": ckpt.temperature,
             "site_withheld": int(ood[site].sum())}
    return films, about
