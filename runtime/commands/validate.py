"""`cxr validate --model FILE --data SRC --out DIR [--site NAME]`: how the model does on a site's labelled films, and
the site profile that calibrates it for them (docs/site.md). Writes report.md, metrics.json, reliability.svg and
site-profile.json; the exit status is 1 when the films cannot support a profile (the report says why)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from runtime.site_validation import validate_site, write_outputs


def add_arguments(parser) -> None:
    parser.add_argument("--model", required=True, type=Path,
                        help="model.onnx or model.int8.onnx (beside model.json), or an export folder (its default)")
    parser.add_argument("--data", required=True, type=Path,
                        help="the site's labelled films: a folder with one subfolder per class, or a CSV with "
                             "file,label[,patient_id] (paths relative to the CSV)")
    parser.add_argument("--out", required=True, type=Path, help="folder for report.md, metrics.json, site-profile.json")
    parser.add_argument("--site", help="the site's name, shown on every calibrated result (default: the data "
                                       "folder's name)")
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (by patient) for the 95%% CIs")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap and of the cross-validation folds")
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0: all cores)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def model_file(path: Path) -> Path:
    """The ONNX file: the one given, or an export folder's default model."""
    if path.is_dir():
        card = path / "model.json"
        if not card.exists():
            raise FileNotFoundError(f"{card} not found: --model must be an ONNX file beside its model.json, or an "
                                    "export folder")
        return path / json.loads(card.read_text())["default_model"]
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: --model must be an ONNX file beside its model.json")
    return path


def run(args) -> int:
    if args.n_boot < 1:
        raise SystemExit("validate: --n-boot must be at least 1")
    try:
        model = model_file(args.model)
        metrics, profile = validate_site(model, args.data, args.site, n_boot=args.n_boot, seed=args.seed,
                                         threads=args.threads, progress=not args.no_progress)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"validate: {e}") from None
    written = write_outputs(args.out, metrics, profile)
    figures = metrics["site_figures"]
    print(f"{metrics['site']}: {figures['films']} films of {figures['patients']} patients scored, "
          f"{len(metrics['unreadable'])} unreadable (skipped, listed in the report); accuracy "
          f"{figures['metrics']['accuracy']:.3f}")
    if profile:
        cv = profile["cross_validated"]
        print(f"site profile: accuracy {cv['before']['accuracy']:.3f} -> {cv['after']['accuracy']:.3f} "
              f"(cross-validated by patient, {cv['method']})")
    print("wrote " + ", ".join(str(p) for p in written))
    if not profile:
        print(f"validate: no site profile: {metrics['profile_refused']}", file=sys.stderr)
        return 1
    return 0
