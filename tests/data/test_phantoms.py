from pathlib import Path

import numpy as np

from training.data.phantoms import phantom, write_phantoms
from training.data.records import read_manifest_rows


def test_seeded_and_labelled_masks():
    a, ma = phantom(np.random.default_rng(5), "Pneumonia", 128)
    b, mb = phantom(np.random.default_rng(5), "Pneumonia", 128)
    assert a.dtype == np.uint8 and a.shape == (128, 128)
    assert np.array_equal(a, b) and np.array_equal(ma, mb)
    assert not phantom(np.random.default_rng(0), "Normal", 128)[1].any()
    for label in ("Pneumonia", "COVID-19"):
        image, mask = phantom(np.random.default_rng(1), label, 128)
        assert 20 < mask.sum() < 0.2 * mask.size
        # The lesion is an opacity: brighter than the rest of the lung field around it.
        assert image[mask].mean() > np.median(image)


def test_covid_is_bilateral_and_pneumonia_focal():
    for seed in range(10):
        _, mask = phantom(np.random.default_rng(seed), "COVID-19", 128)
        assert mask[:, :64].any() and mask[:, 64:].any()
        _, mask = phantom(np.random.default_rng(seed), "Pneumonia", 128)
        assert mask[:, :64].any() != mask[:, 64:].any()


def test_write_phantoms_manifest(tmp_path):
    manifest = write_phantoms(tmp_path, 6, size=64, seed=0)
    rows = read_manifest_rows(manifest)
    assert [r["label"] for r in rows] == ["COVID-19", "Normal", "Pneumonia"] * 2
    assert all(Path(r["mask"]).exists() for r in rows)
    assert "masks/phantom_00000.png" in manifest.read_text()  # stored relative: the folder can move
