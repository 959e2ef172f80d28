"""The one way results become JSON: NaN and infinities become null (JSON has neither), numpy scalars and arrays
become plain numbers and lists, tuples lists. Used for metrics.json, model.json, summaries and reports."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np


def plain(value):
    """`value` with every NaN or infinity replaced by None and every numpy value by its Python equivalent,
    recursively."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def dumps(value, indent: int | None = 2) -> str:
    return json.dumps(plain(value), indent=indent, allow_nan=False)


def write_json(path: Path, value) -> None:
    Path(path).write_text(dumps(value) + "\n")
