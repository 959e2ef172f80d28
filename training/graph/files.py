"""The files of the modules the graph carries (the lung segmenter, the chest gate): tensors and plain values only,
so they load with torch.load(weights_only=True) and cannot run code; written atomically; read with a check of
what kind of file they are."""

from __future__ import annotations

import os
from pathlib import Path

import torch


def save_tensors(value: dict, path) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(value, tmp)
    os.replace(tmp, path)


def load_kind(path, kind: str, what: str, command: str) -> dict:
    """The dict of a file written with `"kind": kind`; FileNotFoundError or ValueError naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} not found (train one with `{command}`)")
    value = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(value, dict) or value.get("kind") != kind:
        raise ValueError(f"{path} is not a {what} written by `{command}`")
    return value
