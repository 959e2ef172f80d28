"""`cxr compare`: train and evaluate remedy variants under one protocol, tabulate them."""

from __future__ import annotations

from pathlib import Path

from training.evaluation.compare import VARIANTS, comparison_table, run_variant


def add_arguments(parser) -> None:
    parser.add_argument("--data", action="append", required=True, metavar="SRC", help="dataset (repeatable)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--arch", default="efficientnet_lite0")
    parser.add_argument("--weights", default="imagenet")
    parser.add_argument("--epochs", type=int, default=20, help="the same budget for every variant")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))


def run(args) -> int:
    rows = {}
    for name in args.variants:
        print(f"=== {args.arch} ({args.weights}): {name}", flush=True)
        rows[name] = run_variant(name, args.data, args.out, args.arch, args.weights, args.epochs, args.seed, args.size)
    text = comparison_table(rows)
    path = args.out / f"{args.arch}-{args.weights}-table.md"
    path.write_text(text)
    print(text)
    print(f"wrote {path}")
    return 0
