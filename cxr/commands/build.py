"""`cxr build` (= `python build.py`): every stage in order, skipping unchanged ones (cxr/pipeline.py)."""

from __future__ import annotations

from pathlib import Path

from cxr.pipeline import DEMO, build
from runtime.paths import RELEASE_DIR, REPO

from . import pwa as pwa_command


def add_arguments(parser) -> None:
    parser.add_argument("--data", action="append", metavar="SRC",
                        help="dataset (repeatable; see `cxr prepare --help`); none: the site of the released model")
    parser.add_argument("--demo", action="store_true",
                        help="train the phantom demo here (a few minutes) instead of using the released model")
    parser.add_argument("--model", type=Path, default=RELEASE_DIR,
                        help="without --data or --demo: the export folder to build the site from")
    parser.add_argument("--work", type=Path, default=REPO / "work", help="intermediate files")
    parser.add_argument("--dist", type=Path, default=REPO / "dist", help="the site")
    parser.add_argument("--force", action="store_true", help="run every stage even if its inputs did not change")
    parser.add_argument("--phantoms", type=int, default=DEMO["phantoms"], help="demo only: number of phantoms")
    parser.add_argument("--lungs", type=Path, metavar="LUNGS_PT",
                        help="a lung segmenter for the evidence-in-the-lungs outputs (as `cxr export --lungs`)")
    parser.add_argument("--gate", type=Path, metavar="GATE_PT",
                        help="a chest gate trained on that segmenter (as `cxr export --gate`)")
    training = parser.add_argument_group("training (as `cxr train`)")
    training.add_argument("--arch", help="default resnet50 (demo: resnet18)")
    training.add_argument("--weights", help="imagenet | none | auto | PATH (default auto; demo: none)")
    training.add_argument("--epochs", type=int, help="default 30 (demo: 15)")
    training.add_argument("--lr", type=float, help="default 3e-4 (demo: 1e-3)")
    training.add_argument("--batch-size", type=int, default=32)
    training.add_argument("--seed", type=int, default=0, help="split and training seed")
    training.add_argument("--size", type=int, default=224, help="network input side")
    data = parser.add_argument_group("dataset options (as `cxr prepare`)")
    data.add_argument("--class-map", action="append", default=[], metavar="FOLDER=CLASS")
    data.add_argument("--patient-regex")
    data.add_argument("--rsna-not-normal")


def run(args) -> int:
    from export.package import ExportRejected
    from training.data.prepare import parse_class_map

    if not args.data and not args.demo:  # the released model: no training, the site in seconds
        if not (args.model / "model.json").exists():
            raise SystemExit(f"build: {args.model / 'model.json'} not found: run `make release` to make the released "
                             "model, or `cxr build --demo` for the phantom demo")
        return pwa_command.run(args)
    args.class_map = parse_class_map(args.class_map)
    try:
        build(args)
    except (FileNotFoundError, ValueError, ExportRejected) as e:  # pwa.site.SiteError is a ValueError
        raise SystemExit(f"build: {e}") from None
    return 0
