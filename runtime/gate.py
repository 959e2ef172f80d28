"""Two signals, worded for what they mean (docs/gate.md):

- the chest gate (model.json `gate`; graph outputs `gate` and `gate_reason`) says whether an image is a frontal
  chest radiograph, upright and not inverted. When it is not, there is no diagnosis at all, and the reason says
  what to do ("appears inverted: check the display settings");
- the OOD distance (`ood_score` above `ood_threshold`) says a real film is unlike the training films. With a gate,
  that no longer withholds: the diagnosis is shown, marked uncertain, with "validate at your site".

A model exported without a gate keeps the old rule: the OOD distance withholds. `decide` is the one definition;
pwa/static/page/verdict.js `decide` mirrors it line for line (tests check both on the same outputs).
"""

from __future__ import annotations

# Without a gate the distance is all there is, and it fires for non-X-rays and for unfamiliar real films alike.
OOD_WITHHELD = "out of distribution: unlike the training X-rays, or not a chest X-ray"
UNLIKE_TRAINING = "unlike the films the model was trained on: validate at your site before relying on this result"
FALLBACK_MESSAGE = "not a frontal chest radiograph"


def decide(card: dict, gate: float | None, gate_reason: float | None, ood: bool) -> dict:
    """{"withheld": why there is no diagnosis, or None; "gate_reason": the gate's reason key, or None;
    "unlike_training": True when a diagnosis is shown for a film unlike the training films}."""
    spec = card.get("gate")
    if not spec or gate is None:
        return {"withheld": OOD_WITHHELD if ood else None, "gate_reason": None, "unlike_training": False}
    if gate < spec["threshold"]:
        reason = spec["reasons"][int(gate_reason)]
        return {"withheld": spec["messages"].get(reason, FALLBACK_MESSAGE), "gate_reason": reason,
                "unlike_training": False}
    return {"withheld": None, "gate_reason": None, "unlike_training": bool(ood)}
