"""GET /v1/model: model.json as a client may see it, without the server's paths."""

from __future__ import annotations

import copy
import re

_ABSOLUTE = re.compile(r"^(/|~|[A-Za-z]:[\\/]|\\\\)")


def public_card(card: dict) -> dict:
    """The card less where its checkpoint and data lay on the build machine (their checksum stays), with any other
    absolute path cut to its file name."""
    card = copy.deepcopy(card)
    if isinstance(card.get("source"), dict):
        card["source"] = {k: v for k, v in card["source"].items() if k not in ("checkpoint", "data")}
    if isinstance(card.get("training_data"), dict):
        card["training_data"].pop("data", None)
    return _strip_paths(card)


def _strip_paths(value):
    if isinstance(value, dict):
        return {k: _strip_paths(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strip_paths(v) for v in value]
    if isinstance(value, str) and _ABSOLUTE.match(value):
        return re.split(r"[\\/]", value.rstrip("/\\"))[-1]
    return value
