"""A site's labelled films, as `cxr validate` takes them: a folder with one subfolder per class, or a CSV.

- A folder: each subfolder is named for a class of the model (case does not matter: `covid-19/`, `Normal/`), and
  every file under it is a film of that class. Hidden files and folders are left out. Each film counts as its own
  patient (a folder says nothing about patients: give a CSV with `patient_id` when a patient has several films).
- A CSV (a manifest): columns `file` and `label`, optionally `patient_id` (other columns are ignored); `file` is
  relative to the CSV's folder, or absolute. Labels match the model's classes whatever their case.

Anything that is not a labelled film of a class of the model is refused with the file, the row and the reason; files
that cannot be decoded are found later, when the films are scored, and are skipped and listed there.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Film:
    file: str
    label: str  # exactly one of the model's classes
    patient_id: str


def _class_of(name: str, classes: list[str]) -> str | None:
    """The class `name` stands for, case-insensitively and ignoring surrounding blanks."""
    wanted = name.strip().casefold()
    return next((c for c in classes if c.casefold() == wanted), None)


def read_folder(root: Path, classes: list[str]) -> list[Film]:
    subfolders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subfolders:
        raise ValueError(f"{root}: no subfolders: a labelled set is a folder with one subfolder per class "
                         f"({', '.join(classes)}), or a CSV with file,label columns")
    unknown = [p.name for p in subfolders if _class_of(p.name, classes) is None]
    if unknown:
        raise ValueError(f"{root}: subfolder(s) {', '.join(map(repr, unknown))} are not classes of this model "
                         f"({', '.join(classes)}; case does not matter)")
    films = []
    for folder in sorted(subfolders, key=lambda p: (classes.index(_class_of(p.name, classes)), p.name)):
        label = _class_of(folder.name, classes)
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not any(part.startswith(".") for part in path.relative_to(folder).parts):
                films.append(Film(str(path), label, str(path.relative_to(root))))
    return films


def read_csv(path: Path, classes: list[str]) -> list[Film]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: a spreadsheet's byte order mark
            reader = csv.DictReader(f)
            columns = [c.strip() for c in reader.fieldnames or []]
            rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
    except (UnicodeDecodeError, csv.Error) as e:
        raise ValueError(f"{path}: not a readable CSV ({e})") from None
    missing = [c for c in ("file", "label") if c not in columns]
    if missing:
        raise ValueError(f"{path}: no {' or '.join(missing)} column (a labelled CSV has file,label and optionally "
                         f"patient_id; it has {', '.join(columns) or 'no header'})")
    films, problems = [], []
    for line, row in enumerate(rows, start=2):  # line 1 is the header
        label = _class_of(row["label"], classes)
        if not row["file"]:
            problems.append(f"line {line}: no file")
        elif label is None:
            problems.append(f"line {line}: label {row['label']!r} is not a class of this model" if row["label"]
                            else f"line {line}: no label")
        else:
            file = Path(row["file"]) if Path(row["file"]).is_absolute() else path.parent / row["file"]
            films.append(Film(str(file), label, row.get("patient_id") or row["file"]))
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise ValueError(f"{path}: {shown} (classes: {', '.join(classes)})")
    return films


def read_labelled_set(src: Path, classes: list[str]) -> list[Film]:
    """The films of a folder per class or a CSV, in a stable order. Raises ValueError (with the file and the reason)
    for what is not a labelled set of the model's classes, FileNotFoundError for a source that is not there."""
    src = Path(src)
    if src.is_dir():
        films = read_folder(src, list(classes))
    elif src.is_file():
        films = read_csv(src, list(classes))
    else:
        raise FileNotFoundError(f"{src} not found: --data is a folder with one subfolder per class, or a CSV")
    if not films:
        raise ValueError(f"{src}: no labelled films in it")
    return films
