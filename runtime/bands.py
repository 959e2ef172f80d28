"""The uncertainty band of one result: "confident" or "uncertain" (the rule is chosen at export time on the
validation split, export/uncertainty.py, and stored in model.json `uncertainty`; a site profile may carry one chosen
the same way on a site's own films, runtime/site_calibration.py).

`band()` is the one definition of a band; pwa/static/page/uncertainty.js mirrors it line for line (the browser and
the predictor must agree, tests/pwa/test_clinical.py checks both on the same probabilities).
"""

from __future__ import annotations

import numpy as np

KIND = "top_probability_below"
BANDS = ("confident", "uncertain")
TARGET_ACCURACY = 0.9
MIN_SUPPORT = 10


def band(probabilities, withheld: bool, uncertainty: dict | None, unlike_training: bool = False) -> str | None:
    """"confident", "uncertain", or None: no band for a withheld result (no diagnosis at all) or for a model.json
    without a rule (an older export). An unknown rule kind counts as uncertain: never claim a confidence that cannot
    be checked; nor for a film unlike the training films (the rule was measured on films like them)."""
    if withheld or not uncertainty:
        return None
    rule = uncertainty.get("rule") or {}
    if rule.get("kind") != KIND or rule.get("threshold") is None or unlike_training:
        return "uncertain"
    return "uncertain" if float(max(probabilities)) < rule["threshold"] else "confident"


def choose_threshold(top: np.ndarray, correct: np.ndarray, target: float = TARGET_ACCURACY,
                     min_support: int = MIN_SUPPORT) -> float | None:
    """The smallest top probability t among `top` such that the results with top >= t number at least `min_support`
    and were right at least `target` of the time; None when there is none. The one way a rule's threshold is chosen:
    on the validation split at export (export/uncertainty.py), on a site's films for a site profile."""
    top, correct = np.asarray(top, np.float64), np.asarray(correct, bool)
    for t in np.unique(top):  # ascending: the first that qualifies is the smallest
        confident = top >= t
        if confident.sum() >= min_support and correct[confident].mean() >= target:
            return float(t)
    return None
