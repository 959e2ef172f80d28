"""runtime/gate.py `decide`: the gate withholds, the distance only warns; a model without a gate keeps the old rule.
The browser's copy (pwa/static/page/verdict.js) is held to the same CASES in tests/pwa/test_clinical.py."""

import pytest

from runtime.bands import band
from runtime.gate import OOD_WITHHELD, UNLIKE_TRAINING, decide

GATE = {"threshold": 0.5, "reasons": ["frontal", "inverted", "upside_down", "rotated", "not_frontal",
                                      "not_radiograph"],
        "messages": {"inverted": "appears inverted", "rotated": "appears rotated", "not_frontal": "not frontal"}}
GATED = {"gate": GATE}

# (card, gate, gate_reason, ood) -> (withheld, gate_reason, unlike_training)
CASES = [
    (GATED, 0.9, 1.0, False, None, None, False),  # passes: a diagnosis
    (GATED, 0.9, 1.0, True, None, None, True),  # passes but far from training: diagnosis, warned
    (GATED, 0.2, 1.0, False, "appears inverted", "inverted", False),
    (GATED, 0.2, 3.0, True, "appears rotated", "rotated", False),  # refused: the distance no longer matters
    (GATED, 0.4999, 4.0, False, "not frontal", "not_frontal", False),
    (GATED, 0.5, 4.0, False, None, None, False),  # at the threshold: passes
    (GATED, 0.1, 2.0, False, "not a frontal chest radiograph", "upside_down", False),  # no message: the fallback
    ({}, None, None, True, OOD_WITHHELD, None, False),  # no gate: the distance withholds, as before
    ({}, None, None, False, None, None, False),
    (GATED, None, None, True, OOD_WITHHELD, None, False),  # a card with a gate but outputs without: the old rule
]


@pytest.mark.parametrize("card, gate, reason, ood, withheld, gate_reason, unlike", CASES)
def test_decide(card, gate, reason, ood, withheld, gate_reason, unlike):
    assert decide(card, gate, reason, ood) == {"withheld": withheld, "gate_reason": gate_reason,
                                               "unlike_training": unlike}


def test_a_film_unlike_the_training_films_is_never_called_confident():
    rule = {"rule": {"kind": "top_probability_below", "threshold": 0.6}}
    assert band([0.9, 0.05, 0.05], False, rule) == "confident"
    assert band([0.9, 0.05, 0.05], False, rule, unlike_training=True) == "uncertain"
    assert band([0.9, 0.05, 0.05], True, rule, unlike_training=True) is None  # withheld: no band at all
    assert "validate at your site" in UNLIKE_TRAINING
