"""`cxr pwa`: render the static site (dist/) from an export."""

from __future__ import annotations

import json
from pathlib import Path

from cxr.pipeline import OPEN_HINT, build_pwa
from runtime.paths import REPO


def add_arguments(parser) -> None:
    parser.add_argument("--model", required=True, type=Path, help="folder with model.json and the ONNX files")
    parser.add_argument("--dist", type=Path, default=REPO / "dist", help="where to write the site")


def run(args) -> int:
    if not (args.model / "model.json").exists():
        raise SystemExit(f"pwa: {args.model / 'model.json'} not found (run `cxr export` first)")
    try:
        build_pwa(args.model, args.dist.resolve())
    except ValueError as e:  # pwa.site.SiteError: a model file that does not match model.json, ...
        raise SystemExit(f"pwa: {e}") from None
    card = json.loads((args.model / "model.json").read_text())
    kind = "DEMO model (phantoms)" if card.get("demo") else f"model {card.get('name')} {card.get('version')}"
    print(f"wrote {args.dist} with the {kind}\n{OPEN_HINT}")
    return 0
