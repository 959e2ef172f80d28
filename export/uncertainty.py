"""The uncertainty cue: which results the app may state plainly ("confident") and which it must mark "uncertain".

The rule is chosen at export time on the validation split, from the fp32 model's outputs, and measured on the test
split; both go into model.json (`uncertainty`). It is one number: a result whose top probability is below
`threshold` is uncertain. The threshold is the smallest one whose confident results were right at least
`target_accuracy` (90 %) of the time on the validation images:

- candidates are the validation images' own top probabilities; a result is confident when its top probability is
  >= the threshold, so images with the same top probability always fall in the same band (ties never split);
- a candidate needs at least `min_support` confident validation images (a handful of lucky images is no evidence
  of 90 %);
- when no candidate qualifies (the model never reaches 90 % on enough images), the threshold is null and every
  result is uncertain, and the card says so;
- images the OOD check flags are left out of both splits: the app gives them no diagnosis and no band.

Applying the rule to one result is inference-time code: `runtime.bands.band`.
"""

from __future__ import annotations

import numpy as np

# The threshold's choice is inference-time code too: a site profile chooses its own the same way (runtime/bands.py).
from runtime.bands import BANDS, KIND, MIN_SUPPORT, TARGET_ACCURACY, band, choose_threshold


def measure(bands: list, correct: np.ndarray, patients, n_boot: int, seed: int = 0) -> dict:
    """For each band: n, correct, accuracy and its 95 % interval (patient bootstrap, as every CI of the project);
    accuracy and interval are null for an empty band."""
    from core.metrics import patient_resamples, percentile_interval

    bands, correct, patients = np.asarray(bands, object), np.asarray(correct, bool), np.asarray(patients)
    out = {}
    for name in BANDS:
        inside = bands == name
        n = int(inside.sum())
        entry = {"n": n, "correct": int(correct[inside].sum()), "accuracy": None, "ci95": None}
        if n:
            entry["accuracy"] = float(correct[inside].mean())
            if n_boot:
                samples = [correct[inside][chosen].mean()
                           for chosen in patient_resamples(patients[inside], n_boot, seed)]
                entry["ci95"] = percentile_interval(samples)
        out[name] = entry
    return out


def uncertainty_card(val: dict, test: dict, ood_threshold: float, n_boot: int, model_file: str,
                     target: float = TARGET_ACCURACY, min_support: int = MIN_SUPPORT) -> dict:
    """model.json's `uncertainty`. `val` and `test`: {"probabilities" [n, k], "ood_score" [n], "labels" [n],
    "patients" [n]} of one model file (fp32)."""

    def split(data):
        probabilities = np.asarray(data["probabilities"], np.float32)
        kept = ~(np.asarray(data["ood_score"]).reshape(-1) > ood_threshold)
        correct = probabilities.argmax(1) == np.asarray(data["labels"]).reshape(-1)
        return probabilities[kept], correct[kept], np.asarray(data["patients"]).reshape(-1)[kept], int((~kept).sum())

    val_p, val_correct, val_patients, val_ood = split(val)
    threshold = choose_threshold(val_p.max(1) if len(val_p) else [], val_correct, target, min_support)
    section = {"rule": {"kind": KIND, "threshold": threshold}, "chosen_on": "val", "model_file": model_file,
               "target_accuracy": target, "min_support": min_support, "target_reached": threshold is not None}
    val_bands = [band(p, False, section) for p in val_p]
    section["validation"] = {"excluded_ood": val_ood, **measure(val_bands, val_correct, val_patients, 0)}
    test_p, test_correct, test_patients, test_ood = split(test)
    test_bands = [band(p, False, section) for p in test_p]
    section["bands"] = measure(test_bands, test_correct, test_patients, n_boot)
    section["test_excluded_ood"] = test_ood
    section["summary"] = summary(section)
    return section


def _accuracy(entry: dict) -> str:
    if not entry["n"]:
        return "no test image fell in this band, so its accuracy is not measured"
    ci = entry.get("ci95")
    interval = f", 95% CI {100 * ci[0]:.0f}-{100 * ci[1]:.0f}%" if ci else ""
    return (f"right {100 * entry['accuracy']:.0f}% of the time "
            f"({entry['correct']} of {entry['n']} test images{interval})")


def summary(section: dict) -> list[str]:
    """The rule and its measured accuracy in plain sentences (the model card shows them)."""
    target = f"{100 * section['target_accuracy']:.0f}%"
    bands = section["bands"]
    if not section["target_reached"]:
        return [f"On the validation images no confidence level gave {target} correct results (on at least "
                f"{section['min_support']} images), so every result is marked uncertain.",
                f"All results on the test split: {_accuracy(bands['uncertain'])}."]
    threshold = f"{100 * section['rule']['threshold']:.1f}%"
    return [f"A result is marked uncertain when its top probability is below {threshold}: the smallest level at "
            f"which at least {target} of the validation results were right.",
            f"Confident results on the test split: {_accuracy(bands['confident'])}.",
            f"Uncertain results on the test split: {_accuracy(bands['uncertain'])}."]
