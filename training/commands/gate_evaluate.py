"""`cxr gate-evaluate`: the chest gate of an exported model, through the predictor, on the patients its gate never
saw and on never-trained negatives; writes gate-evaluation.json and gate-evaluation.md."""

from __future__ import annotations

from pathlib import Path

from .gate_train import SHARED


def add_arguments(parser) -> None:
    parser.add_argument("--model", type=Path, default=Path("models/cxr-triage-lite0/model.onnx"),
                        help="an exported model with a gate (default: %(default)s)")
    parser.add_argument("--chest", type=Path, action="append",
                        help="chest-film folders with manifest.csv (default: ../shared/data/cxr, hannover, "
                             "montgomery-shenzhen)")
    parser.add_argument("--not-frontal", type=Path, default=SHARED / "not-frontal", help="(default: %(default)s)")
    parser.add_argument("--out", type=Path, help="output folder (default: the model's folder)")


def run(args) -> int:
    from training.evaluation.gate import evaluate_export

    chest = args.chest or [SHARED / name for name in ("cxr", "hannover", "montgomery-shenzhen")]
    out = args.out or args.model.parent
    try:
        value = evaluate_export(args.model, chest, args.not_frontal, out)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"gate-evaluate: {e}") from None
    print((out / "gate-evaluation.md").read_text())
    print(f"gate-evaluate: {value['minutes']:.1f} min")
    return 0
