"""The chest gate in the exported graph: its outputs, its file, its pairing with the segmenter, its verification,
and `cxr gate-train` end to end on a tiny set."""

import json

import numpy as np
import pytest
import torch

from tests.conftest import CHEST_GATE, LUNG_SEGMENTER
from training.graph.gate import REASONS, GateHead, gate_outputs, load_gate


def test_gate_outputs_are_the_frontal_probability_and_the_likeliest_other_reason():
    logits = torch.tensor([[0.0, 0, 0, 0, 0, 0], [0.0, 5, 1, 0, 0, 9], [3.0, 0, 2, 0, 0, 0]])
    gate, reason = gate_outputs(logits)
    assert gate[0].item() == pytest.approx(1 / 6)
    assert gate[1].item() == pytest.approx(1 / (1 + np.exp(5) + np.exp(1) + 2 + np.exp(9)))
    assert reason.tolist() == [1.0, 5.0, 2.0]  # ties: the first; never 0 (0 is "frontal")
    assert reason.dtype == torch.float32


def test_the_head_reads_the_segmenter_bottom_and_the_lungs_on_its_grid():
    head = GateHead().eval()
    assert head(torch.zeros(2, 112, 10, 10), torch.zeros(2, 1, 10, 10)).shape == (2, len(REASONS))
    assert sum(p.numel() for p in head.parameters()) < 60_000  # a small head: the encoder is the segmenter's


def test_load_gate_refuses_other_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="gate-train"):
        load_gate(tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="not a chest gate"):
        load_gate(LUNG_SEGMENTER)


def test_export_refuses_a_gate_trained_on_another_segmenter(tiny_export, tmp_path):
    from export.wrapper import from_checkpoint
    from training.graph.lungs import LungRules, LungSegmenter, save_segmenter

    other = tmp_path / "other.pt"
    save_segmenter(LungSegmenter(), LungRules(), other)
    checkpoint = tiny_export.parent / "run" / "best.pt"
    with pytest.raises(ValueError, match="another lung segmenter"):
        from_checkpoint(checkpoint, lungs=other, gate=CHEST_GATE)
    with pytest.raises(ValueError, match="--lungs"):
        from_checkpoint(checkpoint, gate=CHEST_GATE)


def test_export_with_a_gate_names_and_verifies_its_outputs(tiny_export_gate):
    from runtime.predictor import Predictor

    card = json.loads((tiny_export_gate / "model.json").read_text())
    assert card["output_names"][-2:] == ["gate", "gate_reason"]
    assert card["gate"]["reasons"] == list(REASONS)
    assert set(card["gate"]["messages"]) == set(REASONS) - {"frontal"}
    assert 0 < card["gate"]["threshold"] < 1
    rows = [c for c in card["verification"] if "gate" in c["name"]]
    assert len(rows) == 2 and all(c["passed"] for c in rows), rows
    refused = card["gate"]["refused_in_export"]
    assert refused["photographs"]["n"] > 0 and "test_xrays" in refused
    predictor = Predictor(tiny_export_gate / "model.onnx")
    result = predictor.predict(np.full((300, 240), 128, np.float32))  # a flat grey field: not a radiograph
    assert 0 <= result["gate"] <= 1
    assert result["class"] is None and result["gate_reason"] in REASONS[1:]
    assert result["class_withheld"] == card["gate"]["messages"][result["gate_reason"]]
    assert result["band"] is None and result["unlike_training"] is False


def test_gate_train_end_to_end_on_a_tiny_set(tiny_prepared, tmp_path):
    """Phantoms as chest films, four stand-ins for lateral views: the command trains, cross-validates, leaves each
    collection out, and writes a gate that export can read."""
    from PIL import Image

    from training.evaluation.gate import train_gate

    phantoms = tiny_prepared.parent / "phantoms"
    others = tmp_path / "not-frontal"
    others.mkdir()
    rows = ["file,kind,patient_id"]
    for i in range(4):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (80, 60), dtype=np.uint8)).save(others / f"{i}.png")
        rows.append(f"{i}.png,lateral,x{i}")
    (others / "manifest.csv").write_text("\n".join(rows) + "\n")
    metrics = train_gate([phantoms], others, LUNG_SEGMENTER, tmp_path / "gate", augmented=1, drawn=8, epochs=1,
                         folds=2)
    head, info = load_gate(tmp_path / "gate" / "gate.pt")
    assert info["info"]["test_fold"] == 0 and info["threshold"] == 0.5
    kinds = {row["kind"] for row in metrics["cross_validated"]}
    assert {"inverted", "upside_down", "rotated_90_cw", "lateral", "photograph"} <= kinds
    assert metrics["held_out_sources"] and metrics["never_trained"]
    n_films = sum(row["n"] for row in metrics["cross_validated"] if row["expected"] == "frontal")
    assert n_films == len(list((phantoms / "images").glob("*.png")))
    report = (tmp_path / "gate" / "report.md").read_text()
    assert "Cross-validated by patient" in report and "No examples here" in report
