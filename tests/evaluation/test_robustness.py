import io

import numpy as np
import pytest
from PIL import Image

from tests.conftest import tiny_config
from training.data.dataset import load_split
from training.data.phantoms import phantom
from training.evaluation.robustness import changed, reencoding_sensitivity
from training.loop.train import train
from training.model.checkpoint import load_checkpoint


def test_changes_are_what_they_say():
    gray = phantom(np.random.default_rng(0), "Pneumonia", 128)[0].astype(np.float32)
    jpeg = changed(gray, "jpeg75")
    reference = io.BytesIO()
    Image.fromarray(gray.astype(np.uint8)).save(reference, "JPEG", quality=75)
    assert np.array_equal(jpeg, np.asarray(Image.open(reference), np.float32))  # decoded as a user's JPEG would be
    assert 0 < np.abs(jpeg - gray).mean() < 5
    assert changed(gray, "half").shape == (64, 64)
    with pytest.raises(ValueError, match="unknown change"):
        changed(gray, "webp")


def test_reencoding_sensitivity_of_a_tiny_model(tiny_prepared, tmp_path):
    train(tiny_config(tiny_prepared, tmp_path, epochs=1), progress=False)
    files = [r["file"] for r in load_split(tiny_prepared, "test").rows[:4]]
    result = reencoding_sensitivity(load_checkpoint(tmp_path / "best.pt"), files, ("jpeg95", "jpeg75"))
    assert set(result) == {"jpeg95", "jpeg75"}
    for value in result.values():
        assert value["n"] == 4 and 0 <= value["mean_abs_change"] <= value["p95_abs_change"] + 1e-12 <= 1
        assert 0 <= value["top1_changed"] <= 1
    assert result["jpeg75"]["mean_abs_change"] > 0  # a lossy change moves a probability at least a little
