"""`cxr export`: export a checkpoint to ONNX (fp32, int8 when it passes), verify it, write model.json.

Exit status is non-zero when a check fails; a model that fails is never written as accepted.
"""

from __future__ import annotations

import sys
from pathlib import Path


def add_arguments(parser) -> None:
    parser.add_argument("--checkpoint", required=True, type=Path, help="best.pt from `cxr train`")
    parser.add_argument("--out", required=True, type=Path, help="folder for model.onnx, model.int8.onnx, model.json")
    parser.add_argument("--data", type=Path, help="prepared folder (default: the one the checkpoint was trained on)")
    parser.add_argument("--evaluation", type=Path,
                        help="metrics.json of `cxr evaluate` for this checkpoint, whose source probe goes into the "
                             "model card (default: CHECKPOINT_DIR/eval/metrics.json when present)")
    parser.add_argument("--lungs", type=Path, metavar="LUNGS_PT",
                        help="a lung segmenter (`cxr lungs-train`): add the evidence-in-the-lungs outputs to a model "
                             "that does not crop to the lungs (one that does carries its own)")
    parser.add_argument("--gate", type=Path, metavar="GATE_PT",
                        help="a chest gate (`cxr gate-train`) trained on the same lung segmenter: add the gate "
                             "outputs (is this a frontal chest film?)")
    parser.add_argument("--no-int8", dest="int8", action="store_false", help="skip the int8 model")
    parser.add_argument("--calibration-images", type=int, default=48, help="training images for int8 calibration")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for metric CIs")


def run(args) -> int:
    from export.package import ExportRejected, export
    from export.verify import Check, table

    try:
        card = export(args.checkpoint, args.out, args.data, args.int8, args.calibration_images, args.bootstrap,
                      args.evaluation, lungs=args.lungs, gate=args.gate)
    except ExportRejected as e:
        print(f"export: {e}", file=sys.stderr)
        return 1
    except (FileNotFoundError, ValueError) as e:
        print(f"export: {e}", file=sys.stderr)
        return 2
    print(table([Check(**c) for c in card["verification"]]))
    print(f"int8: {card['int8']['note']}")
    for name, info in card["files"].items():
        rates = info["ood_rates"]
        flagged = ", ".join(f"{k} {v['flagged']}/{v['n']}" for k, v in rates.items() if k != "test_xrays")
        x = rates["test_xrays"]
        print(f"{name}: {info['size'] / 1e6:.1f} MB; OOD flagged: {flagged}; test X-rays not flagged "
              f"{x['not_flagged']}/{x['n']}")
    print(f"wrote {args.out / 'model.json'} (version {card['version']}, default model {card['default_model']})")
    return 0
