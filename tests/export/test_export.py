import json

import jsonschema
import numpy as np
import pytest
import torch

from core.checksum import sha256_file
from cxr.cli import main
from export import package
from export.card import shortcut_sentences
from tests.conftest import REPO

SCHEMA = json.loads((REPO / "export" / "model.schema.json").read_text())


def test_model_json_validates_and_files_match(tiny_export):
    card = json.loads((tiny_export / "model.json").read_text())
    jsonschema.validate(card, SCHEMA)
    for name, info in card["files"].items():
        assert sha256_file(tiny_export / name) == info["sha256"]
        assert (tiny_export / name).stat().st_size == info["size"]
    assert card["demo"] is True and card["training_data"]["sources"] == ["phantom"]
    assert card["default_model"] in card["files"]
    assert not (tiny_export / ".staging").exists()


def test_schema_rejects_a_broken_card(tiny_export):
    card = json.loads((tiny_export / "model.json").read_text())
    del card["files"]["model.onnx"]["sha256"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(card, SCHEMA)


def test_verify_alone_passes(tiny_export, capsys):
    assert main(["verify", str(tiny_export)]) == 0
    out = capsys.readouterr().out
    assert "probabilities max abs diff" in out and "FAIL" not in out


def test_verify_detects_a_tampered_file(tiny_export, tmp_path, capsys):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_export, copy)
    with open(copy / "model.onnx", "r+b") as f:  # flip bytes inside the weights
        f.seek(f.seek(0, 2) // 2)
        f.write(b"\x7f\x7f\x7f\x7f")
    assert main(["verify", str(copy)]) == 1
    assert "FAIL" in capsys.readouterr().out


def _broken_export(monkeypatch, tiny_export, tmp_path, breakage):
    """Export the tiny checkpoint again with the wrapper broken by `breakage(model)`."""
    real = package.from_checkpoint

    def broken(path, lungs=None, gate=None):
        model, ckpt = real(path, lungs, gate)
        breakage(model)
        return model, ckpt

    monkeypatch.setattr(package, "from_checkpoint", broken)
    checkpoint = tiny_export.parent / "run" / "best.pt"
    return main(["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "out"), "--no-int8",
                        "--bootstrap", "20"])


def test_export_refuses_a_wrong_temperature(monkeypatch, tiny_export, tmp_path, capsys):
    def wrong_temperature(model):
        model.temperature.fill_(model.temperature.item() * 1.5)

    assert _broken_export(monkeypatch, tiny_export, tmp_path, wrong_temperature) == 1
    assert not (tmp_path / "out" / "model.json").exists()  # nothing accepted
    assert (tmp_path / "out" / "rejected" / "verification.md").exists()
    assert "FAIL" in capsys.readouterr().err


def test_export_refuses_a_perturbed_weight(monkeypatch, tiny_export, tmp_path):
    def perturb(model):
        with torch.no_grad():
            model.classifier.fc.weight[0, 0] += 0.5

    assert _broken_export(monkeypatch, tiny_export, tmp_path, perturb) == 1
    assert not (tmp_path / "out" / "model.json").exists()
    table = (tmp_path / "out" / "rejected" / "verification.md").read_text()
    assert "cam vs autograd" in table and "FAIL" in table


def test_int8_that_fails_fidelity_is_not_shipped(monkeypatch, tiny_export, tmp_path):
    from export import onnx_export, verify

    def impossible(*args):
        return [verify.Check("int8 vs fp32: top-1 agreement", 0.5, 0.98, False)]

    monkeypatch.setattr(verify, "compare_int8", impossible)
    monkeypatch.setattr(package, "RECIPES", onnx_export.RECIPES[:1])
    card = package.export(tiny_export.parent / "run" / "best.pt", tmp_path / "out", n_boot=20, calibration_images=4)
    assert list(card["files"]) == ["model.onnx"] and card["default_model"] == "model.onnx"
    assert not card["int8"]["shipped"] and "only the fp32 model" in card["int8"]["note"]
    assert not (tmp_path / "out" / "model.int8.onnx").exists()


def test_shortcut_sentences_say_the_confound_plainly():
    shares = {"COVID-19": {"ieee8023": 1.0}, "Normal": {"nih": 0.99, "ieee8023": 0.01},
              "Pneumonia": {"nih": 0.78, "ieee8023": 0.22}}
    probe = {"all": {"accuracy": 0.95, "chance_accuracy": 0.59, "balanced_accuracy": 0.95}}
    within = [{"source": "ieee8023", "pair": "COVID-19 vs Pneumonia", "auc": 0.64, "ci95": [0.27, 0.84],
               "n": {"COVID-19": 29, "Pneumonia": 7}}]
    text = " ".join(shortcut_sentences(shares, probe, within))
    assert "COVID-19: 100% ieee8023" in text and "Pneumonia: 78% nih, 22% ieee8023" in text
    assert "instead of the disease" in text
    assert "95% of cases" in text and "59%" in text
    assert "Inside ieee8023 alone" in text and "AUC 0.64 (95% CI 0.27-0.84; 36 test images" in text
    balanced = {"Normal": {"a": 0.5, "b": 0.5}, "Pneumonia": {"a": 0.5, "b": 0.5}}
    assert "instead of the disease" not in " ".join(shortcut_sentences(balanced, None, []))


def test_export_with_border_crop_and_text_suppression_verifies(tiny_export_geometry):
    card = json.loads((tiny_export_geometry / "model.json").read_text())
    assert card["preprocess"]["crop_borders"] and card["preprocess"]["suppress_text"]
    fp32_checks = [c for c in card["verification"] if c["name"].startswith("fp32")]
    assert len(fp32_checks) == 3 and all(c["passed"] for c in fp32_checks)
    assert main(["verify", str(tiny_export_geometry)]) == 0


def test_shortcut_report_of_two_sources_uses_the_evaluation_s_probe():
    from export.card import shortcut_report

    rng = np.random.default_rng(0)
    labels = np.array([0] * 10 + [2] * 10 + [1] * 10 + [2] * 10)
    sources = ["ieee8023"] * 20 + ["nih"] * 20
    probs = rng.dirichlet(np.ones(3), 40)
    summary = {"sources": ["ieee8023", "nih"], "counts": {"train": {
        "ieee8023": {"COVID-19": 50, "Normal": 0, "Pneumonia": 10},
        "nih": {"COVID-19": 0, "Normal": 40, "Pneumonia": 40}}}}
    probe = {"all": {"accuracy": 0.9, "chance_accuracy": 0.6, "balanced_accuracy": 0.9}, "within_label": {}}
    report = shortcut_report(summary, probe, labels, probs, [str(i) for i in range(40)], sources, 20)
    assert report["source_probe"] is probe and report["class_sources"]["COVID-19"] == {"ieee8023": 1.0}
    assert {(w["source"], w["pair"]) for w in report["within_source"]} == {("ieee8023", "COVID-19 vs Pneumonia"),
                                                                           ("nih", "Normal vs Pneumonia")}
    assert any("90% of cases" in s for s in report["summary"])


def test_the_card_names_each_class_that_comes_from_one_source():
    from export.card import one_source_classes

    summary = {"counts": {"train": {
        "ieee8023": {"COVID-19": 50, "Normal": 2, "Pneumonia": 10},
        "nih": {"COVID-19": 0, "Normal": 40, "Pneumonia": 40},
        "shenzhen": {"COVID-19": 0, "Normal": 20, "Pneumonia": 0}}}}
    sentences = one_source_classes(summary)
    assert len(sentences) == 1 and "COVID-19" in sentences[0] and "ieee8023, 50 of 50" in sentences[0]
    summary["counts"]["train"]["shenzhen"]["Normal"] = 0  # Normal: 40 of 42 from NIH, at least 90%
    assert [s.split(" training")[0] for s in one_source_classes(summary)] == [
        "Every or nearly every COVID-19", "Every or nearly every Normal"]
