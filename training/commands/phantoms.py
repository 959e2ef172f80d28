"""`cxr phantoms`: write synthetic chest phantoms with lesion masks."""

from __future__ import annotations

import argparse
from pathlib import Path

from training.data.phantoms import write_phantoms


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="folder to write images/, masks/, manifest.csv")
    parser.add_argument("-n", type=int, default=300, help="number of phantoms (labels balanced)")
    parser.add_argument("--size", type=int, default=256, help="side in pixels")
    parser.add_argument("--seed", type=int, default=0)


def run(args) -> int:
    manifest = write_phantoms(args.out, args.n, args.size, args.seed)
    print(f"wrote {args.n} phantoms and {manifest}")
    return 0
