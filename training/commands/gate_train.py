"""`cxr gate-train`: train the chest gate on the lung segmenter and measure it (cross-validated by patient, each
chest collection left out, never-trained negatives); writes gate.pt, metrics.json and report.md."""

from __future__ import annotations

from pathlib import Path

SHARED = Path("../shared/data")


def add_arguments(parser) -> None:
    parser.add_argument("--chest", type=Path, action="append",
                        help="a chest-film folder with manifest.csv (repeat; default: ../shared/data/cxr, hannover, "
                             "montgomery-shenzhen)")
    parser.add_argument("--not-frontal", type=Path, default=SHARED / "not-frontal",
                        help="lateral views and CT slices with manifest.csv (default: %(default)s)")
    parser.add_argument("--lungs", type=Path, default=Path("models/lung-segmenter/lungs.pt"),
                        help="the lung segmenter the gate reads (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("models/chest-gate"), help="output folder (%(default)s)")
    parser.add_argument("--augmented", type=int, default=3, help="augmented copies of the data (default 3)")
    parser.add_argument("--drawn", type=int, default=400, help="drawn pages, screenshots, noise, fields (400)")
    parser.add_argument("--epochs", type=int, default=25, help="epochs of each head (default 25)")
    parser.add_argument("--threshold", type=float, default=0.5, help="refuse below this gate probability (0.5)")
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds by patient (default 5)")
    parser.add_argument("--no-held-out", action="store_true", help="skip leaving each chest collection out")
    parser.add_argument("--seed", type=int, default=0)


def run(args) -> int:
    from training.evaluation.gate import train_gate

    chest = args.chest or [SHARED / name for name in ("cxr", "hannover", "montgomery-shenzhen")]
    try:
        metrics = train_gate(chest, args.not_frontal, args.lungs, args.out, augmented=args.augmented,
                             drawn=args.drawn, epochs=args.epochs, threshold=args.threshold, folds=args.folds,
                             hold_out_sources=not args.no_held_out, seed=args.seed)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"gate-train: {e}") from None
    print((args.out / "report.md").read_text())
    print(f"gate-train: {metrics['minutes']:.1f} min; wrote {args.out / 'gate.pt'}")
    return 0
