"""The uncertainty band of one result: "confident" or "uncertain" (the rule is chosen at export time on the
validation split, export/uncertainty.py, and stored in model.json `uncertainty`).

`band()` is the one definition of a band; pwa/static/page/uncertainty.js mirrors it line for line (the browser and
the predictor must agree, tests/pwa/test_clinical.py checks both on the same probabilities).
"""

from __future__ import annotations

KIND = "top_probability_below"
BANDS = ("confident", "uncertain")


def band(probabilities, ood: bool, uncertainty: dict | None) -> str | None:
    """"confident", "uncertain", or None: no band for an out-of-distribution image (no diagnosis at all) or for a
    model.json without a rule (an older export). An unknown rule kind counts as uncertain: never claim a confidence
    that cannot be checked."""
    if ood or not uncertainty:
        return None
    rule = uncertainty.get("rule") or {}
    if rule.get("kind") != KIND or rule.get("threshold") is None:
        return "uncertain"
    return "uncertain" if float(max(probabilities)) < rule["threshold"] else "confident"
