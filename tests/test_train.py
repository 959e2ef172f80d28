import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import confusion_matrix, f1_score, precision_score, recall_score, roc_auc_score

from tests.conftest import REPO, tiny_config
from training.calibration import expected_calibration_error, fit_temperature, nll
from training.gradcam import cam_from_weights, gradcam
from training.metrics import bootstrap_ci, classification_metrics
from training.model import WeightsUnavailable, build_model, load_checkpoint
from training.train import train


def test_loss_decreases(tiny_prepared, tmp_path):
    summary = train(tiny_config(tiny_prepared, tmp_path, epochs=6, augment=False), progress=False)
    with open(tmp_path / "log.csv", newline="") as f:
        losses = [float(r["train_loss"]) for r in csv.DictReader(f)]
    assert len(losses) == summary["epochs"] == 6
    assert losses[-1] < 0.7 * losses[0], losses
    best = torch.load(tmp_path / "best.pt", weights_only=False)
    for key in ("model", "optimizer", "scheduler", "epoch", "step", "rng", "config", "classes", "weights_origin",
                "data_summary", "calibration", "ood"):
        assert key in best, key
    assert best["weights_origin"] == "none" and best["classes"] == ["COVID-19", "Normal", "Pneumonia"]
    assert (tmp_path / "tb").is_dir() and any((tmp_path / "tb").iterdir())


def _cli_train(prepared, out, *extra, env=None):
    cmd = [sys.executable, "-m", "training", "train", "--data", str(prepared), "--out", str(out), "--arch", "resnet18",
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
    last = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert last["step"] == (kill_at - 1 if checkpoint_every else steps_per_epoch)
    resumed = _cli_train(tiny_prepared, tmp_path / "run", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    a = torch.load(tmp_path / "ref" / "last.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "run" / "last.pt", weights_only=False)["model"]
    assert max((a[k].double() - b[k].double()).abs().max().item() for k in a) <= 1e-6
    with open(tmp_path / "run" / "log.csv", newline="") as f:
        assert [r["epoch"] for r in csv.DictReader(f)] == ["1", "2", "3"]


def test_resume_without_checkpoint_is_a_clear_error(tiny_prepared, tmp_path):
    result = _cli_train(tiny_prepared, tmp_path / "empty", "--resume")
    assert result.returncode != 0 and "last.pt does not exist" in result.stderr


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


def test_temperature_scaling_fixes_overconfidence():
    rng = np.random.default_rng(2)
    y = torch.tensor(rng.integers(0, 3, 500))
    informative = torch.randn(500, 3) + 1.5 * F.one_hot(y, 3)
    logits = informative * 6  # deliberately over-confident
    t = fit_temperature(logits, y)
    assert t > 2
    assert nll(logits, y, t) < 0.8 * nll(logits, y)
    before = expected_calibration_error(torch.softmax(logits, 1).numpy(), y.numpy())
    after = expected_calibration_error(torch.softmax(logits / t, 1).numpy(), y.numpy())
    assert after < before
    assert torch.equal((logits / t).argmax(1), logits.argmax(1))


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_autograd_gradcam_equals_closed_form(arch):
    torch.manual_seed(0)
    model, _ = build_model(arch, "none")
    model.eval()
    x = torch.randn(2, 3, 96, 128)
    reference = gradcam(model, x)
    with torch.no_grad():
        closed = cam_from_weights(model.features(x), model.fc.weight)
    assert reference.shape == closed.shape == (2, 3, 3, 4)
    assert reference.abs().max() > 0
    assert (reference - closed).abs().max().item() <= 1e-5


def test_imagenet_weights_missing_gives_instructions(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: (_ for _ in ()).throw(OSError("offline")))
    with pytest.raises(WeightsUnavailable) as e:
        build_model("resnet18", "imagenet")
    assert "resnet18-f37072fd.pth" in str(e.value) and str(tmp_path / "torch") in str(e.value)
    assert "--weights none" in str(e.value)
    model, origin = build_model("resnet18", "auto")  # falls back, loudly
    assert origin == "none"


def test_imagenet_weights_from_cache_or_file(tmp_path, monkeypatch):
    import torchvision

    reference = torchvision.models.resnet18()
    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save(reference.state_dict(), checkpoints / "resnet18-f37072fd.pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("must not download"))
    model, origin = build_model("resnet18", "imagenet")
    assert origin == "imagenet"
    assert torch.equal(model.features[0].weight, reference.conv1.weight)
    model, origin = build_model("resnet18", str(checkpoints / "resnet18-f37072fd.pth"))
    assert origin == "imagenet" and torch.equal(model.features[7][1].bn2.weight, reference.layer4[1].bn2.weight)
    with pytest.raises(WeightsUnavailable, match="does not fit"):
        build_model("resnet50", str(checkpoints / "resnet18-f37072fd.pth"))


def test_evaluate_writes_report(tiny_prepared, tmp_path):
    from training.evaluate import evaluate

    train(tiny_config(tiny_prepared, tmp_path / "run", epochs=1), progress=False)
    r = evaluate(tmp_path / "run" / "best.pt", tiny_prepared, tmp_path / "eval", n_boot=50, gradcam_samples=2,
                 progress=False)
    assert r["images"] == 12 and set(r["by_source"]) == {"phantom"}
    assert len(r["all"]["ci95"]["macro_auc"]) == 2
    for name in ("metrics.json", "report.md", "roc.png", "confusion.png", "reliability.png", "training_curves.png"):
        assert (tmp_path / "eval" / name).exists(), name
    assert len(list((tmp_path / "eval" / "gradcam").glob("*.png"))) == 2
    assert r["pointing_game"] is None or 0 <= r["pointing_game"]["point_rate"] <= r["pointing_game"]["cell_rate"] <= 1


def test_within_source_auc_equals_scikit_learn():
    from training.metrics import within_source_aucs

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


def test_source_probe_finds_source_cues_only_when_present():
    from training.source_probe import source_probe

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


def test_sample_weights_balance_classes_and_optionally_sources():
    from training.data import MAX_SOURCE_WEIGHT, sample_weights

    labels = torch.tensor([0] * 40 + [1] * 100 + [2] * 60)
    sources = ["a"] * 40 + ["b"] * 98 + ["a"] * 2 + ["b"] * 45 + ["a"] * 15
    plain = sample_weights(labels, sources)
    for k in range(3):  # every class carries the same total weight
        assert plain[labels == k].sum().item() == pytest.approx(200 / 3, rel=1e-5)
    balanced = sample_weights(labels, sources, balance_sources=True)
    for k in range(3):
        assert balanced[labels == k].sum().item() == pytest.approx(200 / 3, rel=1e-5)
    pneumonia = labels == 2
    src = np.array(sources)
    a, b = balanced[pneumonia & torch.tensor(src == "a")].sum(), balanced[pneumonia & torch.tensor(src == "b")].sum()
    assert a.item() == pytest.approx(b.item(), rel=1e-5)  # 15 vs 45 images, equal total weight
    normal = labels == 1  # 98 vs 2 images: the cap keeps 2 images from weighing as much as 98
    ratio = balanced[normal & torch.tensor(src == "a")][0] / balanced[normal & torch.tensor(src == "b")][0]
    assert ratio.item() == pytest.approx(MAX_SOURCE_WEIGHT / (100 / (2 * 98)), rel=1e-5)


def test_compare_runs_variants_under_one_protocol_and_resumes(tmp_path):
    from training.compare import main as compare_main
    from training.phantoms import write_phantoms

    manifest = write_phantoms(tmp_path / "ph", 45, size=96)
    args = ["--data", str(manifest), "--out", str(tmp_path / "cmp"), "--arch", "resnet18", "--weights", "none",
            "--epochs", "1", "--size", "64", "--variants", "baseline", "crop"]
    compare_main(args)
    table = (tmp_path / "cmp" / "resnet18-none-table.md").read_text()
    assert table.count("\n| baseline |") == 1 and table.count("\n| crop |") == 1
    crop = json.loads((tmp_path / "cmp" / "prepared-crop_borders" / "prepared.json").read_text())
    assert crop["crop_borders"] is True
    manifests = [(tmp_path / "cmp" / f"prepared-{t}" / "manifest.csv").read_text() for t in ("plain", "crop_borders")]
    assert manifests[0].count(",test,") == manifests[1].count(",test,") > 0  # the same split for every variant
    stamp = (tmp_path / "cmp" / "resnet18-none-baseline" / "eval" / "metrics.json").stat().st_mtime
    compare_main(args)  # already evaluated: not run again
    assert (tmp_path / "cmp" / "resnet18-none-baseline" / "eval" / "metrics.json").stat().st_mtime == stamp
