"""`cxr upgrade-checkpoint`: convert a checkpoint of an earlier version to the current format."""

from __future__ import annotations

from pathlib import Path

from training.model.checkpoint import FORMAT, CheckpointError, upgrade_checkpoint


def add_arguments(parser) -> None:
    parser.add_argument("checkpoint", type=Path, help="a best.pt or last.pt of format 1")
    parser.add_argument("--out", type=Path, help="where to write the converted checkpoint (default: in place)")


def run(args) -> int:
    try:
        out = upgrade_checkpoint(args.checkpoint, args.out)
    except (CheckpointError, FileNotFoundError) as e:
        raise SystemExit(f"upgrade-checkpoint: {e}") from None
    print(f"wrote {out} (format {FORMAT})")
    return 0
