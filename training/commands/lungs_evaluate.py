"""`cxr lungs-evaluate`: Dice and IoU of the lung segmenter on held-out masks, fallback rates, contact sheets."""

from __future__ import annotations

from pathlib import Path

from training.evaluation.lungs import evaluate_segmenter, report


def add_arguments(parser) -> None:
    parser.add_argument("--weights", type=Path, required=True, help="lungs.pt from `cxr lungs-train`")
    parser.add_argument("--masks", type=Path, action="append", required=True,
                        help="the mask folders it was trained on (repeatable, as `cxr lungs-train`)")
    parser.add_argument("--data", type=Path, required=True,
                        help="the folder holding cxr/ and hannover/ (for the films without masks)")
    parser.add_argument("--out", type=Path, required=True, help="folder for metrics.json, report.md, contact sheets")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the CIs")


def run(args) -> int:
    r = evaluate_segmenter(args.weights, args.masks, args.data, args.out, args.bootstrap)
    print(report(r))
    print(f"wrote {args.out}")
    return 0
