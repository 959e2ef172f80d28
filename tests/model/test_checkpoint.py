"""The typed checkpoint: loaded with weights_only=True, so a file cannot run code; format-1 files are refused with
the way to convert them; what a checkpoint builds (classifier, preprocessing, OOD scorer) is what it stored."""

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import tiny_config
from training.loop.train import train
from training.model.checkpoint import CheckpointError, load_checkpoint, upgrade_checkpoint
from training.model.classifier import WeightsUnavailable, build_model


class _RunsCode:
    """Unpickling this runs `touch <marker>`: what a hostile checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


@pytest.fixture(scope="module")
def tiny_run(tiny_prepared, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ckpt") / "run"
    train(tiny_config(tiny_prepared, out, epochs=1), progress=False)
    return out


def test_a_checkpoint_with_a_pickled_object_is_refused_and_runs_nothing(tiny_run, tmp_path):
    marker = tmp_path / "code-ran"
    state = torch.load(tiny_run / "best.pt", weights_only=True)
    state["config"]["note"] = _RunsCode(marker)
    torch.save(state, tmp_path / "hostile.pt")
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(tmp_path / "hostile.pt")
    assert "hostile.pt" in str(e.value) and "pickled Python objects" in str(e.value) and "posix.system" in str(e.value)
    assert "upgrade-checkpoint" not in str(e.value)  # not one of ours: no conversion offered
    with pytest.raises(WeightsUnavailable, match="pickled Python objects"):  # --weights PATH is guarded too
        build_model("resnet18", str(tmp_path / "hostile.pt"))
    with pytest.raises(CheckpointError):
        upgrade_checkpoint(tmp_path / "hostile.pt", tmp_path / "converted.pt")
    assert not marker.exists()


def test_what_a_checkpoint_builds(tiny_run):
    ckpt = load_checkpoint(tiny_run / "best.pt")
    assert ckpt.arch == "resnet18" and ckpt.preprocess.geometry.size == 64
    classifier = ckpt.classifier()
    assert not classifier.training
    assert all(torch.equal(v, ckpt.model[k]) for k, v in classifier.state_dict().items())
    x = torch.rand(2, 1, 80, 70) * 255
    assert ckpt.preprocessing()(x).shape == (2, 3, 64, 64)
    scores = ckpt.ood_scorer()(torch.randn(2, 512))
    assert scores.shape == (2,) and (scores > 0).all()
    assert ckpt.temperature == ckpt.calibration["temperature"] and ckpt.ood_threshold == ckpt.ood["threshold"]


def test_an_unfinished_checkpoint_says_so(tiny_run, tmp_path):
    ckpt = load_checkpoint(tiny_run / "best.pt")
    ckpt.calibration = ckpt.ood = None
    ckpt.save(tmp_path / "unfinished.pt")
    with pytest.raises(CheckpointError, match="no calibration and no ood statistics"):
        load_checkpoint(tmp_path / "unfinished.pt").ood_scorer()


def _format_1(ckpt, path: Path) -> None:
    """The layout this project wrote before the typed checkpoint: numpy RNG state pickled, resume state on top."""
    old = {"config": ckpt.config, "classes": list(ckpt.classes), "arch": ckpt.arch,
           "weights_origin": ckpt.weights_origin, "preprocess": ckpt.preprocess.as_dict(),
           "data_summary": ckpt.data_summary, "class_weights": ckpt.class_weights, "model": ckpt.model,
           "optimizer": ckpt.resume["optimizer"], "scheduler": ckpt.resume["scheduler"],
           "epoch": ckpt.resume["train_state"]["epoch"], "step": ckpt.resume["train_state"]["step"],
           "train_state": ckpt.resume["train_state"],
           "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()},
           "calibration": ckpt.calibration, "ood": ckpt.ood}
    torch.save(old, path)


def test_format_1_is_refused_with_the_way_out_and_converts(tiny_run, tmp_path):
    ckpt = load_checkpoint(tiny_run / "best.pt")
    _format_1(ckpt, tmp_path / "old.pt")
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(tmp_path / "old.pt")
    assert f"cxr upgrade-checkpoint {tmp_path / 'old.pt'}" in str(e.value)
    upgrade_checkpoint(tmp_path / "old.pt", tmp_path / "new.pt")
    new = load_checkpoint(tmp_path / "new.pt")
    assert all(torch.equal(new.model[k], v) for k, v in ckpt.model.items())
    assert new.calibration == ckpt.calibration and new.preprocess == ckpt.preprocess
    assert new.ood.keys() == ckpt.ood.keys()
    assert all(torch.equal(new.ood[k], v) if torch.is_tensor(v) else new.ood[k] == v for k, v in ckpt.ood.items())
    assert new.resume["rng"]["numpy"]["keys"].shape == (624,)
    with pytest.raises(CheckpointError, match="already in format 2"):
        upgrade_checkpoint(tmp_path / "new.pt")


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "text.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a checkpoint written by `cxr train`"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")
