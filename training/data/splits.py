"""Patient-level, label-stratified, seeded train/val/test splits, and the check that no patient spans two splits."""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict

from core.classes import CLASSES

SPLITS = ("train", "val", "test")
DEFAULT_FRACTIONS = (0.70, 0.15, 0.15)


class LeakageError(ValueError):
    """A patient appears in more than one split."""


def assign_splits(rows: list[dict], fractions=DEFAULT_FRACTIONS, seed: int = 0) -> dict[str, str]:
    """Map every patient_id to a split.

    Patients are stratified by (label, source) so each split sees every label from every source in proportion; a
    patient with images of several labels is stratified by their most frequent label (ties: CLASSES order). Within
    a stratum, patients are ordered by a seeded hash of their id, not by a shuffle, so a patient's split does not
    depend on the order of the input or on which other files were added.
    """
    if len(fractions) != 3 or abs(sum(fractions) - 1) > 1e-6 or min(fractions) < 0:
        raise ValueError(f"split fractions must be three non-negative numbers summing to 1, got {fractions}")
    labels, sources = defaultdict(Counter), {}
    for row in rows:
        labels[row["patient_id"]][row["label"]] += 1
        sources.setdefault(row["patient_id"], row["source"])

    strata = defaultdict(list)
    for patient, counts in labels.items():
        label = max(CLASSES, key=lambda c: (counts[c], -CLASSES.index(c)))
        strata[(label, sources[patient])].append(patient)

    split_of = {}
    for patients in strata.values():
        patients.sort(key=lambda p: hashlib.sha256(f"{seed}:{p}".encode()).hexdigest())
        n = len(patients)
        n_test, n_val = round(n * fractions[2]), round(n * fractions[1])
        n_train = n - n_val - n_test
        for i, patient in enumerate(patients):
            split_of[patient] = "train" if i < n_train else "val" if i < n_train + n_val else "test"
    return split_of


def check_patient_splits(rows: list[dict]) -> None:
    """Raise LeakageError if any patient_id has rows in two splits."""
    seen = defaultdict(set)
    for row in rows:
        seen[row["patient_id"]].add(row["split"])
    leaked = sorted(p for p, s in seen.items() if len(s) > 1)
    if leaked:
        shown = ", ".join(f"{p} ({'/'.join(sorted(seen[p]))})" for p in leaked[:10])
        raise LeakageError(f"{len(leaked)} patient(s) appear in more than one split: {shown}")
