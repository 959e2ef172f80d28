"""`cxr predict IMAGE... --model FILE [--site-profile FILE]`: classify files with onnxruntime alone (no torch); one
JSON line per file, calibrated for a site when a profile is given (each line then says so in `site_profile`).

From 20 readable files on (model.json `site_shift.min_films`), the run ends with one line on stderr: whether the
files, taken as one site's, differ from the films the model was validated on (runtime/site_shift.py; docs/site.md).
stdout stays one JSON line per file."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from runtime import site_shift
from runtime.predictor import predict_files


def add_arguments(parser) -> None:
    parser.add_argument("images", nargs="+", help="PNG, JPEG or DICOM files")
    parser.add_argument("--model", required=True, type=Path, help="model.onnx or model.int8.onnx (beside model.json)")
    parser.add_argument("--heatmap-dir", type=Path, help="write <name>.heatmap.png overlays here")
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0: all cores)")
    parser.add_argument("--site-profile", type=Path,
                        help="calibrate every result for a site with its profile (`cxr validate` writes one; it must "
                             "have been fitted for this model file)")


def run(args) -> int:
    results = []
    try:
        failed = 0
        for result in predict_files(args.images, args.model, args.heatmap_dir, args.threads, args.site_profile):
            failed += "error" in result
            results.append({"ood_score": result["ood_score"], "logits": result["logits"]} if "error" not in result
                           else {})
            print(json.dumps(result), flush=True)
    except (FileNotFoundError, ValueError) as e:  # a missing model, a refused site profile
        raise SystemExit(f"predict: {e}") from None
    card = json.loads((args.model.parent / "model.json").read_text())  # there: the predictor has read it
    verdict = site_shift.check_results(results, card, args.model.name)
    if verdict["n"] >= verdict["min_films"]:
        print(site_shift.summary_line(verdict), file=sys.stderr, flush=True)
    return 1 if failed else 0
