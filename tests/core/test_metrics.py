import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, f1_score, precision_score, recall_score, roc_auc_score

from core.metrics import (
    bootstrap_ci,
    classification_metrics,
    expected_calibration_error,
    reliability_bins,
    within_source_aucs,
)


def test_metrics_equal_scikit_learn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 200)
    probs = rng.dirichlet(np.ones(3), 200)
    probs[np.arange(200), y] += 0.3  # better than chance
    probs /= probs.sum(1, keepdims=True)
    m = classification_metrics(y, probs)
    pred = probs.argmax(1)
    assert m["confusion"] == confusion_matrix(y, pred).tolist()
    assert m["accuracy"] == pytest.approx((pred == y).mean())
    for k, name in enumerate(["COVID-19", "Normal", "Pneumonia"]):
        c = m["per_class"][name]
        assert c["precision"] == pytest.approx(precision_score(y, pred, labels=[k], average=None)[0])
        assert c["recall"] == pytest.approx(recall_score(y, pred, labels=[k], average=None)[0])
        assert c["f1"] == pytest.approx(f1_score(y, pred, labels=[k], average=None)[0])
        assert c["specificity"] == pytest.approx(recall_score(y != k, pred != k))
        assert c["auc"] == pytest.approx(roc_auc_score(y == k, probs[:, k]))
    assert m["macro_auc"] == pytest.approx(roc_auc_score(y, probs, multi_class="ovr", average="macro"))


def test_bootstrap_resamples_patients():
    rng = np.random.default_rng(1)
    y = np.repeat(rng.integers(0, 3, 50), 4)  # 50 patients with 4 identical images each
    probs = np.repeat(rng.dirichlet(np.ones(3), 50), 4, axis=0)
    by_patient = bootstrap_ci(y, probs, np.repeat(np.arange(50), 4), n_boot=300)
    by_image = bootstrap_ci(y, probs, np.arange(200), n_boot=300)
    width = lambda ci: ci["accuracy"][1] - ci["accuracy"][0]  # noqa: E731
    # Treating 200 correlated images as independent would understate the uncertainty by about half.
    assert width(by_patient) > 1.5 * width(by_image)
    lo, hi = by_patient["accuracy"]
    assert lo <= classification_metrics(y, probs)["accuracy"] <= hi


def test_within_source_auc_equals_scikit_learn():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 300)
    sources = np.where(rng.random(300) < 0.5, "a", "b")
    y[sources == "b"] = np.where(y[sources == "b"] == 0, 1, y[sources == "b"])  # source b has no COVID-19
    probs = rng.dirichlet(np.ones(3), 300)
    result = {(w["source"], w["pair"]): w for w in within_source_aucs(y, probs, np.arange(300), sources, n_boot=100)}
    assert set(result) == {("a", "COVID-19 vs Normal"), ("a", "COVID-19 vs Pneumonia"), ("a", "Normal vs Pneumonia"),
                           ("b", "Normal vs Pneumonia")}
    inside = (sources == "b") & (y != 0)
    score = probs[inside, 1] / (probs[inside, 1] + probs[inside, 2])
    w = result[("b", "Normal vs Pneumonia")]
    assert w["auc"] == pytest.approx(roc_auc_score(y[inside] == 1, score))
    assert w["ci95"][0] <= w["auc"] <= w["ci95"][1]


def test_expected_calibration_error_by_hand():
    # Top-1 confidences 0.95 (right), 0.9 (wrong), 0.55 (right), 0.52 (wrong), each alone in its 1/15-wide bin.
    probs = np.array([[0.95, 0.03, 0.02], [0.9, 0.05, 0.05], [0.55, 0.4, 0.05], [0.52, 0.4, 0.08]])
    labels = np.array([0, 1, 0, 2])
    expected = (abs(1 - 0.95) + abs(0 - 0.9) + abs(1 - 0.55) + abs(0 - 0.52)) / 4
    assert expected_calibration_error(probs, labels) == pytest.approx(expected)
    bins = reliability_bins(probs, labels)
    assert len(bins) == 15 and [b["count"] for b in bins if b["count"]] == [1, 1, 1, 1]
