"""How well the chest gate does, per kind of image: the share refused (or, for chest films, withheld) with a 95%
bootstrap CI over patients, and how often a refused image gets the right reason."""

from __future__ import annotations

import numpy as np

from core.markdown import table
from core.metrics import rate_with_ci
from core.progress import bar

from ..graph.gate import REASONS

# What the gate is known not to have seen: said in every report, claimed for nowhere.
TEST_FOLD = 0  # the shipped gate is this fold's cross-validation head: these patients are its test set
NO_EXAMPLES = ("abdominal, limb and other non-chest radiographs (no real examples here)",
               "screenshots of a viewer showing a chest film (none made: a film inside a viewer is still a film)")


def rates(items, gate: np.ndarray, reason: np.ndarray, threshold: float, by=lambda item: item.kind) -> list[dict]:
    """One row per group (`by`: the kind, or a positive's source): n, patients, the share refused with its CI,
    and, for images that should be refused, the share of refused ones given the right reason."""
    groups: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        groups.setdefault(by(item), []).append(i)
    rows = []
    for name, index in sorted(groups.items(), key=lambda kv: (items[kv[1][0]].reason != "frontal", kv[0])):
        index = np.array(index)
        expected = items[index[0]].reason
        refused = gate[index] < threshold
        patients = np.array([items[i].patient for i in index])
        row = {"kind": name, "expected": expected, "n": int(len(index)), "patients": int(len(set(patients))),
               "refused": rate_with_ci(refused, patients)}
        if expected != "frontal" and refused.any():
            right = reason[index][refused] == REASONS.index(expected)
            row["right_reason"] = float(right.mean())
        rows.append(row)
    return rows


def _pct(rate: dict) -> str:
    lo, hi = rate["ci95"]
    return f"{100 * rate['value']:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]"


def exact_interval(k: int, n: int) -> list[float]:
    """The Clopper-Pearson 95% interval of k events in n images: where every image is refused (or none is
    withheld) the patient bootstrap can only say [100, 100], this says how far from 100 the truth may still be."""
    from scipy.stats import beta

    lo = float(beta.ppf(0.025, k, n - k + 1)) if k > 0 else 0.0
    hi = float(beta.ppf(0.975, k + 1, n - k)) if k < n else 1.0
    return [lo, hi]


def rates_table(rows: list[dict]) -> str:
    """Markdown: chest films as 'withheld', everything else as 'refused'."""
    body = []
    for row in rows:
        film = row["expected"] == "frontal"
        reason = "" if film or "right_reason" not in row else f"{100 * row['right_reason']:.0f}%"
        k = round(row["refused"]["value"] * row["n"])
        lo, hi = exact_interval(k, row["n"])
        body.append([row["kind"], "chest film" if film else row["expected"].replace("_", " "), row["n"],
                     row["patients"], ("withheld " if film else "refused ") + f"{k}: " + _pct(row["refused"]),
                     f"[{100 * lo:.1f}, {100 * hi:.1f}]", reason])
    return table(["kind", "should be", "images", "patients", "share (95% CI by patient)", "exact 95% CI by image",
                  "right reason"], body)


def _features(segmenter, items, augment_seed=None, desc="clean"):
    from ..loop.gate import encode

    return encode(segmenter, [item.image for item in items], augment_seed=augment_seed, desc=f"gate features: {desc}")


def train_gate(chest, not_frontal_dir, lungs, out, *, augmented: int = 3, drawn: int = 400, epochs: int = 25,
               threshold: float = 0.5, folds: int = 5, hold_out_sources: bool = True, seed: int = 0) -> dict:
    """Train the gate by patient cross-validation and with each chest collection left out; write gate.pt,
    metrics.json and report.md into `out`.

    The gate shipped is fold 0's: trained on the other folds' patients, so fold 0 is a test set of patients it never
    saw (their films, the films transformed, their lateral views and CT slices), which the release measures again
    through the exported model (`test_fold` in gate.pt's info). The never-trained negatives are scored by it too."""
    import time
    from pathlib import Path

    import torch

    from core.checksum import sha256_file
    from core.jsonio import write_json

    from ..data import gate_sets as sets
    from ..graph.gate import save_gate
    from ..graph.lungs import load_segmenter
    from ..loop.gate import fit_head, score

    started = time.time()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    segmenter, _, _ = load_segmenter(lungs)
    skipped: list = []
    films = sets.chest_films(chest, skipped)
    if not films:
        raise ValueError("no readable chest films in " + ", ".join(map(str, chest)))
    others = sets.not_frontal(not_frontal_dir, skipped) + sets.training_not_radiographs(drawn, seed)
    pool = films + sets.transformed(films) + others  # clean: what is scored out of fold
    never = sets.test_not_radiographs(max(drawn // 4, 8))
    print(f"gate: {len(films)} chest films, {len(pool) - len(films) - len(others)} transformed, "
          f"{len(others)} other negatives; {len(never)} never-trained negatives; {len(skipped)} unreadable")

    # Clean features of everything, and `augmented` augmented copies (one random transformed kind per film each).
    blocks = [(pool, _features(segmenter, pool))]
    kinds = list(sets.TRANSFORMS)
    for v in range(1, augmented + 1):
        rng = np.random.default_rng(seed + v)
        copy = films + [sets.transform(f, kinds[int(rng.integers(len(kinds)))]) for f in films] + others
        blocks.append((copy, _features(segmenter, copy, augment_seed=seed + v, desc=f"augmented {v}/{augmented}")))
    items = [item for block, _ in blocks for item in block]
    bottom = torch.cat([features[0] for _, features in blocks])
    lung = torch.cat([features[1] for _, features in blocks])
    labels = np.array([item.label for item in items])
    fold = np.array([sets.patient_fold(item.patient, folds) for item in items])
    source = np.array([item.source for item in items])
    clean = np.arange(len(pool))  # the first block

    def fit(mask):
        return fit_head(bottom[mask], lung[mask], labels[mask], epochs=epochs, seed=seed)

    oof_gate, oof_reason = np.zeros(len(pool)), np.zeros(len(pool), int)
    for f in range(folds):
        head = fit(fold != f)
        held = clean[fold[clean] == f]
        oof_gate[held], oof_reason[held] = score(head, bottom[held], lung[held])
        if f == TEST_FOLD:
            shipped = head
        print(f"gate: fold {f + 1}/{folds} done ({(time.time() - started) / 60:.1f} min)")
    test = clean[fold[clean] == TEST_FOLD]
    metrics = {"threshold": threshold, "reasons": list(sets.REASONS), "folds": folds, "epochs": epochs,
               "augmented_copies": augmented, "lungs_sha256": sha256_file(Path(lungs)),
               "skipped": [{"file": f, "reason": r} for f, r in skipped], "no_examples": list(NO_EXAMPLES),
               "cross_validated": rates(pool, oof_gate, oof_reason, threshold),
               "test_fold": rates([pool[i] for i in test], oof_gate[test], oof_reason[test], threshold)}

    if hold_out_sources:
        rows = []
        for s in sorted({item.kind for item in films}):
            head = fit(source != s)
            held = clean[source[clean] == s]
            g, r = score(head, bottom[held], lung[held])
            rows += rates([pool[i] for i in held], g, r, threshold, by=lambda item, s=s: f"{s}: {item.kind}")
            print(f"gate: {s} left out done ({(time.time() - started) / 60:.1f} min)")
        metrics["held_out_sources"] = rows

    never_bottom, never_lung = _features(segmenter, never, desc="never-trained negatives")
    g, r = score(shipped, never_bottom, never_lung)
    metrics["never_trained"] = rates(never, g, r, threshold)
    metrics["minutes"] = (time.time() - started) / 60
    info = {k: metrics[k] for k in ("folds", "epochs", "augmented_copies")}
    info.update(chest=[str(c) for c in chest], test_fold=TEST_FOLD, not_frontal=str(not_frontal_dir))
    save_gate(shipped, out / "gate.pt", threshold=threshold, segmenter_sha256=metrics["lungs_sha256"], info=info)
    write_json(out / "metrics.json", metrics)
    (out / "report.md").write_text(report(metrics))
    return metrics


def report(metrics: dict) -> str:
    parts = ["# Chest gate: what it refuses and what it lets through", "",
             f"Threshold {metrics['threshold']}: an image whose gate probability is below it gets no diagnosis.", "",
             f"## Cross-validated by patient ({metrics['folds']} folds: each image scored by a gate that never saw "
             "its patient)", "", rates_table(metrics["cross_validated"]), ""]
    if "held_out_sources" in metrics:
        parts += ["## Each chest collection left out (its films and their transforms scored by a gate trained "
                  "without that collection)", "", rates_table(metrics["held_out_sources"]), ""]
    parts += [f"## The shipped gate's test fold (fold {TEST_FOLD}: patients it never saw)", "",
              rates_table(metrics["test_fold"]), "",
              "## Never trained on (scored by the shipped gate)", "", rates_table(metrics["never_trained"]), "",
              "## No examples here", "", *[f"- {line}" for line in metrics["no_examples"]], ""]
    if metrics["skipped"]:
        parts += ["## Unreadable files (skipped)", "", *[f"- {s['file']}: {s['reason']}" for s in metrics["skipped"]]]
    return "\n".join(parts) + "\n"


def evaluate_export(model, chest, not_frontal_dir, out, *, drawn: int = 100, test_fold: int = TEST_FOLD,
                    folds: int = 5) -> dict:
    """The gate as users meet it: each image of the shipped gate's test fold (patients it never saw) and each
    never-trained negative, encoded as a PNG file and run through runtime.predictor (what `cxr predict`, the API and,
    by the parity tests, the app give). Writes gate-evaluation.json and .md into `out`."""
    import io
    import time
    from pathlib import Path

    from PIL import Image

    from core.jsonio import write_json
    from runtime.predictor import Predictor

    from ..data import gate_sets as sets

    started = time.time()
    predictor = Predictor(Path(model))
    spec = predictor.card.get("gate")
    if not spec:
        raise ValueError(f"{model}: its model.json has no `gate`: export it with `cxr export --gate`")
    skipped: list = []
    films = [f for f in sets.chest_films(chest, skipped) if sets.patient_fold(f.patient, folds) == test_fold]
    others = [i for i in sets.not_frontal(not_frontal_dir, skipped) if sets.patient_fold(i.patient, folds) == test_fold]
    items = films + sets.transformed(films) + others + sets.test_not_radiographs(drawn)
    gate, reason, withheld = np.zeros(len(items)), np.zeros(len(items), int), np.zeros(len(items), bool)
    for i, item in enumerate(bar(items, desc="gate through the predictor", unit="image")):
        buffer = io.BytesIO()
        Image.fromarray(item.image).save(buffer, format="PNG")
        result, _, _ = predictor.predict_file(buffer.getvalue(), name=f"{item.kind}.png")
        gate[i], withheld[i] = result["gate"], result["class"] is None
        reason[i] = spec["reasons"].index(result["gate_reason"]) if result["gate_reason"] else 0
    assert (withheld == (gate < spec["threshold"])).all(), "a result was withheld for another reason than the gate"
    rows = rates(items, gate, reason, spec["threshold"])
    value = {"model": str(model), "version": predictor.card["version"], "test_fold": test_fold,
             "threshold": spec["threshold"], "rows": rows, "no_examples": list(NO_EXAMPLES),
             "skipped": [{"file": f, "reason": r} for f, r in skipped], "minutes": (time.time() - started) / 60}
    out = Path(out)
    write_json(out / "gate-evaluation.json", value)
    (out / "gate-evaluation.md").write_text(
        f"# The chest gate through the predictor ({predictor.card['name']} {predictor.card['version']})\n\n"
        f"Fold {test_fold}'s patients (never seen by the gate) and never-trained negatives, each as a PNG file "
        f"through `runtime.predictor` (what `cxr predict`, the API and the app give). Threshold {spec['threshold']}."
        f"\n\n{rates_table(rows)}\n\nNo examples here: " + "; ".join(NO_EXAMPLES) + ".\n")
    return value
