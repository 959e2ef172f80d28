"""Dataset readers: each turns one dataset layout into a Reading (records + everything skipped, with reasons).

Readers never decode pixels (the decoder does that later and reports bad images and duplicate content).
They do report every file or row they leave out, so nothing is dropped silently.
Layouts and the label decisions are documented in docs/datasets.md.
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

import pydicom

from core.classes import CLASSES

from .records import PATH_COLUMNS, RECORD_FIELDS, Reading, Record, Skipped

KINDS = ("manifest", "ieee8023", "rsna", "folders")

# ieee8023 `finding` -> class; None = deliberately left out. Keys are compared case-insensitively.
# The old flat vocabulary names the disease ("SARS"); the newer one is a path ("Pneumonia/Viral/SARS",
# "Pneumonia/Viral/Influenza/H1N1"). A path's parts are looked up from the most specific one up, so any other
# "Pneumonia/..." falls through to "pneumonia", and "Pneumonia/Viral/COVID-19" stops at "covid-19".
IEEE8023_FINDINGS = {
    "covid-19": "COVID-19",
    "covid-19, ards": "COVID-19",  # COVID-19 complicated by ARDS is still COVID-19
    "no finding": "Normal",
    # Non-COVID infectious pneumonias (viral, bacterial, fungal): the Pneumonia class.
    "pneumonia": "Pneumonia",
    "sars": "Pneumonia",
    "mers": "Pneumonia",
    "mers-cov": "Pneumonia",
    "influenza": "Pneumonia",
    "h1n1": "Pneumonia",
    "varicella": "Pneumonia",
    "herpes": "Pneumonia",
    "streptococcus": "Pneumonia",
    "staphylococcus": "Pneumonia",
    "mrsa": "Pneumonia",
    "klebsiella": "Pneumonia",
    "e.coli": "Pneumonia",
    "legionella": "Pneumonia",
    "chlamydophila": "Pneumonia",
    "mycoplasma": "Pneumonia",
    "nocardia": "Pneumonia",
    "pneumocystis": "Pneumonia",
    "aspergillosis": "Pneumonia",
    "aspiration": "Pneumonia",  # aspiration pneumonia is in practice mostly an infection after aspiration
    "lipoid": None,  # lipoid pneumonia is a non-infectious reaction to inhaled oil, not what the triage targets
    "ards": None,  # a syndrome, not a cause: it may be COVID-19, another pneumonia or neither
    "tuberculosis": None,  # a different disease with its own look; not one of the three classes
}

IEEE8023_FRONTAL_VIEWS = ("PA", "AP", "AP Supine", "AP erect", "AP semi erect")

# RSNA `class` -> (class, the Target that class implies). None = left out unless the caller maps it.
RSNA_NOT_NORMAL = "No Lung Opacity / Not Normal"
RSNA_CLASSES = {
    "Normal": ("Normal", "0"),
    "Lung Opacity": ("Pneumonia", "1"),
    RSNA_NOT_NORMAL: (None, "0"),  # abnormal, but not pneumonia-like opacity
}
RSNA_STAGES = ("stage_2", "stage_1")  # the newer challenge stage first

# Class folder name (normalised by _folder_key) -> class.
FOLDER_CLASSES = {
    "covid": "COVID-19",
    "covid19": "COVID-19",
    "normal": "Normal",
    "nofinding": "Normal",
    "nofindings": "Normal",
    "healthy": "Normal",
    "pneumonia": "Pneumonia",
    "viralpneumonia": "Pneumonia",
    "bacterialpneumonia": "Pneumonia",
    "lungopacity": "Pneumonia",
}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm", ".dicom")
DICOM_SUFFIXES = (".dcm", ".dicom")


def parse_spec(spec: str) -> tuple[str | None, str]:
    """A `--data` spec -> (kind or None for auto-detection, path): "PATH" or "KIND:PATH" with KIND one of KINDS."""
    kind, sep, rest = spec.partition(":")
    if sep and kind.casefold() in KINDS:  # a drive letter such as "C:" is not a kind, so it stays in the path
        return kind.casefold(), rest
    return None, spec


def read(spec: str, *, class_map=None, patient_regex=None, rsna_not_normal=None) -> Reading:
    """Read a `--data` spec (see `parse_spec`)."""
    kind, path = parse_spec(spec)
    if not path:
        raise ValueError(f"--data {spec!r}: the path is empty")
    kind = kind or detect(path)
    if kind == "manifest":
        return read_manifest(path)
    if kind == "ieee8023":
        return read_ieee8023(path)
    if kind == "rsna":
        return read_rsna(path, not_normal_label=rsna_not_normal)
    return read_folders(path, class_map=class_map, patient_regex=patient_regex)


def detect(path) -> str:
    """The layout of a dataset path: one of KINDS. ValueError if it does not exist or matches none."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: no such file or folder")
    if path.is_file():
        if path.suffix.casefold() == ".csv":
            return "manifest"
        raise ValueError(f"{path}: a dataset is a folder or a manifest .csv file, not this file")
    if (path / "manifest.csv").is_file():
        return "manifest"
    if (path / "metadata.csv").is_file():
        return "ieee8023"
    if any((path / f"{stage}_train_labels.csv").is_file() for stage in RSNA_STAGES):
        return "rsna"
    if any(p.is_dir() and not _hidden(p.name) for p in path.iterdir()):
        return "folders"
    raise ValueError(
        f"{path}: no dataset layout recognised: no manifest.csv, no metadata.csv (ieee8023), "
        "no stage_2_train_labels.csv (RSNA) and no class subfolders"
    )


def read_manifest(path) -> Reading:
    """A manifest.csv (or a folder holding one): columns file,label,patient_id,source,view plus any extras."""
    path = Path(path)
    if path.is_dir():
        path = path / "manifest.csv"
    reading, found = Reading(), []
    for line, row in _csv_rows(path, RECORD_FIELDS):
        file = str((path.parent / row["file"]).resolve())
        if not row["file"]:
            reading.skipped.append(Skipped(f"{path}:line {line}", "the file column is empty"))
        elif row["label"] not in CLASSES:
            reason = f"label '{row['label']}' is not one of {', '.join(CLASSES)}"
            reading.skipped.append(Skipped(file, reason))
        elif not row["patient_id"]:
            reason = "patient_id is empty (every record needs one so that splits can be made by patient)"
            reading.skipped.append(Skipped(file, reason))
        elif not Path(file).is_file():
            reading.skipped.append(Skipped(file, "file not found"))
        else:
            extra = {k: v for k, v in row.items() if k not in RECORD_FIELDS}
            for column in set(PATH_COLUMNS) & set(extra):
                extra[column] = str((path.parent / extra[column]).resolve()) if extra[column] else ""
            record = Record(file, row["label"], row["patient_id"], row["source"], row["view"], extra)
            found.append((f"line {line}", record))
    _keep_unrepeated(found, reading)
    return reading


def ieee8023_label(finding: str) -> str | None:
    """The class of an ieee8023 `finding` in either vocabulary, or None when it is not used."""
    parts = [p.strip().casefold() for p in finding.split("/")]
    for part in reversed(parts):
        if part in IEEE8023_FINDINGS:
            return IEEE8023_FINDINGS[part]
    return None


def read_ieee8023(root) -> Reading:
    """The ieee8023/covid-chestxray-dataset layout: metadata.csv + images/. Frontal X-rays only."""
    root = _existing_dir(root)
    metadata = root / "metadata.csv"
    frontal = {_casefold_words(v) for v in IEEE8023_FRONTAL_VIEWS}
    reading, found = Reading(), []
    for line, row in _csv_rows(metadata, ("patientid", "finding", "view", "modality", "filename")):
        file = str(root / (row.get("folder") or "images") / row["filename"])
        label = ieee8023_label(row["finding"])
        if not row["filename"]:
            reading.skipped.append(Skipped(f"{metadata}:line {line}", "the filename column is empty"))
        elif _casefold_words(row["modality"]) != "x-ray":
            reading.skipped.append(Skipped(file, f"modality '{row['modality']}' is not X-ray"))
        elif _casefold_words(row["view"]) not in frontal:
            reason = f"view '{row['view']}' is not frontal (kept: {', '.join(IEEE8023_FRONTAL_VIEWS)})"
            reading.skipped.append(Skipped(file, reason))
        elif label is None:
            reason = f"finding '{row['finding']}' is not mapped to a class (see docs/datasets.md)"
            reading.skipped.append(Skipped(file, reason))
        elif not row["patientid"]:
            reading.skipped.append(Skipped(file, "patientid is empty"))
        elif not Path(file).is_file():
            reading.skipped.append(Skipped(file, "file not found"))
        else:
            extra = {"finding": row["finding"], "license": row.get("license", "")}
            record = Record(file, label, f"ieee8023_{row['patientid']}", "ieee8023", row["view"], extra)
            found.append((f"line {line}", record))
    _keep_unrepeated(found, reading)
    return reading


def read_rsna(root, not_normal_label: str | None = None) -> Reading:
    """The RSNA Pneumonia Detection Challenge layout: one record per patient from the per-box CSVs."""
    if not_normal_label is not None and not_normal_label not in CLASSES:
        raise ValueError(f"RSNA not-normal label '{not_normal_label}' is not one of {', '.join(CLASSES)}")
    root = _existing_dir(root)
    stage = next((s for s in RSNA_STAGES if (root / f"{s}_train_labels.csv").is_file()), RSNA_STAGES[0])
    labels_csv, classes_csv = root / f"{stage}_train_labels.csv", root / f"{stage}_detailed_class_info.csv"
    images = root / f"{stage}_train_images"
    targets, classes, reading = {}, {}, Reading()
    for csv_path, column, seen in ((labels_csv, "Target", targets), (classes_csv, "class", classes)):
        for line, row in _csv_rows(csv_path, ("patientId", column)):
            if row["patientId"]:
                seen.setdefault(row["patientId"], set()).add(row[column])
            else:
                reading.skipped.append(Skipped(f"{csv_path}:line {line}", "patientId is empty"))
    if not images.is_dir():
        raise ValueError(f"{images}: RSNA image folder not found")
    unreadable = 0
    for patient in dict.fromkeys([*targets, *classes]):  # every patient once, in file order
        file = str(images / f"{patient}.dcm")
        label, reason = _rsna_label(targets.get(patient, set()), classes.get(patient, set()), not_normal_label)
        if reason is None and not Path(file).is_file():
            reason = "file not found"
        if reason is not None:
            reading.skipped.append(Skipped(file, reason))
            continue
        view = _dicom_view(file)
        unreadable += view is None
        extra = {"rsna_class": next(iter(classes[patient]))}
        reading.records.append(Record(file, label, f"rsna_{patient}", "rsna", view or "", extra))
    if unreadable:
        reading.notes.append(
            f"rsna: {unreadable} DICOM header(s) could not be read, so their view is empty "
            "(the decoder reports these files if their pixels cannot be read either)"
        )
    return reading


def _rsna_label(targets: set, classes: set, not_normal_label: str | None):
    """(class, None) for a patient's Target and class values, or (None, reason) when the patient is left out."""
    if not targets:
        return None, "patient has no row in the *_train_labels.csv"
    if not classes:
        return None, "patient has no row in the *_detailed_class_info.csv"
    if len(classes) > 1:
        return None, f"conflicting classes {', '.join(map(repr, sorted(classes)))}"
    if len(targets) > 1:
        return None, f"conflicting Target values {', '.join(sorted(targets))}"
    (rsna_class,), (target,) = classes, targets
    if rsna_class not in RSNA_CLASSES:
        return None, f"class '{rsna_class}' is not one of {', '.join(map(repr, RSNA_CLASSES))}"
    label, expected_target = RSNA_CLASSES[rsna_class]
    if target != expected_target:
        return None, f"class '{rsna_class}' disagrees with Target {target}"
    if rsna_class == RSNA_NOT_NORMAL:
        label = not_normal_label
    if label is None:
        return None, (
            f"class '{rsna_class}' is excluded by default; "
            "to include it give it a class (rsna_not_normal / --rsna-not-normal CLASS)"
        )
    return label, None


def read_folders(root, class_map: dict | None = None, patient_regex: str | None = None,
                 source: str | None = None) -> Reading:
    """A folder per class: root/<class folder>/**/*.png|jpg|jpeg|dcm|dicom.

    class_map (folder name -> class, or "" / None to leave that folder out) extends FOLDER_CLASSES.
    patient_regex is searched in each file's stem; its group `patient`, else group 1, else the whole match
    is the patient id.
    """
    root = _existing_dir(root)
    source = source or root.name
    folder_classes = _folder_classes(class_map)
    pattern = _compile(patient_regex)
    reading = Reading()
    if pattern is None:
        reading.notes.append(
            f"{source}: no patient regex was given: every file is its own patient, so patient leakage between "
            "splits cannot be excluded (pass --patient-regex if the file names carry a patient id)"
        )
    for entry in sorted(root.iterdir()):
        if _hidden(entry.name):
            continue
        if not entry.is_dir():
            reading.skipped.append(Skipped(str(entry), "not inside a class folder"))
            continue
        label, folder_reason = _folder_label(entry.name, folder_classes)
        for file in _visible_files(entry):
            if folder_reason is not None:
                reading.skipped.append(Skipped(str(file), folder_reason))
                continue
            if file.suffix.casefold() not in IMAGE_SUFFIXES:
                reading.skipped.append(Skipped(str(file), "not a PNG, JPEG or DICOM file name"))
                continue
            patient = file.relative_to(root).as_posix() if pattern is None else _patient(pattern, file.stem)
            if not patient:
                reason = f"file name does not give a patient id with --patient-regex {pattern.pattern!r}"
                reading.skipped.append(Skipped(str(file), reason))
                continue
            view = _dicom_view(file) if file.suffix.casefold() in DICOM_SUFFIXES else ""
            reading.records.append(Record(str(file), label, f"{source}_{patient}", source, view or ""))
    return reading


def _folder_classes(class_map: dict | None) -> dict:
    table = dict(FOLDER_CLASSES)
    for folder, label in (class_map or {}).items():
        if label and label not in CLASSES:
            raise ValueError(f"class map: '{folder}={label}': '{label}' is not one of {', '.join(CLASSES)}")
        table[_folder_key(folder)] = label or None
    return table


def _folder_label(name: str, folder_classes: dict):
    """(class, None) for a class folder, or (None, reason) when its files are left out."""
    key = _folder_key(name)
    if key not in folder_classes:
        return None, f"folder '{name}' is not mapped to a class (use --class-map {name}=<class>)"
    if not folder_classes[key]:
        return None, f"folder '{name}' is left out by the class map"
    return folder_classes[key], None


def _folder_key(name: str) -> str:
    """Folder names compare case-insensitively, ignoring spaces, underscores and hyphens ("No_Finding")."""
    return re.sub(r"[\s_-]+", "", name.casefold())


def _compile(patient_regex: str | None):
    if not patient_regex:
        return None
    try:
        return re.compile(patient_regex)
    except re.error as e:
        raise ValueError(f"patient regex {patient_regex!r} is not a valid regular expression: {e}") from None


def _patient(pattern: re.Pattern, stem: str) -> str | None:
    match = pattern.search(stem)
    if match is None:
        return None
    if "patient" in pattern.groupindex:
        return match.group("patient")
    return match.group(1) if pattern.groups else match.group(0)


def _visible_files(folder: Path):
    """Files under folder, recursively and sorted, skipping hidden files and folders (.DS_Store, .git, ...)."""
    for parent, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not _hidden(d))
        for name in sorted(files):
            if not _hidden(name):
                yield Path(parent) / name


def _hidden(name: str) -> bool:
    return name.startswith(".")


def _dicom_view(file) -> str | None:
    """ViewPosition from the DICOM header alone (cheap); None if the header cannot be read."""
    try:
        header = pydicom.dcmread(file, stop_before_pixels=True, specific_tags=["ViewPosition"])
    except Exception:  # a broken file fails in many ways; the decoder gives the real error later
        return None
    return str(header.get("ViewPosition", "") or "").strip()


def _casefold_words(value: str) -> str:
    return " ".join(value.split()).casefold()


def _existing_dir(path) -> Path:
    path = Path(path).resolve()
    if not path.is_dir():
        raise ValueError(f"{path}: no such folder")
    return path


def _csv_rows(path: Path, required) -> list[tuple[int, dict]]:
    """(line number, row) for each row of a CSV, values stripped; ValueError naming a missing required column."""
    if not Path(path).is_file():
        raise ValueError(f"{path}: file not found")
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        reader.fieldnames = [c.strip() for c in reader.fieldnames or []]
        for column in required:
            if column not in reader.fieldnames:
                raise ValueError(f"{path}: required column '{column}' is missing")
        # A short row gives None values, a long one a None key: both are read as if the cells were empty.
        return [(reader.line_num, {k: (v or "").strip() for k, v in row.items() if k is not None}) for row in reader]


def _keep_unrepeated(found: list[tuple[str, Record]], reading: Reading) -> None:
    """Add the records to reading, reporting files listed more than once.

    Repeats that agree on label and patient keep the first listing; repeats that disagree are all left out,
    since there is no telling which listing is right.
    """
    listings = {}
    for where, record in found:
        listings.setdefault(record.file, []).append((where, record))
    for file, group in listings.items():
        first_where, first = group[0]
        if len(group) == 1:
            reading.records.append(first)
        elif all((r.label, r.patient_id) == (first.label, first.patient_id) for _, r in group):
            reading.records.append(first)
            for where, _ in group[1:]:
                reading.skipped.append(Skipped(file, f"listed more than once ({where} repeats {first_where})"))
        else:
            wheres = ", ".join(where for where, _ in group)
            reason = f"listed {len(group)} times with different labels or patient ids ({wheres})"
            reading.skipped.extend(Skipped(file, reason) for _ in group)
