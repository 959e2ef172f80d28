"""`cxr site-shift-measure`: the site-shift warning's false-alarm rate on the sources the model was trained on and its
detection rate on held-out ones (training/evaluation/site_shift_rates.py; docs/site.md).

  cxr site-shift-measure --model models/cxr-triage-lite0/model.onnx \
      --held-out ../shared/data/hannover --held-out ../shared/data/montgomery-shenzhen \
      --prepared /work/release-style/work/prepared --out work/site-shift
"""

from __future__ import annotations

import json
from pathlib import Path

from core.jsonio import write_json
from runtime.paths import RELEASE_DIR
from training.evaluation.site_shift_rates import (
    BATCHES,
    SIZES,
    cached_scores,
    measure,
    pools_of,
    rates_table,
    read_rows,
    reference_card,
)


def add_arguments(parser) -> None:
    parser.add_argument("--model", type=Path, default=RELEASE_DIR / "model.onnx",
                        help="the exported model file (beside its model.json)")
    parser.add_argument("--test-split", type=Path,
                        help="the held-in films: a CSV file,label,patient_id,source (default: test_split.csv beside "
                             "the model, as `cxr release` writes it)")
    parser.add_argument("--data-root", type=Path, default=Path("../shared/data"),
                        help="what the test split's relative paths are relative to")
    parser.add_argument("--held-out", type=Path, action="append", default=[], metavar="DIR",
                        help="a source never used in development: a folder with manifest.csv (repeatable)")
    parser.add_argument("--prepared", type=Path,
                        help="the model's prepared folder: its validation split is the reference when model.json "
                             "has no site_shift section (an export made before the check existed)")
    parser.add_argument("--out", type=Path, required=True, help="folder for site-shift.md, site-shift.json, scores")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="batch sizes")
    parser.add_argument("--batches", type=int, default=BATCHES, help="random batches per pool and size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime threads")
    parser.add_argument("--no-progress", action="store_true")


def run(args) -> int:
    model = args.model
    card_path = model.parent / "model.json"
    try:
        card = json.loads(card_path.read_text())
        test_split = args.test_split or model.parent / "test_split.csv"
        score = lambda rows, name: cached_scores(model, rows, args.out / f"scores-{name}.json", args.threads,
                                                 not args.no_progress)
        val = None
        if not (card.get("site_shift") or {}).get("references", {}).get(model.name):
            if not args.prepared:
                raise ValueError(f"{card_path} has no site_shift reference for {model.name}: give --prepared")
            from training.data.dataset import load_prepared

            rows = [{k: r[k] for k in ("file", "label", "patient_id", "source")}
                    for r in load_prepared(args.prepared)[1] if r["split"] == "val"]
            val = score(rows, "val")
        card = reference_card(card, model.name, val)
        test = score(read_rows(test_split, args.data_root), "test")
        held_out = {folder.name: score(read_rows(folder / "manifest.csv"), folder.name) for folder in args.held_out}
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"site-shift-measure: {e}") from None
    result = measure(pools_of(test, held_out), card, model.name, args.sizes, args.batches, args.seed)
    result["reference_from"] = ("model.json" if val is None
                                else f"{args.prepared} (val split, computed as the export does)")
    result["command"] = "cxr site-shift-measure " + " ".join(
        [f"--model {model}", *(f"--held-out {h}" for h in args.held_out),
         *([f"--prepared {args.prepared}"] if args.prepared else []), f"--out {args.out}",
         f"--batches {args.batches}", f"--seed {args.seed}"])
    text = rates_table(result, args.sizes)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "site-shift.json", result)
    (args.out / "site-shift.md").write_text(text)
    print(text)
    print(f"wrote {args.out / 'site-shift.md'} and site-shift.json")
    return 0
