"""`cxr loso`: leave-one-source-out: train without each source group, score it, tabulate the variants
(training/evaluation/loso.py)."""

from __future__ import annotations

from pathlib import Path

from training.data.dataset import load_prepared
from training.data.prepare import prepare
from training.evaluation.loso import VARIANTS, loso_table, run_name, run_variant, seed_summary


def add_arguments(parser) -> None:
    parser.add_argument("--data", action="append", required=True, metavar="SRC",
                        help="datasets: ../shared/data/cxr, ../shared/data/hannover, "
                             "../shared/data/montgomery-shenzhen (repeatable; a fold needs its source)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the runs, results and the table")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--epochs", type=int, default=8,
                        help="the same budget for every run (8: the table of docs/shortcuts.md)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="training seeds: every variant is run once per seed (the split stays that of the first)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the CIs")
    parser.add_argument("--arch", default="efficientnet_lite0", help="backbone, unless a variant sets its own")
    parser.add_argument("--weights", default="imagenet", help="initial weights (as `cxr train --weights`)")
    parser.add_argument("--size", type=int, default=160,
                        help="network input side (as `cxr prepare --size`; 160: the table of docs/shortcuts.md)")
    parser.add_argument("--lungs", type=Path, help="the lung segmenter (`cxr lungs-train`) of the lungcrop variant")
    parser.add_argument("--lung-masks", type=Path,
                        help="the lungmasks folder: also measure the evidence inside the true lungs of test films")


def _prepared(args, lung_crop: bool) -> Path:
    """One prepared folder per geometry, the same split (by patient, seeded) in each."""
    prepared = args.out / ("prepared-lungcrop" if lung_crop else "prepared")
    if lung_crop and not args.lungs:
        raise SystemExit("loso: the lungcrop variant needs --lungs (a segmenter from `cxr lungs-train`)")
    if not (prepared / "prepared.json").exists():
        prepare(args.data, prepared, cache_dir=args.out / "cache", seed=args.seeds[0], size=args.size,
                lung_crop=str(args.lungs) if lung_crop else "")
    return prepared


def run(args) -> int:
    rows = {}
    for seed in args.seeds:
        for name in args.variants:
            prepared = _prepared(args, VARIANTS[name].lung_crop)
            missing = set(VARIANTS[name].sources) - {r["source"] for r in load_prepared(prepared)[1]}
            if missing:
                raise SystemExit(f"loso: variant {name} trains on {', '.join(sorted(missing))}, which no --data "
                                 f"holds (../shared/data/hannover, ../shared/data/montgomery-shenzhen)")
            rows[run_name(name, seed)] = run_variant(name, prepared, args.out, args.epochs, seed, args.bootstrap,
                                                     args.arch, args.weights, args.lung_masks)
    text = loso_table(rows) + "\nOver seeds (mean, min-max):\n\n" + seed_summary(rows)
    (args.out / "loso-table.md").write_text(text)
    print(text)
    print(f"wrote {args.out / 'loso-table.md'}")
    return 0
