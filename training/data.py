"""Load a `prepare` output (manifest.csv + cache) into memory: uint8 images, labels and the rows, per split."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .cache import Cache
from .preprocess import PREPROCESS_VERSION
from .records import CLASSES, read_manifest_rows


@dataclass
class Split:
    images: torch.Tensor  # uint8 [N, 1, S, S]
    labels: torch.Tensor  # int64 [N]
    rows: list[dict]

    def __len__(self):
        return len(self.rows)


def load_prepared(prepared: Path) -> tuple[dict, list[dict]]:
    prepared = Path(prepared)
    info_path = prepared / "prepared.json"
    if not info_path.exists():
        raise FileNotFoundError(f"{prepared} is not a `python -m training prepare` output (no prepared.json)")
    info = json.loads(info_path.read_text())
    if info["preprocess_version"] != PREPROCESS_VERSION:
        raise ValueError(f"{prepared} was prepared with preprocessing version {info['preprocess_version']}, "
                         f"this code uses {PREPROCESS_VERSION}: run `python -m training prepare` again")
    return info, read_manifest_rows(prepared / "manifest.csv")


def load_split(prepared: Path, split: str) -> Split:
    info, rows = load_prepared(prepared)
    rows = [r for r in rows if r["split"] == split]
    cache = Cache(Path(info["cache_dir"]), info["size"])
    images = torch.from_numpy(cache.load_images([r["sha256"] for r in rows]))
    labels = torch.tensor([CLASSES.index(r["label"]) for r in rows], dtype=torch.long)
    return Split(images, labels, rows)


def class_weights(labels: torch.Tensor) -> torch.Tensor:
    """Inverse-frequency weights, normalised so a balanced set gets 1 for every class."""
    counts = torch.bincount(labels, minlength=len(CLASSES)).double()
    weights = counts.sum() / (len(CLASSES) * counts.clamp(min=1))
    weights[counts == 0] = 0
    return weights.float()


def data_summary(prepared: Path) -> dict:
    """Sources, counts per label and split: what the model card shows as 'trained on'."""
    info, rows = load_prepared(prepared)
    counts = {}
    for r in rows:
        counts.setdefault(r["split"], {}).setdefault(r["source"], dict.fromkeys(CLASSES, 0))[r["label"]] += 1
    return {"data": info["data"], "sources": sorted({r["source"] for r in rows}), "images": len(rows),
            "patients": len({r["patient_id"] for r in rows}), "counts": counts, "split_seed": info["seed"],
            "split_fractions": info["fractions"], "patients_per_split": info["patients_per_split"]}


def batches(n: int, batch_size: int):
    return [np.arange(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]
