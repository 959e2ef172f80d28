"""`cxr predict IMAGE... --model FILE [--site-profile FILE]`: classify files with onnxruntime alone (no torch); one
JSON line per file, calibrated for a site when a profile is given (each line then says so in `site_profile`)."""

from __future__ import annotations

import json
from pathlib import Path

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
    try:
        failed = 0
        for result in predict_files(args.images, args.model, args.heatmap_dir, args.threads, args.site_profile):
            failed += "error" in result
            print(json.dumps(result), flush=True)
    except (FileNotFoundError, ValueError) as e:  # a missing model, a refused site profile
        raise SystemExit(f"predict: {e}") from None
    return 1 if failed else 0
