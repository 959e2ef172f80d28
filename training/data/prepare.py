"""`python -m training prepare`: read datasets, decode and cache every image, split by patient, report.

Outputs in --out:
  manifest.csv   every kept image: file, label, patient_id, source, view, split, sha256, height, width (+ extras)
  prepared.json  what training needs: cache folder, image size, preprocessing version, seed, fractions, counts
  report.md/json counts per label x source x split, patients per split, every skipped file with its reason
"""

from __future__ import annotations

import json
import multiprocessing
import os
from collections import Counter
from pathlib import Path

from core.classes import CLASSES
from core.markdown import table
from core.progress import bar

from ..graph.preprocess import PREPROCESS_VERSION, GeometryConfig
from . import readers
from .cache import Cache, process_file
from .records import Reading, Skipped, write_manifest
from .splits import DEFAULT_FRACTIONS, SPLITS, assign_splits, check_patient_splits

POOL_MIN_FILES = 64  # below this, worker start-up costs more than it saves


def _init_worker():
    import torch

    torch.set_num_threads(1)


def _work(args):
    file, cache_root, geometry = args
    return process_file(file, Cache(cache_root, geometry))


def process_all(files: list[str], cache: Cache, workers: int, progress: bool = True):
    """Run every file through the cache, in order; returns [(entry, was_cached)]."""
    jobs = [(f, cache.root, cache.geometry) for f in files]
    options = dict(total=len(files), desc="decode+cache", unit="img", enabled=progress)
    if workers <= 1 or len(files) < POOL_MIN_FILES:
        return [_work(j) for j in bar(jobs, **options)]
    # spawn, not fork: forking a process that already runs torch's thread pools can deadlock.
    with multiprocessing.get_context("spawn").Pool(workers, initializer=_init_worker) as pool:
        return list(bar(pool.imap(_work, jobs, chunksize=8), **options))


def prepare(data: list[str], out: Path, *, cache_dir: Path | None = None, size: int = 224, seed: int = 0,
            fractions=DEFAULT_FRACTIONS, workers: int | None = None, progress: bool = True,
            class_map: dict | None = None, patient_regex: str | None = None, rsna_not_normal: str | None = None,
            crop_borders: bool = False, suppress_text: bool = False, lung_crop: str = "") -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    geometry = GeometryConfig(size, crop_borders, suppress_text, str(Path(lung_crop).resolve()) if lung_crop else "")
    cache = Cache(cache_dir or out / "cache", geometry)
    workers = workers if workers is not None else min(4, os.cpu_count() or 1)

    reading = Reading()
    for spec in data:
        reading.extend(readers.read(spec, class_map=class_map, patient_regex=patient_regex,
                                    rsna_not_normal=rsna_not_normal))
    records, skipped = [], list(reading.skipped)
    seen_files = {}
    for rec in reading.records:
        if rec.file in seen_files:
            skipped.append(Skipped(rec.file, f"listed by two datasets ({seen_files[rec.file]} and {rec.source})"))
        else:
            seen_files[rec.file] = rec.source
            records.append(rec)

    results = process_all([r.file for r in records], cache, workers, progress)

    rows, first_with_pixels = [], {}
    n_cached = 0
    for rec, (entry, cached) in zip(records, results):
        n_cached += cached
        if entry.error:
            skipped.append(Skipped(rec.file, entry.error))
            continue
        if entry.pixel_sha256 in first_with_pixels:  # duplicates would leak across splits and skew counts
            first = first_with_pixels[entry.pixel_sha256]
            conflict = f", labelled {first['label']} there and {rec.label} here" if first["label"] != rec.label else ""
            skipped.append(Skipped(rec.file, f"same pixels as {first['file']}{conflict}"))
            continue
        row = {"file": rec.file, "label": rec.label, "patient_id": rec.patient_id, "source": rec.source,
               "view": rec.view, **rec.extra, "sha256": entry.sha256, "height": entry.height, "width": entry.width}
        first_with_pixels[entry.pixel_sha256] = row
        rows.append(row)

    if not rows:
        raise ValueError(f"no usable images in {', '.join(data)} ({len(skipped)} skipped; see below)\n"
                         + "\n".join(f"  {s.file}: {s.reason}" for s in skipped[:20]))

    split_of = assign_splits(rows, fractions, seed)
    for row in rows:
        row["split"] = split_of[row["patient_id"]]
    check_patient_splits(rows)

    columns = ["file", "label", "patient_id", "source", "view", "split", "sha256", "height", "width"]
    columns += sorted({k for row in rows for k in row} - set(columns))
    write_manifest(out / "manifest.csv", rows, columns)
    summary = _summary(rows, skipped, reading.notes, n_cached, len(records))
    settings = {"cache_dir": str(Path(cache.root).resolve()), **geometry.as_dict(),
                "preprocess_version": PREPROCESS_VERSION, "seed": seed, "fractions": list(fractions), "data": data}
    (out / "prepared.json").write_text(json.dumps({**settings, **summary}, indent=2) + "\n")
    (out / "report.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "report.md").write_text(_markdown(summary, data))
    return summary


def _summary(rows, skipped, notes, n_cached, n_records) -> dict:
    counts = Counter((r["label"], r["source"], r["split"]) for r in rows)
    patients = {s: len({r["patient_id"] for r in rows if r["split"] == s}) for s in SPLITS}
    return {
        "images": len(rows),
        "patients": len({r["patient_id"] for r in rows}),
        "patients_per_split": patients,
        "images_per_split": {s: sum(1 for r in rows if r["split"] == s) for s in SPLITS},
        "counts": [{"label": label, "source": src, "split": s, "images": n}
                   for (label, src, s), n in sorted(counts.items())],
        "skipped": [{"file": s.file, "reason": s.reason} for s in skipped],
        "notes": notes,
        "decoded": n_records - n_cached,
        "from_cache": n_cached,
        "ages": age_check(rows),
    }


ADULT_AGE = 18


def _age(row: dict) -> float | None:
    try:
        age = float(row.get("age") or "")
    except ValueError:  # empty or not a number: unknown
        return None
    return age if age == age else None  # "nan": unknown too


def age_check(rows: list[dict]) -> dict:
    """Where an `age` column gives ages: how many images have one, and whether the children among them (under
    ADULT_AGE) all carry one label. Children's films differ in body size, proportions and growth plates; when they
    come from one class only, a model can learn age as that class's cue (a shortcut a user's data may hold even
    though ../shared/data holds no children)."""
    known = [(r["label"], age) for r in rows if (age := _age(r)) is not None]
    children = [label for label, age in known if age < ADULT_AGE]
    by_label = dict(sorted(Counter(children).items()))
    result = {"images_with_age": len(known), "children": len(children), "children_by_label": by_label,
              "warning": None}
    if len(by_label) == 1 and len({label for label, _ in known}) > 1:
        (label, n), = by_label.items()
        result["warning"] = (f"all {n} children (under {ADULT_AGE}) are labelled {label}: a model can learn age as a "
                             f"cue for {label}; leave them out, or add children of the other classes")
    return result


def _markdown(summary: dict, data: list[str]) -> str:
    sources = sorted({c["source"] for c in summary["counts"]})
    counts = {(c["label"], c["source"], c["split"]): c["images"] for c in summary["counts"]}
    rows = []
    for label in CLASSES:
        for src in sources:
            n = [counts.get((label, src, s), 0) for s in SPLITS]
            if sum(n):
                rows.append([label, src, *n, sum(n)])
    lines = ["# Prepared data\n", f"Data: {', '.join(data)}\n",
             f"{summary['images']} images from {summary['patients']} patients; "
             f"{len(summary['skipped'])} files skipped.\n", "## Images per label, source and split\n",
             table(["label", "source", *SPLITS, "total"], rows, "ll" + "r" * (len(SPLITS) + 1)),
             "", "## Patients per split\n",
             table(list(SPLITS), [[summary["patients_per_split"][s] for s in SPLITS]], "r" * len(SPLITS)), ""]
    ages = summary["ages"]
    if ages["images_with_age"]:
        lines += ["## Ages\n", f"{ages['images_with_age']} images with an age; {ages['children']} of children "
                  f"(under {ADULT_AGE})" + (f": {', '.join(f'{k} {v}' for k, v in ages['children_by_label'].items())}"
                                            if ages["children"] else "") + ".\n"]
        if ages["warning"]:
            lines += [f"**Warning:** {ages['warning']}.\n"]
    if summary["notes"]:
        lines += ["## Notes\n"] + [f"- {n}" for n in summary["notes"]] + [""]
    lines += ["## Skipped files\n"]
    lines += [f"- `{s['file']}`: {s['reason']}" for s in summary["skipped"]] or ["None."]
    return "\n".join(lines) + "\n"


def parse_class_map(items: list[str]) -> dict:
    mapping = {}
    for item in items:
        folder, sep, label = item.partition("=")
        if not sep or label not in CLASSES:
            raise ValueError(f"--class-map expects FOLDER=CLASS with CLASS one of {', '.join(CLASSES)}, got {item!r}")
        mapping[folder] = label
    return mapping
