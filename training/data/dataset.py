"""Load a `prepare` output (manifest.csv + cache) into memory: uint8 images, labels and the rows, per split."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch

from core.classes import CLASSES

from ..graph.preprocess import PREPROCESS_VERSION, GeometryConfig
from .cache import Cache
from .records import read_manifest_rows


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
        raise FileNotFoundError(f"{prepared} is not a `cxr prepare` output (no prepared.json)")
    info = json.loads(info_path.read_text())
    if info["preprocess_version"] != PREPROCESS_VERSION:
        raise ValueError(f"{prepared} was prepared with preprocessing version {info['preprocess_version']}, "
                         f"this code uses {PREPROCESS_VERSION}: run `cxr prepare` again")
    return info, read_manifest_rows(prepared / "manifest.csv")


def parse_holdout(holdout: str) -> list[tuple[str, str | None]]:
    """"hannover" or "ieee8023:COVID-19" (comma-separated for several) -> [(source, label or None)]."""
    groups = []
    for part in filter(None, (p.strip() for p in holdout.split(","))):
        source, _, label = part.partition(":")
        if label and label not in CLASSES:
            raise ValueError(f"--holdout {part!r}: {label!r} is not one of {', '.join(CLASSES)}")
        groups.append((source, label or None))
    return groups


def in_group(row: dict, groups: list[tuple[str, str | None]]) -> bool:
    return any(row["source"] == source and (label is None or row["label"] == label) for source, label in groups)


def held_out_patients(rows: list[dict], holdout: str) -> set[str]:
    """Every patient with an image in a held-out group: all their images leave training and validation, so that
    nothing of a held-out source's patients is seen (a patient may have images of two labels)."""
    groups = parse_holdout(holdout)
    return {r["patient_id"] for r in rows if in_group(r, groups)}


def load_split(prepared: Path, split: str, holdout: str = "") -> Split:
    """One split in memory. `holdout`: source groups (see `parse_holdout`) whose patients are left out entirely."""
    info, rows = load_prepared(prepared)
    if holdout:
        excluded = held_out_patients(rows, holdout)
        if not excluded:
            raise ValueError(f"--holdout {holdout!r}: no image of {prepared} belongs to it")
        rows = [r for r in rows if r["patient_id"] not in excluded]
    rows = [r for r in rows if r["split"] == split]
    cache = Cache(Path(info["cache_dir"]), GeometryConfig.of(info))
    images = torch.from_numpy(cache.load_images([r["sha256"] for r in rows]))
    labels = torch.tensor([CLASSES.index(r["label"]) for r in rows], dtype=torch.long)
    return Split(images, labels, rows)


def class_weights(labels: torch.Tensor) -> torch.Tensor:
    """Inverse-frequency weights, normalised so a balanced set gets 1 for every class."""
    counts = torch.bincount(labels, minlength=len(CLASSES)).double()
    weights = counts.sum() / (len(CLASSES) * counts.clamp(min=1))
    weights[counts == 0] = 0
    return weights.float()


MAX_SOURCE_WEIGHT = 5.0


def sample_weights(labels: torch.Tensor, sources: list[str], balance_sources: bool = False) -> torch.Tensor:
    """Per-image loss weights: inverse class frequency (every class weighs the same in total); with
    `balance_sources`, also every source weighs the same within a class, so a class cannot be recognised by the
    source that supplies most of it. Within-class source factors are capped at MAX_SOURCE_WEIGHT (two ieee8023
    Normal images must not count as much as 140 NIH ones) and renormalised to average 1 inside the class."""
    weights = class_weights(labels)[labels].double()
    if not balance_sources:
        return weights.float()
    sources = list(sources)
    for k in range(len(CLASSES)):
        members = (labels == k).nonzero().flatten().tolist()
        if not members:
            continue
        counts = Counter(sources[i] for i in members)
        factor = torch.tensor([min(MAX_SOURCE_WEIGHT, len(members) / (len(counts) * counts[sources[i]]))
                               for i in members], dtype=torch.float64)
        weights[members] *= factor / factor.mean()
    return weights.float()


def data_summary(prepared: Path, holdout: str = "") -> dict:
    """Sources, counts per label and split: what the model card shows as 'trained on' (held-out groups excluded)."""
    info, rows = load_prepared(prepared)
    if holdout:
        excluded = held_out_patients(rows, holdout)
        rows = [r for r in rows if r["patient_id"] not in excluded]
    counts = {}
    for r in rows:
        counts.setdefault(r["split"], {}).setdefault(r["source"], dict.fromkeys(CLASSES, 0))[r["label"]] += 1
    # The terms a trained model inherits come from the images that shaped it (training and validation).
    licenses = Counter(r.get("license") or "unstated" for r in rows if r["split"] in ("train", "val"))
    return {"data": info["data"], "sources": sorted({r["source"] for r in rows}), "images": len(rows),
            "patients": len({r["patient_id"] for r in rows}), "counts": counts, "split_seed": info["seed"],
            "split_fractions": info["fractions"], "patients_per_split": info["patients_per_split"],
            "licenses": dict(sorted(licenses.items())), **({"held_out": holdout} if holdout else {})}

