"""The shortcut remedies of the training loop: leave-source-out training, within-source model selection and the
class-conditional source adversary (docs/shortcuts.md)."""

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from core.metrics import mean_within_source_auc
from tests.conftest import tiny_config
from training.data.dataset import load_prepared, load_split
from training.loop.adversary import SourceAdversary, ramp, reverse_gradient
from training.loop.train import selection_score, train
from training.model.checkpoint import load_checkpoint


def test_holdout_leaves_out_every_image_of_the_group_s_patients(tiny_sources_prepared):
    _, rows = load_prepared(tiny_sources_prepared)
    shared = {r["patient_id"] for r in rows if r["source"] == "ieee8023" and r["label"] == "COVID-19"}
    assert any(r["patient_id"] in shared and r["label"] == "Pneumonia" for r in rows)  # the two-label patient
    for split in ("train", "val", "test"):
        kept = load_split(tiny_sources_prepared, split, "ieee8023:COVID-19").rows
        assert not {r["patient_id"] for r in kept} & shared  # their Pneumonia image went too
        assert not any(r["source"] == "hannover" for r in load_split(tiny_sources_prepared, split, "hannover").rows)
    both = load_split(tiny_sources_prepared, "train", "hannover,ieee8023:Pneumonia").rows
    expected = {("ieee8023", "COVID-19"), ("nih", "Normal"), ("nih", "Pneumonia")}
    assert {(r["source"], r["label"]) for r in both} == expected
    with pytest.raises(ValueError, match="not one of"):
        load_split(tiny_sources_prepared, "train", "ieee8023:covid")
    with pytest.raises(ValueError, match="no image"):
        load_split(tiny_sources_prepared, "train", "rsna")


def test_mean_within_source_auc_is_the_mean_of_the_sources_pairwise_aucs():
    rng = np.random.default_rng(0)
    y = np.array([0] * 20 + [2] * 20 + [1] * 20 + [2] * 20)
    sources = np.array(["a"] * 40 + ["b"] * 40)
    probs = rng.dirichlet(np.ones(3), 80)
    a, b = slice(0, 40), slice(40, 80)
    auc_a = roc_auc_score(y[a] == 0, probs[a, 0] / (probs[a, 0] + probs[a, 2]))
    auc_b = roc_auc_score(y[b] == 1, probs[b, 1] / (probs[b, 1] + probs[b, 2]))
    assert mean_within_source_auc(y, probs, sources) == pytest.approx((auc_a + auc_b) / 2)
    assert np.isnan(mean_within_source_auc(y[:20], probs[:20], sources[:20]))  # one label per source
    scores = {"val_macro_auc": 0.8, "val_within_source_auc": float("nan")}
    assert selection_score(scores, "within_source") == 0.8 and selection_score(scores, "pooled") == 0.8
    assert selection_score({**scores, "val_within_source_auc": 0.6}, "within_source") == 0.6


def test_gradient_reversal_and_ramp():
    x = torch.ones(3, requires_grad=True)
    y = reverse_gradient(x, 0.5)
    assert torch.equal(y, x)
    (y * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert torch.equal(x.grad, torch.tensor([-0.5, -1.0, -1.5]))
    assert ramp(0, 1.0) == 0 and ramp(1, 0.3) == pytest.approx(0.3, rel=1e-4) and 0 < ramp(0.1, 1.0) < ramp(0.5, 1.0)


def test_the_adversary_has_a_head_per_class_with_several_sources_only():
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2])
    sources = ["ieee8023", "hannover", "ieee8023", "nih", "nih", "nih", "ieee8023", "nih"]
    adversary = SourceAdversary(4, labels, sources, 3)
    assert adversary.sources == {0: ["hannover", "ieee8023"], 2: ["ieee8023", "nih"]}
    assert adversary.targets.tolist() == [1, 0, 1, -1, -1, 1, 0, 1]
    pooled = torch.randn(8, 4, requires_grad=True)
    loss = adversary.loss(pooled, labels, torch.arange(8), 1.0)
    loss.backward()
    assert loss.item() > 0 and pooled.grad[3:5].abs().sum() == 0  # Normal (one source) takes no part
    head = adversary.heads["0"]
    manual = torch.nn.functional.cross_entropy(head(pooled[:3].detach()), torch.tensor([1, 0, 1]), reduction="sum")
    assert head.weight.grad is not None and manual.item() > 0


def test_training_with_the_adversary_and_within_source_selection(tiny_sources_prepared, tmp_path):
    summary = train(tiny_config(tiny_sources_prepared, tmp_path, epochs=2, adversary=0.5, select="within_source",
                                holdout="hannover"), progress=False)
    assert summary["selection"] == "within_source"
    best = load_checkpoint(tmp_path / "best.pt")
    assert "adversary" in best.resume and best.data_summary["held_out"] == "hannover"
    assert "hannover" not in best.data_summary["sources"]
    assert set(best.model) == set(best.classifier().state_dict())  # the exported classifier has no adversary
    resumed = train(tiny_config(tiny_sources_prepared, tmp_path, epochs=3, adversary=0.5, select="within_source",
                                holdout="hannover"), resume=True, progress=False)
    assert resumed["epochs"] == 2  # the run's own settings (2 epochs) win over today's flags
