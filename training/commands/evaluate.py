"""`cxr evaluate`: metrics with patient-level CIs per source, source probe, plots, Grad-CAM, report."""

from __future__ import annotations

import sys
from pathlib import Path

from training.evaluation.evaluate import evaluate
from training.evaluation.report import fmt, metrics_table


def add_arguments(parser) -> None:
    parser.add_argument("--checkpoint", required=True, help="best.pt from `cxr train`")
    parser.add_argument("--data", required=True, help="the `cxr prepare` output the model was trained on")
    parser.add_argument("--out", required=True, help="folder for metrics.json, plots and report.md")
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for CIs")
    parser.add_argument("--gradcam-samples", type=int, default=12, help="overlay PNGs to write")


def run(args) -> int:
    try:
        r = evaluate(args.checkpoint, args.data, args.out, args.split, args.bootstrap, args.gradcam_samples)
    except (FileNotFoundError, ValueError, KeyError) as e:
        raise SystemExit(f"evaluate: {e}") from None
    print("\n".join(metrics_table(r["all"])))
    for source, m in r["by_source"].items():
        print(f"\n{source}: accuracy {fmt(m['accuracy'])}, macro AUC {fmt(m['macro_auc'])}")
    if r["pointing_game"]:
        p = r["pointing_game"]
        print(f"\npointing game ({p['images']} lesion images): hottest cell on the lesion {100 * p['cell_rate']:.1f}%, "
              f"hottest point inside it {100 * p['point_rate']:.1f}%")
    print(f"\nwrote {Path(args.out) / 'metrics.json'} and {Path(args.out) / 'report.md'}", file=sys.stderr)
    return 0
