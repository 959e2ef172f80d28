"""`cxr site-calibration-measure`: site calibration fitted on k labelled films of a new site and the rest scored,
before and after, over many random draws (training/evaluation/site_loop.py; docs/site.md):

- ieee8023 held out of a `cxr loso`-style run (trained here, resumably, unless finished);
- the released model on the held-out hospitals pooled (--held-out), and on its own test split (nothing to correct).

  cxr site-calibration-measure --prepared work/loso/prepared --out work/site-calibration \
      --held-out ../shared/data/hannover --held-out ../shared/data/montgomery-shenzhen
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from core.classes import CLASSES
from core.jsonio import write_json
from runtime.paths import RELEASE_DIR
from training.evaluation.site_loop import (
    DRAWS,
    KS,
    NEW_SITE_VARIANTS,
    SiteFilms,
    calibration_draws,
    calibration_table,
    new_site_config,
    new_site_films,
    summarise,
    train_new_site,
)
from training.evaluation.site_shift_rates import cached_scores, read_rows


def add_arguments(parser) -> None:
    parser.add_argument("--prepared", type=Path,
                        help="a prepared folder holding ../shared/data/cxr (e.g. `cxr loso`'s OUT/prepared, 160 px); "
                             "default: OUT/prepared, prepared from --data")
    parser.add_argument("--data", action="append", default=[], metavar="SRC",
                        help="datasets to prepare when --prepared is not given (../shared/data/cxr at least)")
    parser.add_argument("--size", type=int, default=160, help="input side when preparing (as `cxr loso`)")
    parser.add_argument("--variants", nargs="*", default=list(NEW_SITE_VARIANTS), choices=list(NEW_SITE_VARIANTS),
                        help="`cxr loso` variants trained with all of ieee8023 out (baseline: NIH alone; hannover: "
                             "with Hannover's COVID-19); none: the released model alone")
    parser.add_argument("--epochs", type=int, default=8, help="the LOSO runs' budget (as `cxr loso`)")
    parser.add_argument("--seed", type=int, default=0, help="training seed (the draws use --draw-seed)")
    parser.add_argument("--arch", default="efficientnet_lite0")
    parser.add_argument("--weights", default="imagenet")
    parser.add_argument("--model", type=Path, default=RELEASE_DIR / "model.onnx",
                        help="the released model, scored on --held-out and on its test split")
    parser.add_argument("--held-out", type=Path, action="append", default=[], metavar="DIR",
                        help="held-out sources (folders with manifest.csv), pooled into one new site for --model")
    parser.add_argument("--data-root", type=Path, default=Path("../shared/data"),
                        help="what the test split's relative paths are relative to")
    parser.add_argument("--no-control", action="store_true", help="skip the released model's own test split")
    parser.add_argument("--ks", type=int, nargs="+", default=list(KS), help="labelled films per draw")
    parser.add_argument("--draws", type=int, default=DRAWS, help="random draws per k")
    parser.add_argument("--draw-seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime threads")
    parser.add_argument("--out", type=Path, required=True, help="folder for the run, site-calibration.md and .json")


def _released_site(model: Path, rows: list[dict], cache: Path, threads: int) -> SiteFilms:
    card = json.loads((model.parent / "model.json").read_text())
    films = cached_scores(model, rows, cache, threads)
    return SiteFilms(np.array([f["logits"] for f in films], np.float64),
                     np.array([list(card["classes"]).index(f["label"]) for f in films]),
                     np.array([f["patient_id"] for f in films]), np.array([f["withheld"] for f in films], bool),
                     np.array([f["unlike_training"] for f in films], bool), card)


def _counts(site: SiteFilms) -> dict:
    return {c: int((site.labels == k).sum()) for k, c in enumerate(site.card["classes"]) if (site.labels == k).any()}


def run(args) -> int:
    args.out.mkdir(parents=True, exist_ok=True)
    prepared = args.prepared
    try:
        if prepared is None:
            if not args.data:
                raise ValueError("give --prepared (a prepared folder) or --data (datasets to prepare)")
            from training.data.prepare import prepare

            prepared = args.out / "prepared"
            if not (prepared / "prepared.json").exists():
                prepare(args.data, prepared, cache_dir=args.out / "cache", seed=0, size=args.size)
        sites, described = {}, {}
        for variant in args.variants:
            config = new_site_config(prepared, args.out / f"ieee8023-out-{variant}", variant, args.epochs, args.seed,
                                     args.arch, args.weights)
            site, about = new_site_films(train_new_site(config), prepared)
            trained = ", ".join(f"{k} {v}" for k, v in about["trained_on"].items())
            title = f"ieee8023 held out (LOSO {variant}: trained on {trained})"
            sites[title], described[title] = site, {**about, "variant": variant, "site_films": _counts(site)}
        if args.held_out:
            rows = [r for folder in args.held_out for r in read_rows(folder / "manifest.csv")]
            title = f"{' + '.join(f.name for f in args.held_out)} (released model)"
            sites[title] = _released_site(args.model, rows, args.out / "scores-held-out.json", args.threads)
            described[title] = {"model": str(args.model), "site_films": _counts(sites[title]),
                                "site_withheld": int(sites[title].withheld.sum())}
        if not args.no_control:
            title = "test split of the released model (held-in: nothing to correct)"
            rows = read_rows(args.model.parent / "test_split.csv", args.data_root)
            sites[title] = _released_site(args.model, rows, args.out / "scores-test.json", args.threads)
            described[title] = {"model": str(args.model), "site_films": _counts(sites[title])}
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"site-calibration-measure: {e}") from None
    summaries = {title: summarise(calibration_draws(site, args.ks, args.draws, args.draw_seed))
                 for title, site in sites.items()}
    text = calibration_table(summaries)
    write_json(args.out / "site-calibration.json", {
        "sites": {t: {"about": described[t], "by_k": {str(k): v for k, v in s.items()}}
                  for t, s in summaries.items()},
        "classes": list(CLASSES), "ks": args.ks, "draws": args.draws, "draw_seed": args.draw_seed})
    (args.out / "site-calibration.md").write_text(text)
    print(text)
    for title, about in described.items():
        print(f"{title}: {json.dumps(about)}")
    print(f"wrote {args.out / 'site-calibration.md'} and site-calibration.json")
    return 0
