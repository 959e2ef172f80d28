"""`cxr verify`: re-verify an export folder against its checkpoint; exit status 1 when a check fails."""

from __future__ import annotations

import json
from pathlib import Path

from core.checksum import sha256_file
from export import verify
from export.card import FP32, INT8
from training.data import not_xrays


def verify_dir(folder: Path, checkpoint=None, data=None) -> bool:
    """Re-run every check on an export folder against its checkpoint; print the table; True when all pass."""
    from export.package import LabelledSplit

    card = json.loads((folder / "model.json").read_text())
    checkpoint = Path(checkpoint or card["source"]["checkpoint"])
    data = Path(data or card["source"]["data"])
    checks = []
    for name, info in card["files"].items():
        actual = sha256_file(folder / name) if (folder / name).exists() else "missing"
        checks.append(verify.Check(f"{name}: sha256 matches model.json", float(actual == info["sha256"]), 1,
                                   actual == info["sha256"]))
    lungs_path = card.get("lungs", {}).get("segmenter", {}).get("path")
    checks += verify.check_fp32(folder / FP32, checkpoint, lungs_path=lungs_path)
    if INT8 in card["files"]:
        test = LabelledSplit.of(data, "test")
        outliers = [image for images in not_xrays.ood_sets().values() for image in images.values()]
        fp32, int8 = verify.session(folder / FP32), verify.session(folder / INT8)
        checks += verify.compare_int8(verify.predict_all(fp32, test.images), verify.predict_all(int8, test.images),
                                      test.labels, card["ood_threshold"], verify.predict_all(fp32, outliers),
                                      verify.predict_all(int8, outliers))
    print(verify.table(checks))
    return all(c.passed for c in checks)


def add_arguments(parser) -> None:
    parser.add_argument("folder", type=Path, help="an export folder (model.json + model files)")
    parser.add_argument("--checkpoint", help="the checkpoint it came from (default: the one recorded in model.json)")
    parser.add_argument("--data", help="prepared folder (default: the one recorded in model.json)")


def run(args) -> int:
    if not (args.folder / "model.json").exists():
        raise SystemExit(f"verify: {args.folder / 'model.json'} not found")
    ok = verify_dir(args.folder, args.checkpoint, args.data)
    print("all checks passed" if ok else "VERIFICATION FAILED")
    return 0 if ok else 1
