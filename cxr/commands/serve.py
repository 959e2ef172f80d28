"""`cxr serve`: serve the built site on 127.0.0.1 with the headers it needs."""

from __future__ import annotations

from pathlib import Path

from runtime.paths import REPO


def add_arguments(parser) -> None:
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--dist", type=Path, default=REPO / "dist", help="the built site")


def run(args) -> int:
    if not (args.dist / "index.html").exists():
        raise SystemExit(f"serve: {args.dist} has no index.html (run `cxr build` first)")
    from pwa.serve import serve

    serve(args.dist, args.port)
    return 0
