"""`cxr loso`: the leave-one-source-out protocol, the number to move (docs/shortcuts.md).

For each source group that can be held out, every variant is trained and validated without it (all of its
patients' images leave training and validation), then scored on it:

- hannover: Hannover's COVID-19 films (a hospital source), with COVID-19 from ieee8023 in training;
- ieee8023-covid: ieee8023's COVID-19 images, with Hannover's COVID-19 in training (needs Hannover);
- ieee8023-pneumonia: ieee8023's Pneumonia images, with NIH's Pneumonia in training;
- montgomery, shenzhen: the Normal films of two hospitals that are not NIH (../shared/data/montgomery-shenzhen),
  each held out while the other can be in training.

Sources that a variant does not train on (Hannover, Montgomery, Shenzhen unless it names them) are held out of all
its runs, so their folds are scored by the variant's main run. For every fold the share of held-out films sent to
Pneumonia is reported: Pneumonia is the class with the most varied training sources, and films unlike any of them
fall into it (the "Pneumonia sink", docs/shortcuts.md).

Per fold: the sensitivity for the held-out class, the AUC of that class's probability between the held-out images
and the other sources' test images of the other classes, the within-source AUC against the same source's test
images of another label where it has one, and the share of held-out images sent to each class (how a failure
shows). Every interval is a 95% bootstrap over patients. Each variant also gets the internal test split of
../cxr (the same images for every variant), its within-class source probe and its sensitivity to noise and
re-encoding. Runs already scored are not run again, so an interrupted protocol continues where it stopped.

  cxr loso --data ../shared/data/cxr --data ../shared/data/hannover --data ../shared/data/montgomery-shenzhen \
           --out work/loso --variants baseline normals-balance --seeds 0 1
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from core.classes import CLASSES
from core.jsonio import write_json
from core.markdown import table
from core.metrics import auc_with_ci, evaluate_predictions, rate_with_ci, within_source_aucs

from ..data.dataset import in_group, load_prepared, parse_holdout
from ..loop.config import TrainConfig
from ..loop.train import train
from ..model.checkpoint import load_checkpoint
from ..model.inference import logits_and_features
from .evaluate import noise_sensitivity
from .lungs import evidence_against_true_masks
from .report import fmt
from .robustness import reencoding_sensitivity
from .source_probe import source_probe

INTERNAL_SOURCES = ("ieee8023", "nih")  # the internal test split every variant is scored on: ../cxr's


@dataclass(frozen=True)
class Fold:
    holdout: str  # the group left out (TrainConfig.holdout)
    label: str  # the class of its images
    needs: str = ""  # a source that must be in training for the fold to mean anything


FOLDS = {
    "hannover": Fold("hannover", "COVID-19"),
    "ieee8023-covid": Fold("ieee8023:COVID-19", "COVID-19", needs="hannover"),
    "ieee8023-pneumonia": Fold("ieee8023:Pneumonia", "Pneumonia"),
    "montgomery": Fold("montgomery", "Normal"),
    "shenzhen": Fold("shenzhen", "Normal"),
}

# Sources a variant may add to ../cxr's; each is held out of every run of a variant that does not name it.
OPTIONAL_SOURCES = ("hannover", "montgomery", "shenzhen")
# The hospitals never in the old default's training: each is the name of its own fold.
UNSEEN_FOLDS = OPTIONAL_SOURCES
NORMALS = ("montgomery", "shenzhen")


@dataclass(frozen=True)
class Variant:
    options: dict = field(default_factory=dict)  # TrainConfig fields
    sources: tuple = ()  # OPTIONAL_SOURCES in training (the others are held out of every run)
    lung_crop: bool = False  # prepared with the lung crop (needs --lungs: a `cxr lungs-train` segmenter)


REMEDIES = {"balance_sources": True, "select": "within_source", "adversary": 0.3}
BALANCED = {"balance_sources": True}
VARIANTS = {
    # The first table (docs/shortcuts.md, "leave-one-source-out"): ../cxr with or without Hannover's COVID-19.
    "baseline": Variant(),
    "no-harmonize": Variant({"harmonize": False}),  # what harmonisation does to re-encoding
    "hannover": Variant(sources=("hannover",)),
    "balance": Variant(BALANCED, sources=("hannover",)),
    "select": Variant({"select": "within_source"}, sources=("hannover",)),
    "adversary": Variant({"adversary": 0.3}, sources=("hannover",)),
    "all": Variant(REMEDIES, sources=("hannover",)),
    "lite1": Variant({**REMEDIES, "arch": "efficientnet_lite1"}, sources=("hannover",)),
    "lite2": Variant({**REMEDIES, "arch": "efficientnet_lite2"}, sources=("hannover",)),
    "lungcrop": Variant(REMEDIES, sources=("hannover",), lung_crop=True),
    # Against the Pneumonia sink (issue: Normal from three hospitals): Hannover stays unseen in all of them.
    "cxr-balance": Variant(BALANCED),  # loss weights alone, no new data
    "normals": Variant(sources=NORMALS),  # the new normals, naively
    "normals-balance": Variant(BALANCED, sources=NORMALS),  # ... with source balancing inside Normal
    "normals-style": Variant({**BALANCED, "style": True}, sources=NORMALS),
    "normals-adversary": Variant({**BALANCED, "adversary": 0.3}, sources=NORMALS),
    "normals-mixstyle": Variant({**BALANCED, "mixstyle": 0.5}, sources=NORMALS),
    "style": Variant({"style": True}),  # processing style without the new data
    "normals-combined": Variant({**BALANCED, "style": True, "mixstyle": 0.5}, sources=NORMALS),
}


def _join(*groups: str) -> str:
    return ",".join(g for g in groups if g)


def runs_of(variant: Variant, available: set[str]) -> dict[str, str]:
    """{"internal" or fold name: the holdout of the training run that scores it}. `available`: the sources of the
    prepared data. Folds without their source, or that cannot mean anything for this variant (no COVID-19 source
    left in training), are absent."""
    base_groups = [s for s in OPTIONAL_SOURCES if s in available and s not in variant.sources]
    base = _join(*base_groups)
    runs = {"internal": base}
    for name, fold in FOLDS.items():
        source = parse_holdout(fold.holdout)[0][0]
        if source not in available or (fold.needs and fold.needs not in variant.sources):
            continue
        runs[name] = base if source in base_groups else _join(base, fold.holdout)
    return runs


@torch.no_grad()
def scored(checkpoint: Path, prepared: Path) -> dict:
    """Calibrated probabilities and pooled features of every prepared image (the cache), in manifest order."""
    from ..data.dataset import load_split

    ckpt = load_checkpoint(checkpoint).finished()
    model, normalize = ckpt.classifier(), ckpt.normalize()
    splits = {name: load_split(prepared, name) for name in ("train", "val", "test")}
    rows = [r for s in splits.values() for r in s.rows]
    images = torch.cat([s.images for s in splits.values()])
    logits, features = logits_and_features(model, normalize, images)
    probs = torch.softmax(logits.double() / ckpt.temperature, 1).numpy()
    return {"rows": rows, "probs": probs, "logits": logits, "features": features.numpy(), "images": images,
            "checkpoint": ckpt}


def fold_metrics(fold: Fold, s: dict, n_boot: int) -> dict:
    """Scores of the held-out group: sensitivity, AUC against other sources' other classes, within-source AUC and
    accuracy where its source holds another label, and where its images went."""
    (source, _), = parse_holdout(fold.holdout)
    label, rows, probs = fold.label, s["rows"], s["probs"]
    k = CLASSES.index(label)
    held = np.array([in_group(r, parse_holdout(fold.holdout)) and r["label"] == label for r in rows])
    test = np.array([r["split"] == "test" for r in rows])
    src = np.array([r["source"] for r in rows])
    y = np.array([CLASSES.index(r["label"]) for r in rows])
    patients = np.array([r["patient_id"] for r in rows])
    predicted = probs.argmax(1)

    result = {"held_out": {"source": source, "label": label, "images": int(held.sum()),
                           "patients": len(set(patients[held].tolist()))},
              "sensitivity": rate_with_ci(predicted[held] == k, patients[held], n_boot),
              "sent_to": {c: float((predicted[held] == j).mean()) for j, c in enumerate(CLASSES)}}
    others = test & (src != source) & (y != k)
    both = held | others
    result["auc_vs_other_sources"] = auc_with_ci(held[both], probs[both, k], patients[both], n_boot)
    same = test & (src == source) & (y != k) & ~held
    if same.sum() >= 2:
        pair = held | same
        result["within_source"] = auc_with_ci(held[pair], probs[pair, k], patients[pair], n_boot)
        result["within_source"]["accuracy"] = float((predicted[pair] == y[pair]).mean())
        result["within_source"]["other_labels"] = sorted({CLASSES[j] for j in y[same]})
    return result


def internal_metrics(s: dict, n_boot: int, lung_masks: Path | None = None) -> dict:
    """The internal test split of ../cxr's sources, with the robustness and the within-class source probe."""
    rows, probs = s["rows"], s["probs"]
    test = [i for i, r in enumerate(rows) if r["split"] == "test" and r["source"] in INTERNAL_SOURCES]
    y = np.array([CLASSES.index(rows[i]["label"]) for i in test])
    patients, sources = [rows[i]["patient_id"] for i in test], [rows[i]["source"] for i in test]
    result = evaluate_predictions(y, probs[test], patients, sources, n_boot)
    result["within_source"] = within_source_aucs(y, probs[test], patients, sources, n_boot)
    ckpt = s["checkpoint"]
    result["noise_sensitivity"] = noise_sensitivity(ckpt.classifier(), ckpt.normalize(), s["images"][test],
                                                    s["logits"][test])
    result["reencoding"] = reencoding_sensitivity(ckpt, [rows[i]["file"] for i in test])
    trained = [i for i, r in enumerate(rows) if r["source"] in set(ckpt.data_summary["sources"])]
    trained_labels = np.array([CLASSES.index(rows[i]["label"]) for i in trained])
    result["source_probe"] = source_probe(s["features"][trained], trained_labels, [rows[i]["source"] for i in trained],
                                          [rows[i]["patient_id"] for i in trained])
    if lung_masks:
        result["evidence_true_masks"] = evidence_against_true_masks(ckpt, [rows[i]["file"] for i in test], lung_masks)
    hannover_test = test_rows(rows, "hannover")
    if hannover_test and "hannover" in ckpt.data_summary["sources"]:
        result["hannover_test_correct"] = float((probs[hannover_test].argmax(1) == CLASSES.index("COVID-19")).mean())
    return result


def test_rows(rows: list[dict], source: str) -> list[int]:
    return [i for i, r in enumerate(rows) if r["split"] == "test" and r["source"] == source]


def run_name(variant: str, seed: int) -> str:
    """The folder of one variant's runs with one seed (seed 0 keeps the first table's folder names)."""
    return variant if seed == 0 else f"{variant}-seed{seed}"


def run_variant(name: str, prepared: Path, out: Path, epochs: int, seed: int, n_boot: int,
                arch: str = "efficientnet_lite0", weights: str = "imagenet", lung_masks: Path | None = None) -> dict:
    """Train (resumably) and score every run of one variant; cached in OUT/<variant>[-seedN]/results.json."""
    variant = VARIANTS[name]
    results_path = out / run_name(name, seed) / "results.json"
    if results_path.exists():
        return json.loads(results_path.read_text())
    results = {"variant": name, "seed": seed, "options": variant.options, "sources_in_training": list(variant.sources),
               "runs": {}}
    trained = {}
    available = {r["source"] for r in load_prepared(prepared)[1]}
    for what, holdout in runs_of(variant, available).items():
        folder = out / run_name(name, seed) / (holdout.replace(":", "-").replace(",", "+") or "all-sources")
        if holdout not in trained:
            config = TrainConfig(data=str(prepared), out=str(folder), **{"arch": arch, "weights": weights,
                                 "epochs": epochs, "seed": seed, "holdout": holdout, **variant.options})
            same = _finished_run(out, config)
            if same:  # another variant trained this very configuration already (e.g. hannover's Hannover fold
                # is the baseline): score that run instead of training it again
                print(f"=== {name}: {what} (holdout {holdout or 'none'}): the run in {same[0]}", flush=True)
                folder, training = same
            else:
                started = time.perf_counter()
                print(f"=== {name}: {what} (holdout {holdout or 'none'})", flush=True)
                summary = train(config, resume=(folder / "last.pt").exists())
                training = {**{k: summary[k] for k in ("epochs", "best_epoch", "train_seconds")},
                            "wall_seconds": time.perf_counter() - started}
            trained[holdout] = {"folder": folder, "scored": scored(folder / "best.pt", prepared), "training": training}
        run = trained[holdout]
        results["runs"][what] = {"holdout": holdout, "folder": str(run["folder"]), "training": run["training"],
                                 **(internal_metrics(run["scored"], n_boot, lung_masks) if what == "internal"
                                    else fold_metrics(FOLDS[what], run["scored"], n_boot))}
    results_path.parent.mkdir(parents=True, exist_ok=True)
    write_json(results_path, results)
    return json.loads(results_path.read_text())


def _finished_run(out: Path, config: TrainConfig):
    """(folder, training record) of a finished run in OUT with the same training settings as `config`, or None."""
    from dataclasses import asdict

    wanted = {k: v for k, v in asdict(config).items() if k != "out"}
    for results in sorted(out.glob("*/results.json")):
        for run in json.loads(results.read_text())["runs"].values():
            best = Path(run["folder"]) / "best.pt"
            if best.exists() and {k: v for k, v in load_checkpoint(best).config.items() if k != "out"} == wanted:
                return Path(run["folder"]), run["training"]
    return None


def _cell(value, ci=None) -> str:
    return fmt(value, ci, digits=2, ci_digits=2)


FOLD_TITLES = {"hannover": "Hannover COVID-19", "ieee8023-covid": "ieee8023 COVID-19",
               "ieee8023-pneumonia": "ieee8023 Pneumonia", "montgomery": "Montgomery Normal",
               "shenzhen": "Shenzhen Normal"}


def sink_share(results: dict) -> float | None:
    """The mean share of the unseen hospitals' films (UNSEEN_FOLDS present) sent to Pneumonia: the sink."""
    shares = [results["runs"][f]["sent_to"]["Pneumonia"] for f in UNSEEN_FOLDS if f in results["runs"]]
    return float(np.mean(shares)) if shares else None


def loso_table(rows: dict[str, dict]) -> str:
    """One row per variant and seed: the internal split, each fold's sensitivity, AUC against the other sources and
    the share sent to Pneumonia (and the within-source AUC of the ieee8023 folds), then robustness and cost."""
    folds = [f for f in FOLDS if any(f in r["runs"] for r in rows.values())]
    head = ["variant", "seed", "internal macro AUC (cxr test)"]
    for fold in folds:
        title = FOLD_TITLES[fold]
        head += [f"{title}: sensitivity", "AUC vs others", "sent to Pneumonia"]
        if fold.startswith("ieee8023"):
            head.append("within ieee8023")
    head += ["unseen hospitals sent to Pneumonia (mean)", "probe within COVID-19 / Pneumonia (bal. acc.)",
             "+-2 grey levels / JPEG 75 top-1 changed", "evidence inside true lungs", "training min (all runs)"]
    lines = []
    for r in rows.values():
        runs = r["runs"]
        internal = runs["internal"]["all"]
        cells = [r["variant"], str(r.get("seed", 0)), _cell(internal["macro_auc"], internal["ci95"]["macro_auc"])]
        for fold in folds:
            f = runs.get(fold)
            width = 4 if fold.startswith("ieee8023") else 3
            if f is None:
                cells += ["n/a"] * width
                continue
            auc = f["auc_vs_other_sources"]
            cells += [_cell(f["sensitivity"]["value"], f["sensitivity"]["ci95"]), _cell(auc["auc"], auc["ci95"]),
                      f"{f['sent_to']['Pneumonia']:.2f}"]
            if width == 4:
                w = f.get("within_source")
                cells.append(_cell(w["auc"], w["ci95"]) if w else "n/a")
        sink = sink_share(r)
        cells.append("n/a" if sink is None else f"{sink:.2f}")
        probe = runs["internal"]["source_probe"]["within_label"]
        cells.append(" / ".join(f"{probe[c]['balanced_accuracy']:.2f}" if c in probe else "n/a"
                                for c in ("COVID-19", "Pneumonia")))
        re = runs["internal"]["reencoding"]["jpeg75"]
        cells.append(f"{100 * runs['internal']['noise_sensitivity']:.0f}% / {100 * re['top1_changed']:.0f}%")
        evidence = runs["internal"].get("evidence_true_masks")
        cells.append(f"{evidence['mean']:.2f} ({evidence['images']})" if evidence else "n/a")
        seconds = {v["holdout"]: v["training"]["wall_seconds"] for v in runs.values()}
        cells.append(f"{sum(seconds.values()) / 60:.0f}")
        lines.append(cells)
    return table(head, lines) + "\n"


def seed_summary(rows: dict[str, dict]) -> str:
    """Mean and spread (min-max) over seeds of each variant's headline numbers: the run-to-run noise."""
    by_variant: dict[str, list[dict]] = {}
    for r in rows.values():
        by_variant.setdefault(r["variant"], []).append(r)
    folds = [f for f in UNSEEN_FOLDS if any(f in r["runs"] for r in rows.values())]
    head = ["variant", "seeds", "internal macro AUC", *(f"{FOLD_TITLES[f]}: sensitivity" for f in folds),
            *(f"{FOLD_TITLES[f]}: AUC" for f in folds), "sent to Pneumonia (mean over unseen hospitals)"]

    def spread(values: list[float]) -> str:
        values = [v for v in values if v is not None]
        if not values:
            return "n/a"
        if len(values) == 1:
            return f"{values[0]:.2f}"
        return f"{np.mean(values):.2f} ({min(values):.2f}-{max(values):.2f})"

    lines = []
    for name, results in by_variant.items():
        cells = [name, str(len(results)), spread([r["runs"]["internal"]["all"]["macro_auc"] for r in results])]
        cells += [spread([r["runs"][f]["sensitivity"]["value"] for r in results if f in r["runs"]]) for f in folds]
        cells += [spread([r["runs"][f]["auc_vs_other_sources"]["auc"] for r in results if f in r["runs"]])
                  for f in folds]
        cells.append(spread([sink_share(r) for r in results]))
        lines.append(cells)
    return table(head, lines) + "\n"
