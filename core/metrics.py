"""Classification metrics with patient-level bootstrap confidence intervals, overall and per data source."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

from .classes import CLASSES


def _safe_div(a, b):
    return float(a / b) if b else float("nan")


def one_vs_rest_auc(y: np.ndarray, probs: np.ndarray, k: int) -> float:
    positive = y == k
    if positive.all() or not positive.any():
        return float("nan")  # undefined when only one class is present
    return float(roc_auc_score(positive, probs[:, k]))


def macro_auc(y: np.ndarray, probs: np.ndarray) -> float:
    aucs = [one_vs_rest_auc(y, probs, k) for k in range(probs.shape[1])]
    aucs = [a for a in aucs if not np.isnan(a)]
    return float(np.mean(aucs)) if aucs else float("nan")


def classification_metrics(y: np.ndarray, probs: np.ndarray) -> dict:
    """Accuracy, confusion matrix (rows: true, columns: predicted) and per class precision (PPV), recall
    (sensitivity), specificity, F1 and one-vs-rest ROC AUC; macro AUC over the classes present."""
    y, probs = np.asarray(y), np.asarray(probs)
    k = probs.shape[1]
    predicted = probs.argmax(1)
    confusion = np.zeros((k, k), int)
    np.add.at(confusion, (y, predicted), 1)
    per_class = {}
    for c in range(k):
        tp = confusion[c, c]
        fp = confusion[:, c].sum() - tp
        fn = confusion[c].sum() - tp
        tn = confusion.sum() - tp - fp - fn
        precision, recall = _safe_div(tp, tp + fp), _safe_div(tp, tp + fn)
        per_class[CLASSES[c]] = {
            "precision": precision,
            "recall": recall,
            "specificity": _safe_div(tn, tn + fp),
            "f1": (_safe_div(2 * precision * recall, precision + recall) if tp
                   else (0.0 if tp + fp + fn else float("nan"))),
            "auc": one_vs_rest_auc(y, probs, c),
            "support": int(confusion[c].sum()),
        }
    return {"n": int(len(y)), "accuracy": _safe_div((predicted == y).sum(), len(y)), "macro_auc": macro_auc(y, probs),
            "per_class": per_class, "confusion": confusion.tolist()}


def _scalars(m: dict) -> dict:
    out = {"accuracy": m["accuracy"], "macro_auc": m["macro_auc"]}
    for c, values in m["per_class"].items():
        for name in ("precision", "recall", "specificity", "f1", "auc"):
            out[f"{c}/{name}"] = values[name]
    return out


def patient_resamples(patients, n_boot: int, seed: int = 0):
    """Yield `n_boot` bootstrap resamples as index arrays, drawing patients (not images) with replacement, so that
    several images of one patient count as one unit of evidence. The one resampling every CI here uses."""
    unique, index = np.unique(np.asarray(patients), return_inverse=True)
    members = [np.flatnonzero(index == i) for i in range(len(unique))]
    rng = np.random.default_rng(seed)
    for _ in range(n_boot):
        yield np.concatenate([members[i] for i in rng.integers(0, len(unique), len(unique))])


def percentile_interval(values, alpha: float = 0.05) -> list[float]:
    """The (1 - alpha) percentile interval of bootstrap values, ignoring NaN (resamples where a metric is undefined)."""
    values = np.asarray(values, float)
    values = values[~np.isnan(values)]
    if not len(values):
        return [float("nan"), float("nan")]
    return [float(np.percentile(values, 100 * alpha / 2)), float(np.percentile(values, 100 * (1 - alpha / 2)))]


def bootstrap_ci(y, probs, patients, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> dict:
    """95% percentile intervals for every scalar metric of `classification_metrics`, by patient resampling."""
    y, probs = np.asarray(y), np.asarray(probs)
    samples = {}
    for chosen in patient_resamples(patients, n_boot, seed):
        for name, value in _scalars(classification_metrics(y[chosen], probs[chosen])).items():
            samples.setdefault(name, []).append(value)
    return {name: percentile_interval(values, alpha) for name, values in samples.items()}


def evaluate_predictions(y, probs, patients, sources, n_boot: int = 1000, seed: int = 0) -> dict:
    """Metrics with CIs for all images and for each data source separately."""
    y, probs, patients, sources = map(np.asarray, (y, probs, patients, sources))
    result = {"all": {**classification_metrics(y, probs), "ci95": bootstrap_ci(y, probs, patients, n_boot, seed)},
              "by_source": {}}
    for source in sorted(set(sources.tolist())):
        inside = sources == source
        result["by_source"][source] = {**classification_metrics(y[inside], probs[inside]),
                                       "ci95": bootstrap_ci(y[inside], probs[inside], patients[inside], n_boot, seed)}
    return result


def auc_or_nan(positive: np.ndarray, score: np.ndarray) -> float:
    return float(roc_auc_score(positive, score)) if positive.any() and not positive.all() else float("nan")


def auc_with_ci(positive: np.ndarray, score: np.ndarray, patients: np.ndarray, n_boot: int = 1000,
                seed: int = 0) -> dict:
    """ROC AUC of `score` for `positive` against the rest, with a 95% bootstrap CI over patients."""
    positive, score, patients = np.asarray(positive, bool), np.asarray(score), np.asarray(patients)
    samples = [auc_or_nan(positive[c], score[c]) for c in patient_resamples(patients, n_boot, seed)]
    return {"auc": auc_or_nan(positive, score), "ci95": percentile_interval(samples),
            "n": {"positive": int(positive.sum()), "negative": int((~positive).sum())}}


def rate_with_ci(hits: np.ndarray, patients: np.ndarray, n_boot: int = 1000, seed: int = 0) -> dict:
    """The share of `hits` (e.g. a held-out class's sensitivity), with a 95% bootstrap CI over patients."""
    hits, patients = np.asarray(hits, float), np.asarray(patients)
    samples = [hits[c].mean() for c in patient_resamples(patients, n_boot, seed)]
    return {"value": float(hits.mean()) if len(hits) else float("nan"), "ci95": percentile_interval(samples)}


def _pair_score(probs: np.ndarray, a: int, b: int) -> np.ndarray:
    """Class a against class b: p_a / (p_a + p_b), whatever the third class gets."""
    return probs[:, a] / np.maximum(probs[:, a] + probs[:, b], 1e-12)


def pairwise_auc(y, probs, a: int, b: int, patients, n_boot: int = 1000, seed: int = 0) -> dict | None:
    """ROC AUC of class a against class b among the images labelled a or b, scoring p_a / (p_a + p_b), with a 95%
    bootstrap CI over patients. None when either class is absent."""
    y, probs, patients = np.asarray(y), np.asarray(probs), np.asarray(patients)
    inside = (y == a) | (y == b)
    y, patients = y[inside] == a, patients[inside]
    if y.all() or not y.any():
        return None
    result = auc_with_ci(y, _pair_score(probs[inside], a, b), patients, n_boot, seed)
    return {**result, "n": {CLASSES[a]: int(y.sum()), CLASSES[b]: int((~y).sum())}}


def _source_label_pairs(y: np.ndarray, sources: np.ndarray, num_classes: int):
    """(source, its images' mask, a, b) for every source holding labels a < b, at least 2 images of each."""
    for source in sorted(set(sources.tolist())):
        inside = sources == source
        present = [k for k in range(num_classes) if (y[inside] == k).sum() >= 2]
        for i, a in enumerate(present):
            for b in present[i + 1:]:
                yield source, inside, a, b


def within_source_aucs(y, probs, patients, sources, n_boot: int = 1000, seed: int = 0) -> list[dict]:
    """For every source holding two labels (at least 2 images each), the AUC between them inside that source only:
    the discrimination a model shows when the source cannot give the answer away."""
    y, sources, patients = np.asarray(y), np.asarray(sources), np.asarray(patients)
    out = []
    for source, inside, a, b in _source_label_pairs(y, sources, probs.shape[1]):
        result = pairwise_auc(y[inside], probs[inside], a, b, patients[inside], n_boot, seed)
        if result:
            out.append({"source": source, "pair": f"{CLASSES[a]} vs {CLASSES[b]}", **result})
    return out


def mean_within_source_auc(y, probs, sources) -> float:
    """The mean, over every source holding two labels (at least 2 images each), of the AUCs between its labels:
    a validation score that a model cannot raise by recognising sources (model selection, training/loop).
    NaN when no source holds two labels."""
    y, probs, sources = np.asarray(y), np.asarray(probs), np.asarray(sources)
    aucs = []
    for _, inside, a, b in _source_label_pairs(y, sources, probs.shape[1]):
        pair = inside & ((y == a) | (y == b))
        aucs.append(auc_or_nan(y[pair] == a, _pair_score(probs[pair], a, b)))
    return float(np.nanmean(aucs)) if aucs and not np.isnan(aucs).all() else float("nan")


def reliability_bins(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> list[dict]:
    """Equal-width bins of the top-1 confidence: per bin its range, count, mean confidence and accuracy (None when
    empty). The reliability diagram draws them; `expected_calibration_error` sums them."""
    probs, labels = np.asarray(probs), np.asarray(labels)
    confidence, correct = probs.max(1), probs.argmax(1) == labels
    edges = np.linspace(0, 1, bins + 1)
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (confidence > lo) & (confidence <= hi)
        out.append({"lo": float(lo), "hi": float(hi), "count": int(inside.sum()),
                    "confidence": float(confidence[inside].mean()) if inside.any() else None,
                    "accuracy": float(correct[inside].mean()) if inside.any() else None})
    return out


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """ECE of the top-1 confidence: sum over bins of |accuracy - confidence| x share of samples."""
    n = len(labels)
    return float(sum(b["count"] / n * abs(b["accuracy"] - b["confidence"])
                     for b in reliability_bins(probs, labels, bins) if b["count"]))
