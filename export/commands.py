"""`cxr export` (export and verify a checkpoint) and `cxr verify` (re-verify an export folder).

Exit status is non-zero when a check fails; a model that fails is never written as accepted.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from core.checksum import sha256_file

from . import ood_probe, verify
from .card import FP32, INT8


def verify_dir(folder: Path, checkpoint=None, data=None) -> bool:
    """Re-run every check on an export folder against its checkpoint; print the table; True when all pass."""
    from .package import LabelledSplit

    card = json.loads((folder / "model.json").read_text())
    checkpoint = Path(checkpoint or card["source"]["checkpoint"])
    data = Path(data or card["source"]["data"])
    checks = []
    for name, info in card["files"].items():
        actual = sha256_file(folder / name) if (folder / name).exists() else "missing"
        checks.append(verify.Check(f"{name}: sha256 matches model.json", float(actual == info["sha256"]), 1,
                                   actual == info["sha256"]))
    checks += verify.check_fp32(folder / FP32, checkpoint, lungs_path=card.get("lungs", {}).get("segmenter", {}).get("path"))
    if INT8 in card["files"]:
        test = LabelledSplit.of(data, "test")
        outliers = [image for images in ood_probe.ood_sets().values() for image in images.values()]
        fp32, int8 = verify.session(folder / FP32), verify.session(folder / INT8)
        checks += verify.compare_int8(verify.predict_all(fp32, test.images), verify.predict_all(int8, test.images),
                                      test.labels, card["ood_threshold"], verify.predict_all(fp32, outliers),
                                      verify.predict_all(int8, outliers))
    print(verify.table(checks))
    return all(c.passed for c in checks)


def add_verify_arguments(parser) -> None:
    parser.add_argument("folder", type=Path, help="an export folder (model.json + model files)")
    parser.add_argument("--checkpoint", help="the checkpoint it came from (default: the one recorded in model.json)")
    parser.add_argument("--data", help="prepared folder (default: the one recorded in model.json)")


def run_verify(args) -> int:
    if not (args.folder / "model.json").exists():
        raise SystemExit(f"verify: {args.folder / 'model.json'} not found")
    ok = verify_dir(args.folder, args.checkpoint, args.data)
    print("all checks passed" if ok else "VERIFICATION FAILED")
    return 0 if ok else 1


def add_export_arguments(parser) -> None:
    parser.add_argument("--checkpoint", required=True, type=Path, help="best.pt from `cxr train`")
    parser.add_argument("--out", required=True, type=Path, help="folder for model.onnx, model.int8.onnx, model.json")
    parser.add_argument("--data", type=Path, help="prepared folder (default: the one the checkpoint was trained on)")
    parser.add_argument("--evaluation", type=Path,
                        help="metrics.json of `cxr evaluate` for this checkpoint, whose source probe goes into the "
                             "model card (default: CHECKPOINT_DIR/eval/metrics.json when present)")
    parser.add_argument("--lungs", type=Path, metavar="LUNGS_PT",
                        help="a lung segmenter (`cxr lungs-train`): add the evidence-in-the-lungs outputs to a model "
                             "that does not crop to the lungs (one that does carries its own)")
    parser.add_argument("--no-int8", dest="int8", action="store_false", help="skip the int8 model")
    parser.add_argument("--calibration-images", type=int, default=48, help="training images for int8 calibration")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for metric CIs")


def run_export(args) -> int:
    from .package import ExportRejected, export
    from .verify import Check, table

    try:
        card = export(args.checkpoint, args.out, args.data, args.int8, args.calibration_images, args.bootstrap,
                      args.evaluation, lungs=args.lungs)
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
