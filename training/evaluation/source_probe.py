"""How much does a model's representation know about where an image came from?

A logistic regression on the frozen pooled features predicts the data source, cross-validated with folds by
patient. High accuracy means source cues (scanner, hospital, journal-figure look, burned-in text) reach the
classifier; since label and source are confounded in the shared data, the probe is also run within each label
that comes from several sources (e.g. Pneumonia from NIH vs from ieee8023), where only source cues can help.
Chance is the majority-source rate (accuracy) and 0.5 (balanced accuracy).
"""

from __future__ import annotations

from collections import Counter

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from core.classes import CLASSES

MIN_PER_SOURCE = 10


def _probe(features, sources, patients, folds: int = 5) -> dict | None:
    counts = Counter(sources.tolist())
    if len(counts) < 2 or min(counts.values()) < MIN_PER_SOURCE:
        return None
    folds = min(folds, len(set(patients.tolist())))
    predicted = np.empty(len(sources), dtype=object)
    for train, test in GroupKFold(n_splits=folds).split(features, sources, groups=patients):
        probe = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
        probe.fit(features[train], sources[train])
        predicted[test] = probe.predict(features[test])
    return {"n": int(len(sources)), "sources": dict(counts), "accuracy": float((predicted == sources).mean()),
            "balanced_accuracy": float(balanced_accuracy_score(sources, predicted.astype(str))),
            "chance_accuracy": max(counts.values()) / len(sources)}


def source_probe(features: np.ndarray, labels: np.ndarray, sources, patients) -> dict:
    features, labels = np.asarray(features, np.float64), np.asarray(labels)
    sources, patients = np.asarray(sources).astype(str), np.asarray(patients).astype(str)
    result = {"all": _probe(features, sources, patients), "within_label": {}}
    for k, name in enumerate(CLASSES):
        inside = labels == k
        probe = _probe(features[inside], sources[inside], patients[inside]) if inside.any() else None
        if probe:
            result["within_label"][name] = probe
    return result
