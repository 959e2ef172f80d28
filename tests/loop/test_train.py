import csv
import math
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO, tiny_config
from training.loop.train import train
from training.model.checkpoint import load_checkpoint


def test_loss_decreases(tiny_prepared, tmp_path):
    summary = train(tiny_config(tiny_prepared, tmp_path, epochs=6, augment=False), progress=False)
    with open(tmp_path / "log.csv", newline="") as f:
        losses = [float(r["train_loss"]) for r in csv.DictReader(f)]
    assert len(losses) == summary["epochs"] == 6
    assert losses[-1] < 0.7 * losses[0], losses
    best = load_checkpoint(tmp_path / "best.pt")
    assert best.weights_origin == "none" and best.classes == ("COVID-19", "Normal", "Pneumonia")
    assert best.calibration["temperature"] > 0 and best.ood["threshold"] > 0
    assert set(best.resume) >= {"optimizer", "scheduler", "train_state", "rng"}
    assert best.resume["train_state"]["epoch"] == best.resume["train_state"]["best_epoch"] == summary["best_epoch"]
    assert (tmp_path / "tb").is_dir() and any((tmp_path / "tb").iterdir())


def _cli_train(prepared, out, *extra, env=None):
    cmd = [sys.executable, "-m", "cxr", "train", "--data", str(prepared), "--out", str(out), "--arch", "resnet18",
           "--weights", "none", "--epochs", "3", "--batch-size", "12", "--lr", "1e-3", "--ood-dims", "16", *extra]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env={**os.environ, **(env or {})})


@pytest.mark.parametrize("checkpoint_every", [0, 1], ids=["killed-after-epoch-1", "killed-mid-epoch"])
def test_killed_and_resumed_equals_uninterrupted(tiny_prepared, tmp_path, checkpoint_every):
    reference = _cli_train(tiny_prepared, tmp_path / "ref")
    assert reference.returncode == 0, reference.stderr
    steps_per_epoch = math.ceil(36 / 12)  # 36 training phantoms (60 x 0.6)
    kill_at = steps_per_epoch + 2  # inside epoch 2: work after the last checkpoint is lost
    killed = _cli_train(tiny_prepared, tmp_path / "run", "--checkpoint-every", str(checkpoint_every),
                        env={"CXR_KILL_AT_STEP": str(kill_at)})
    assert killed.returncode == -9
    last = load_checkpoint(tmp_path / "run" / "last.pt")
    assert last.resume["train_state"]["step"] == (kill_at - 1 if checkpoint_every else steps_per_epoch)
    resumed = _cli_train(tiny_prepared, tmp_path / "run", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    a = load_checkpoint(tmp_path / "ref" / "last.pt").model
    b = load_checkpoint(tmp_path / "run" / "last.pt").model
    assert max((a[k].double() - b[k].double()).abs().max().item() for k in a) <= 1e-6
    with open(tmp_path / "run" / "log.csv", newline="") as f:
        assert [r["epoch"] for r in csv.DictReader(f)] == ["1", "2", "3"]


def test_resume_without_checkpoint_is_a_clear_error(tiny_prepared, tmp_path):
    result = _cli_train(tiny_prepared, tmp_path / "empty", "--resume")
    assert result.returncode != 0 and "last.pt does not exist" in result.stderr
