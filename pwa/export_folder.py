"""The export the site is built from: its model.json (the model card), checked against the model files beside it.

`cxr export` writes that folder; the site copies model.json and every model file it lists into dist/model/.
"""

from __future__ import annotations

import json
from pathlib import Path

from core.checksum import sha256_file

from .errors import SiteError


def load_card(model_dir: Path) -> tuple[dict, bytes]:
    """model.json of `model_dir`, parsed and as its bytes, once every model file it lists is there and matches."""
    path = model_dir / "model.json"
    if not path.is_file():
        raise SiteError(f"{path} not found: pass the folder written by `cxr export` (model.json + models)")
    data = path.read_bytes()
    card = json.loads(data)
    for key in ("classes", "input", "ood_threshold", "files", "default_model", "version"):
        if key not in card:
            raise SiteError(f"{path} has no {key!r}: re-export the model")
    if card["default_model"] not in card["files"]:
        raise SiteError(f"{path}: default_model {card['default_model']!r} is not one of its files")
    for name in model_files(card):
        info, file = card["files"][name], model_dir / name
        if not file.is_file():
            raise SiteError(f"{file} not found, but {path.name} lists it")
        if "size" in info and file.stat().st_size != info["size"]:
            raise SiteError(f"{file} is {file.stat().st_size} bytes, {path.name} says {info['size']}: re-export")
        if "sha256" in info and sha256_file(file) != info["sha256"]:
            raise SiteError(f"{file} does not match the sha256 in {path.name}: re-export")
    return card, data


def model_files(card: dict) -> list[str]:
    """The model files model.json lists, sorted; plain file names only."""
    names = sorted(card["files"])
    for name in names:
        if "/" in name or "\\" in name or name.startswith("."):
            raise SiteError(f"model.json lists an odd file name {name!r}")
    return names


def model_choices(card: dict) -> list[dict]:
    """The model files in the order the <select> shows them: the default first."""
    names = sorted(card["files"], key=lambda n: (n != card["default_model"], n))
    return [{"file": n, "precision": card["files"][n].get("precision", n), "default": n == card["default_model"]}
            for n in names]
