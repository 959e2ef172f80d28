"""`cxr release`: retrain the released model (models/) from the shared data with pinned seeds."""

from __future__ import annotations

import sys
from pathlib import Path

from cxr.release import HELD_OUT, SHARED_DATA, release, rescore
from runtime.paths import RELEASE_DIR, REPO


def add_arguments(parser) -> None:
    parser.add_argument("--data", action="append", metavar="SRC",
                        help=f"dataset(s) to train on (default: {SHARED_DATA / 'cxr'})")
    parser.add_argument("--out", type=Path, default=RELEASE_DIR, help="the release folder to (re)write")
    parser.add_argument("--work", type=Path, default=REPO / "work" / "release", help="intermediate files")
    parser.add_argument("--held-out", action="append", metavar="SRC",
                        help="dataset(s) of sources never trained on, to score the release on (default: "
                             f"{HELD_OUT[0]} where it exists)")
    parser.add_argument("--reexport", action="store_true",
                        help="do not train: export the finished run in --work again and rewrite the release")
    parser.add_argument("--rescore", action="store_true",
                        help="do not train or export: score the release in --out on the held-out data again")


def run(args) -> int:
    data = args.data or [str(SHARED_DATA / "cxr")]
    held_out = args.held_out or [spec for spec in HELD_OUT if Path(spec).exists()]
    command = ["cxr", "release", *sys.argv[2:]]
    try:
        if args.rescore:
            card = rescore(args.out, held_out, command)
        else:
            card = release(data, args.out, args.work, command, args.reexport, held_out)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"release: {e}") from None
    for text in card.get("external", {}).get("summary", []):
        print(text)
    sizes = ", ".join(f"{n} {info['size'] / 1e6:.1f} MB" for n, info in card["files"].items())
    print(f"wrote {args.out}: {card['name']} {card['version']} ({sizes}); default {card['default_model']}")
    return 0
