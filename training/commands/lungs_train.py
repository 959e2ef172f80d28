"""`cxr lungs-train`: train the lung segmenter on the lung masks (split by patient)."""

from __future__ import annotations

from pathlib import Path

from training.loop.lungs import train_segmenter


def add_arguments(parser) -> None:
    parser.add_argument("--masks", type=Path, action="append", required=True,
                        help="a lung-mask folder (lungmasks: manifest.csv + masks/; montgomery-shenzhen: masks.csv); "
                             "repeat to train on several")
    parser.add_argument("--out", type=Path, required=True, help="folder for lungs.pt, log.csv, summary.json")
    parser.add_argument("--epochs", type=int, default=60, help="at most this many epochs")
    parser.add_argument("--batch-size", type=int, default=16, help="batch size")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (cosine decay)")
    parser.add_argument("--seed", type=int, default=0, help="split and training seed")
    parser.add_argument("--weights", default="imagenet", choices=("imagenet", "none"), help="encoder initialisation")


def run(args) -> int:
    summary = train_segmenter(args.masks, args.out, args.epochs, args.batch_size, args.lr, args.seed,
                              weights=args.weights)
    print(f"lung segmenter: best validation Dice {summary['best_val_dice']:.3f} at epoch {summary['best_epoch']} "
          f"({summary['train_seconds'] / 60:.1f} min); wrote {args.out / 'lungs.pt'}")
    return 0
