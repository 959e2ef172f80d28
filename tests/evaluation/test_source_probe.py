import numpy as np

from training.evaluation.source_probe import source_probe


def test_source_probe_finds_source_cues_only_when_present():
    rng = np.random.default_rng(4)
    n = 240
    sources = np.where(np.arange(n) % 2 == 0, "nih", "ieee8023")
    labels = rng.integers(0, 3, n)
    patients = np.arange(n) // 2  # two images per patient: folds must keep them together
    clean = rng.normal(size=(n, 16))
    leaky = clean.copy()
    leaky[:, 0] += np.where(sources == "nih", 3.0, -3.0)
    assert source_probe(leaky, labels, sources, patients)["all"]["balanced_accuracy"] > 0.95
    assert source_probe(clean, labels, sources, patients)["all"]["balanced_accuracy"] < 0.65
    assert set(source_probe(leaky, labels, sources, patients)["within_label"]) == {"COVID-19", "Normal", "Pneumonia"}
