"""`cxr compare`: train and evaluate variants under one protocol, and tabulate them.

Every variant uses the same data, split (by patient, same seed), training seed and epoch budget; only the remedy
changes. The table has what the shortcut study needs (docs/shortcuts.md): test macro AUC with its CI, per-class
sensitivity and PPV, the within-source AUCs, and the source-probe accuracy. Variants already evaluated are not
run again, so an interrupted comparison continues where it stopped.

  cxr compare --data ../shared/data/cxr --out work/shortcuts --arch efficientnet_lite0 \\
      --weights imagenet --epochs 20 --variants baseline harmonize balance crop notext
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from core.classes import CLASSES
from core.jsonio import write_json
from core.markdown import table

from ..data.prepare import prepare
from ..loop.config import TrainConfig
from ..loop.train import train
from .evaluate import evaluate
from .report import fmt

# name -> (prepare options, train options)
PLAIN = {"harmonize": False, "balance_sources": False}
VARIANTS = {
    "baseline": ({}, PLAIN),
    "harmonize": ({}, {**PLAIN, "harmonize": True}),
    "balance": ({}, {**PLAIN, "balance_sources": True}),
    "crop": ({"crop_borders": True}, PLAIN),
    "notext": ({"suppress_text": True}, PLAIN),
    "all": ({"crop_borders": True, "suppress_text": True}, {"harmonize": True, "balance_sources": True}),
}


def run_variant(name: str, data: list[str], out: Path, arch: str, weights: str, epochs: int, seed: int,
                size: int) -> dict:
    prepare_options, train_options = VARIANTS[name]
    tag = "-".join(k for k, v in sorted(prepare_options.items()) if v) or "plain"
    prepared = out / f"prepared-{tag}"
    run = out / f"{arch}-{weights}-{name}"
    metrics_path = run / "eval" / "metrics.json"
    if metrics_path.exists():
        return json.loads(metrics_path.read_text())
    if not (prepared / "prepared.json").exists():
        prepare(data, prepared, cache_dir=out / "cache", size=size, seed=seed, **prepare_options)
    started = time.perf_counter()
    config = TrainConfig(data=str(prepared), out=str(run), arch=arch, weights=weights, epochs=epochs, seed=seed,
                         **train_options)
    summary = train(config, resume=(run / "last.pt").exists())
    metrics = evaluate(run / "best.pt", prepared, run / "eval", gradcam_samples=4, progress=False)
    metrics["training"] = {k: summary[k] for k in ("epochs", "best_epoch", "train_seconds", "images_per_s")}
    metrics["training"]["wall_seconds"] = time.perf_counter() - started
    write_json(metrics_path, metrics)
    return metrics


def comparison_table(rows: dict[str, dict]) -> str:
    head = ["variant", "macro AUC [95% CI]"]
    head += [f"{c} sens / PPV" for c in CLASSES]
    head += ["ieee8023 COVID-19 vs Pneumonia AUC", "NIH Normal vs Pneumonia AUC", "source probe acc (bal.)",
             "probe within Pneumonia acc (bal.)", "top-1 changed by +-2 grey levels", "ECE after", "epochs"]
    lines = []
    for name, m in rows.items():
        a = m["all"]
        cells = [name, fmt(a["macro_auc"], a["ci95"]["macro_auc"], ci_digits=2)]
        cells += [f"{a['per_class'][c]['recall']:.2f} / {(a['per_class'][c]['precision'] or 0):.2f}" for c in CLASSES]
        within = {(w["source"], w["pair"]): w for w in m.get("within_source", [])}
        for key in (("ieee8023", "COVID-19 vs Pneumonia"), ("nih", "Normal vs Pneumonia")):
            w = within.get(key)
            cells.append(fmt(w["auc"], w["ci95"], ci_digits=2) if w else "n/a")
        probe = m.get("source_probe") or {}
        for p in (probe.get("all"), (probe.get("within_label") or {}).get("Pneumonia")):
            cells.append(f"{p['accuracy']:.3f} ({p['balanced_accuracy']:.3f})" if p else "n/a")
        noise = m.get("noise_sensitivity")
        cells.append(f"{100 * noise['changed_top1']:.1f}%" if noise else "n/a")
        cells.append(f"{m['calibration']['ece_after']:.3f}")
        cells.append(str(m.get("training", {}).get("epochs", "")))
        lines.append(cells)
    return table(head, lines) + "\n"
