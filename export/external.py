"""An exported model on sources it never saw: what a hospital outside the data would get from the file that ships.

`cxr release` scores the released model on held-out datasets (by default ../shared/data/hannover, which no step of
its training or validation read) through the one predictor (runtime.predictor.Predictor), so the numbers are those of
the app, the CLI and the API. Per held-out source and class:

- `shown`: the share of its images for which the app shows each class, or withholds the diagnosis (not a chest
  X-ray); `sensitivity` is the share shown as their own class, with a 95% bootstrap CI over patients;
- `auc_vs_other_sources`: that class's probability, held-out images against the internal test images of the other
  sources' other classes (can the model tell them apart at any threshold?), with its CI;
- the uncertain share, and the evidence in the lungs where the model has the segmenter's outputs.

The result goes into model.json `external` with plain sentences for the model card (`summary`).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from core.classes import CLASSES
from core.decode import DecodeError, decode
from core.metrics import auc_with_ci, rate_with_ci

# The app shows no class: the chest gate refused the image (docs/gate.md), or, for a model without a gate, it is
# out of distribution.
WITHHELD = "withheld"


def score(predictor, rows: list[dict]) -> tuple[list[dict], list[dict]]:
    """Predict every row's `path`: (the rows that decoded, each with its `result`; the ones that did not, each with
    its `error`). One bad file is reported and the others are scored."""
    scored, failed = [], []
    for row in rows:
        try:
            scored.append({**row, "result": predictor.predict(decode(row["path"]))})
        except DecodeError as e:
            failed.append({**row, "error": e.reason})
    return scored, failed


def group_metrics(held: list[dict], others: list[dict], label: str, n_boot: int = 1000) -> dict:
    """The scores of one held-out group (every image labelled `label`) against `others` (internal test images of
    other sources and other classes). Rows carry `patient_id` and the predictor's `result`."""
    patients = np.array([r["patient_id"] for r in held])
    shown = np.array([r["result"]["class"] or WITHHELD for r in held])
    result = {"label": label, "images": len(held), "patients": len(set(patients.tolist())),
              "sensitivity": rate_with_ci(shown == label, patients, n_boot),
              "top_class_sensitivity": float(np.mean([r["result"]["top_class"] == label for r in held])),
              "shown": {name: float(np.mean(shown == name)) for name in (*CLASSES, WITHHELD)},
              "uncertain": float(np.mean([r["result"]["band"] == "uncertain" for r in held])),
              "unlike_training": float(np.mean([bool(r["result"].get("unlike_training")) for r in held]))}
    if others:
        both = held + others
        result["auc_vs_other_sources"] = auc_with_ci(
            [i < len(held) for i in range(len(both))], [r["result"]["probabilities"][label] for r in both],
            [r["patient_id"] for r in both], n_boot)
        result["auc_vs_other_sources"]["other_classes"] = sorted({r["label"] for r in others}, key=CLASSES.index)
    evidence = [r["result"]["lung_evidence"] for r in held if "lung_evidence" in r["result"]]
    if evidence:
        result["lung_evidence_median"] = float(np.median(evidence))
        result["lung_evidence_low"] = float(np.mean([r["result"]["lung_evidence_low"] for r in held]))
    return result


def external_metrics(predictor, held_out: list[dict], internal_test: list[dict], n_boot: int = 1000) -> dict:
    """Score `held_out` rows (file `path`, label, patient_id, source) and the internal test rows, then every
    (source, label) group of the held-out rows against the internal test images of other sources and classes."""
    held_scored, held_failed = score(predictor, held_out)
    test_scored, test_failed = score(predictor, internal_test)
    groups = {}
    for source, label in sorted({(r["source"], r["label"]) for r in held_scored}):
        members = [r for r in held_scored if (r["source"], r["label"]) == (source, label)]
        others = [r for r in test_scored if r["source"] != source and r["label"] != label]
        groups[f"{source}/{label}"] = {"source": source, **group_metrics(members, others, label, n_boot)}
    return {"groups": groups, "unreadable": [{"file": r["file"], "error": r["error"]}
                                             for r in held_failed + test_failed],
            "summary": [sentence(g) for g in groups.values()]}


def _pct(value: float) -> str:
    return f"{100 * value:.0f}%"


def sentence(g: dict) -> str:
    """One group's result in plain words, for the model card."""
    sens = g["sensitivity"]
    lo, hi = sens["ci95"]
    elsewhere = ", ".join(f"{_pct(share)} {'withheld (no diagnosis)' if name == WITHHELD else name}"
                          for name, share in g["shown"].items() if name != g["label"] and share > 0)
    text = (f"On {g['images']} {g['label']} images of {g['patients']} patients from {g['source']}, a source never "
            f"used in training or validation: shown as {g['label']} for {_pct(sens['value'])} (95% CI "
            f"{_pct(lo)}-{_pct(hi)})" + (f"; {elsewhere}" if elsewhere else "") + ".")
    auc = g.get("auc_vs_other_sources")
    if auc:
        lo, hi = auc["ci95"]
        text += (f" {g['label']} probability against the other sources' {' and '.join(auc['other_classes'])} test "
                 f"images: AUC {auc['auc']:.2f} ({lo:.2f}-{hi:.2f}).")
    return text + " One source is not evidence for other hospitals."


def rows_of_test_split(csv_path: Path, data_root: Path) -> list[dict]:
    """The release's test_split.csv (files relative to the folder holding the datasets) as rows with a `path`."""
    with open(csv_path, newline="") as f:
        return [{**r, "path": data_root / r["file"]} for r in csv.DictReader(f)]
