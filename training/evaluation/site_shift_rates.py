"""How often the site-shift warning (runtime/site_shift.py) fires: its false-alarm rate on batches of the sources the
model was trained on, and its detection rate on batches of sources it never saw (`cxr site-shift-measure`;
docs/site.md).

Every film is scored once by the exported model through the one Predictor (onnxruntime), as `cxr predict` scores it;
then many random batches of n films (without replacement) are drawn from each pool of scores and judged by
`runtime.site_shift.check` against the validation split's reference (model.json `site_shift`, or, for a model
exported before the check existed, the reference computed the export's way from its prepared validation split:
`runtime.site_shift.reference`, the one function both use).

Pools:

- held-in: the model's test split (the sources it was trained on; patients it never saw). The rate at which a
  random batch of it is flagged is the **false-alarm rate**;
- held-in, one class: the test split's films of one class. Nothing about the site changed, only the case mix: the
  class test flags these by design (it cannot tell a COVID-19 ward from a new scanner without labels);
- held-out: each source never used in development (Hannover; Montgomery and Shenzhen, apart and together; all of
  them pooled). The rate at which a batch is flagged is the **detection rate**.

The 95 % intervals are Wilson intervals over the random batches: how precisely the rate is known *for these pools*.
Batches of one pool share films (a pool of 90 films gives many overlapping batches of 50), and the pools and the
reference are themselves samples: another test split or another hospital would give other rates.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from core.checksum import sha256_file
from core.classes import CLASSES
from core.markdown import table
from runtime import site_shift

SIZES = (20, 30, 50)
BATCHES = 2000
MAX_SHARE = 0.7  # a batch larger than this share of its pool repeats the same films: not drawn
OTHER_ALPHA = 0.01  # also reported: the rates at the stricter conventional level


def read_rows(path: Path, root: Path | None = None) -> list[dict]:
    """A manifest's rows (file, label, patient_id, source), `file` resolved against `root` (default: the CSV's
    folder) unless absolute."""
    path = Path(path)
    root = Path(root) if root else path.parent
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [{"file": str(Path(r["file"]) if Path(r["file"]).is_absolute() else root / r["file"]),
             "label": r["label"], "patient_id": r.get("patient_id") or r["file"], "source": r.get("source", "")}
            for r in rows]


def score_rows(predictor, rows: list[dict], progress: bool = True) -> tuple[list[dict], list[dict]]:
    """(each film scored once: its row with ood_score, logits, withheld, unlike_training; the films that could not
    be decoded, with the reason)."""
    from runtime.predictor import each_file

    scored, unreadable = [], []
    for row, (_, result, reason) in zip(rows, each_file(predictor, [r["file"] for r in rows], progress=progress,
                                                        desc="score")):
        if reason is not None:
            unreadable.append({**row, "reason": reason})
            continue
        scored.append({**row, "ood_score": result["ood_score"], "logits": result["logits"],
                       "withheld": result["class"] is None, "unlike_training": bool(result["unlike_training"])})
    return scored, unreadable


def cached_scores(model: Path, rows: list[dict], cache: Path, threads: int = 1, progress: bool = True) -> list[dict]:
    """score_rows through `model`, kept in `cache` (JSON) and read back while the model file and the rows are the
    same."""
    from runtime.predictor import Predictor

    model = Path(model)
    key = {"model_sha256": sha256_file(model), "files": [r["file"] for r in rows]}
    if Path(cache).is_file():
        stored = json.loads(Path(cache).read_text())
        if stored.get("key") == key:
            return stored["scored"]
    scored, unreadable = score_rows(Predictor(model, threads), rows, progress)
    Path(cache).parent.mkdir(parents=True, exist_ok=True)
    Path(cache).write_text(json.dumps({"key": key, "scored": scored, "unreadable": unreadable}))
    return scored


def top_classes(films: list[dict], classes=CLASSES) -> list[str]:
    return [classes[int(np.argmax(f["logits"]))] for f in films]


def reference_card(card: dict, model_file: str, val_films: list[dict] | None) -> dict:
    """`card` with its `site_shift` section: model.json's own when it has one for `model_file`, else the export's
    reference computed from the validation split's scored films (the same function the export calls)."""
    if (card.get("site_shift") or {}).get("references", {}).get(model_file):
        return card
    if not val_films:
        raise ValueError("model.json has no site_shift reference for this model file: give the prepared folder of "
                         "its validation split (--prepared) to compute it")
    ref = site_shift.reference([f["ood_score"] for f in val_films], [f["logits"] for f in val_films],
                               list(card["classes"]), model_file)
    return {**card, "site_shift": site_shift.card_section([ref])}


def wilson(hits: int, n: int, z: float = 1.959964) -> list[float]:
    """The Wilson score interval of a proportion (95 %)."""
    if n == 0:
        return [float("nan"), float("nan")]
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [max(0.0, centre - half), min(1.0, centre + half)]


def batch_rates(pool: list[dict], card: dict, model_file: str, size: int, batches: int, seed: int) -> dict | None:
    """Random batches of `size` films of `pool`, each judged: the share flagged (the check as it is), by each test
    alone at its Bonferroni share of alpha, and at alpha = OTHER_ALPHA ("flagged_at_other"); with Wilson intervals.
    None when the pool is too small for batches of that size."""
    if size > MAX_SHARE * len(pool):
        return None
    rng = np.random.default_rng(seed)
    ood = np.array([f["ood_score"] for f in pool], np.float64)
    top = np.array(top_classes(pool, card["classes"]), object)
    alpha = float(card["site_shift"]["alpha"])
    counts = {"flagged": 0, "ood_test": 0, "class_test": 0, "flagged_at_other": 0}
    p_values = []
    for _ in range(batches):
        chosen = rng.choice(len(pool), size, replace=False)
        verdict = site_shift.check(ood[chosen], list(top[chosen]), card, model_file)
        p = verdict["p_values"]
        counts["flagged"] += verdict["shifted"]
        counts["ood_test"] += 2 * p["ood_score"] < alpha
        counts["class_test"] += 2 * p["predicted_class"] < alpha
        counts["flagged_at_other"] += verdict["p_value"] < OTHER_ALPHA
        p_values.append(verdict["p_value"])
    return {"size": size, "batches": batches, "pool": len(pool),
            **{k: {"rate": v / batches, "ci95": wilson(int(v), batches)} for k, v in counts.items()},
            "median_p": float(np.median(p_values))}


def measure(pools: dict[str, dict], card: dict, model_file: str, sizes=SIZES, batches: int = BATCHES,
            seed: int = 0) -> dict:
    """`pools`: {name: {"kind": "held-in" | "held-in, one class" | "held-out", "films": [...]}}: every pool's
    rates at every size, and each pool's predicted-class mix and median OOD score beside the reference's."""
    ref = card["site_shift"]["references"][model_file]
    out = {"model_file": model_file, "alpha": card["site_shift"]["alpha"], "min_films": card["site_shift"]["min_films"],
           "reference": {"films": ref["films"], "class_counts": ref["class_counts"],
                         "median_ood": float(np.median(ref["ood_scores"]))},
           "pools": {}}
    for i, (name, pool) in enumerate(pools.items()):
        films = pool["films"]
        top = top_classes(films, card["classes"])
        out["pools"][name] = {
            "kind": pool["kind"], "films": len(films),
            "class_share": {c: top.count(c) / max(len(top), 1) for c in card["classes"]},
            "median_ood": float(np.median([f["ood_score"] for f in films])) if films else None,
            "rates": {str(n): batch_rates(films, card, model_file, n, batches, seed + 1000 * i + n) for n in sizes}}
    return out


def _rate(entry: dict | None, key: str) -> str:
    if entry is None:
        return "n/a"
    r = entry[key]
    return f"{100 * r['rate']:.1f}% [{100 * r['ci95'][0]:.1f}, {100 * r['ci95'][1]:.1f}]"


def rates_table(result: dict, sizes=SIZES) -> str:
    """Markdown: one row per pool and batch size: the share of batches flagged (95 % Wilson CI), by each test alone,
    at OTHER_ALPHA, and the pool's class mix and median OOD score against the reference's."""
    classes = list(result["reference"]["class_counts"])
    ref = result["reference"]
    ref_mix = " / ".join(f"{v / max(ref['films'], 1):.2f}" for v in ref["class_counts"].values())
    head = ["pool", "kind", "films", "predicted mix (" + " / ".join(classes) + ")", "median OOD score", "n",
            f"flagged (alpha {result['alpha']:g})", "OOD test alone", "class test alone", f"flagged at alpha "
            f"{OTHER_ALPHA:g}"]
    rows = [["reference: validation split", "", str(ref["films"]), ref_mix, f"{ref['median_ood']:.0f}", "", "", "", "",
             ""]]
    for name, pool in result["pools"].items():
        mix = " / ".join(f"{pool['class_share'][c]:.2f}" for c in classes)
        for n in sizes:
            entry = pool["rates"][str(n)]
            rows.append([name, pool["kind"], str(pool["films"]), mix, f"{pool['median_ood']:.0f}", str(n),
                         _rate(entry, "flagged"), _rate(entry, "ood_test"), _rate(entry, "class_test"),
                         _rate(entry, "flagged_at_other")])
    return table(head, rows) + "\n"


def pools_of(test_rows: list[dict], held_out: dict[str, list[dict]]) -> dict[str, dict]:
    """The pools to draw from: the test split, each of its classes, each held-out source (and its sources apart
    where it holds several), and all held-out films together."""
    pools = {"test split (held-in)": {"kind": "held-in", "films": test_rows}}
    for c in CLASSES:
        films = [f for f in test_rows if f["label"] == c]
        if films:
            pools[f"test split, {c} only"] = {"kind": "held-in, one class", "films": films}
    everything = []
    for name, films in held_out.items():
        pools[name] = {"kind": "held-out", "films": films}
        sources = sorted({f["source"] for f in films})
        if len(sources) > 1:
            for s in sources:
                pools[f"{name}: {s}"] = {"kind": "held-out", "films": [f for f in films if f["source"] == s]}
        everything += films
    if len(held_out) > 1:
        pools["all held-out sources"] = {"kind": "held-out", "films": everything}
    return pools
