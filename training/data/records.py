"""The one record every dataset reader yields, and the manifest.csv that stores records on disk."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

RECORD_FIELDS = ("file", "label", "patient_id", "source", "view")
# Columns holding paths, stored relative to the manifest's folder (`mask`: a phantom's lesion mask).
PATH_COLUMNS = ("file", "mask")


@dataclass(frozen=True)
class Record:
    file: str  # absolute path
    label: str  # one of CLASSES
    patient_id: str  # unique across sources (prefixed with the source name by the readers)
    source: str
    view: str = ""
    extra: dict = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class Skipped:
    """A file (or row) a reader or `prepare` left out, and why. Always reported, never silently dropped."""

    file: str
    reason: str


@dataclass
class Reading:
    """What a reader returns: the records it accepted and everything it skipped."""

    records: list[Record] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # warnings for the report (e.g. "leakage cannot be excluded")

    def extend(self, other: Reading) -> None:
        self.records += other.records
        self.skipped += other.skipped
        self.notes += other.notes


def write_manifest(path: Path, rows: list[dict], columns: list[str] | None = None) -> None:
    """Write dict rows to a manifest.csv; `file` values are made relative to the manifest's folder when possible."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if columns is None:
        columns = list(RECORD_FIELDS) + [k for k in (rows[0] if rows else {}) if k not in RECORD_FIELDS]
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            row = dict(row)
            for column in PATH_COLUMNS:
                if row.get(column):
                    row[column] = _relative(Path(row[column]), path.parent)
            writer.writerow(row)
    tmp.replace(path)


def read_manifest_rows(path: Path) -> list[dict]:
    """Rows of a manifest.csv with `file` resolved to an absolute path."""
    path = Path(path)
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        for column in PATH_COLUMNS:
            if row.get(column):
                row[column] = str((path.parent / row[column]).resolve())
    return rows


def _relative(file: Path, folder: Path) -> str:
    try:
        return file.resolve().relative_to(folder.resolve()).as_posix()
    except ValueError:
        return str(file.resolve())
