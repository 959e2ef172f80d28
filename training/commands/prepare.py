"""`cxr prepare`: read datasets, cache preprocessed images, split by patient."""

from __future__ import annotations

import argparse
from pathlib import Path

from core.classes import CLASSES
from training.data.prepare import parse_class_map, prepare
from training.data.splits import DEFAULT_FRACTIONS, SPLITS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", action="append", required=True, metavar="SRC",
                        help="dataset: PATH (layout auto-detected) or KIND:PATH with KIND one of manifest, ieee8023, "
                             "rsna, folders; repeat to merge datasets")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--cache", type=Path, help="cache folder (default OUT/cache); share it between runs")
    parser.add_argument("--size", type=int, default=224, help="network input side in pixels (default 224)")
    parser.add_argument("--seed", type=int, default=0, help="split seed (default 0)")
    parser.add_argument("--fractions", type=float, nargs=3, default=DEFAULT_FRACTIONS, metavar=("TRAIN", "VAL", "TEST"),
                        help="split fractions by patient (default 0.70 0.15 0.15)")
    parser.add_argument("--workers", type=int, help="decoding processes (default min(4, CPUs))")
    parser.add_argument("--class-map", action="append", default=[], metavar="FOLDER=CLASS",
                        help="folder-per-class datasets: map a folder name to a class (repeatable)")
    parser.add_argument("--patient-regex", help="folder-per-class datasets: regex whose group `patient` (or group 1) "
                                                "of the file name is the patient id")
    parser.add_argument("--crop-borders", action="store_true",
                        help="crop flat margins to the image content (in the exported graph too; docs/shortcuts.md)")
    parser.add_argument("--suppress-text", action="store_true",
                        help="replace burned-in letters and markers by their surroundings (in the graph too)")
    parser.add_argument("--lung-crop", metavar="LUNGS_PT",
                        help="crop every image to its lung box found by this segmenter (`cxr lungs-train`), in "
                             "the exported graph too; implausible masks fall back to the whole image (docs/lungs.md)")
    parser.add_argument("--rsna-not-normal", choices=CLASSES,
                        help="RSNA: keep 'No Lung Opacity / Not Normal' images with this label (default: excluded)")


def run(args) -> int:
    try:
        summary = prepare(args.data, args.out, cache_dir=args.cache, size=args.size, seed=args.seed,
                          fractions=tuple(args.fractions), workers=args.workers,
                          class_map=parse_class_map(args.class_map), patient_regex=args.patient_regex,
                          rsna_not_normal=args.rsna_not_normal, crop_borders=args.crop_borders,
                          suppress_text=args.suppress_text, lung_crop=args.lung_crop or "")
    except ValueError as e:  # a dataset that cannot be read at all (missing folder, bad CSV header, ...)
        raise SystemExit(f"prepare: {e}") from None
    print(f"{summary['images']} images, {summary['patients']} patients "
          f"(train/val/test: {'/'.join(str(summary['patients_per_split'][s]) for s in SPLITS)} patients); "
          f"{summary['decoded']} decoded, {summary['from_cache']} from cache; {len(summary['skipped'])} skipped")
    if summary["ages"]["warning"]:
        print(f"warning: {summary['ages']['warning']}")
    for note in summary["notes"]:
        print(f"note: {note}")
    for s in summary["skipped"][:20]:
        print(f"skipped {s['file']}: {s['reason']}")
    if len(summary["skipped"]) > 20:
        print(f"... and {len(summary['skipped']) - 20} more")
    print(f"wrote {args.out / 'manifest.csv'}, {args.out / 'report.md'}")
    return 0
