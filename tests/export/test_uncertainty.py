"""The uncertainty rule (export/uncertainty.py): how the threshold is chosen on validation outputs, the band of a
result, what model.json records, and the predictor's `band`. BAND_CASES are also run through the browser's copy of
band() (tests/pwa/test_clinical.py), so both sides are held to the same answers."""

import json

import jsonschema
import numpy as np
import pytest

from export.uncertainty import choose_threshold, measure, uncertainty_card
from runtime.bands import KIND, band
from tests.conftest import REPO

RULE = {"rule": {"kind": KIND, "threshold": 0.6}}
# (probabilities, ood, uncertainty section, expected band)
BAND_CASES = [
    ([0.05, 0.90, 0.05], False, RULE, "confident"),
    ([0.20, 0.20, 0.60], False, RULE, "confident"),  # exactly at the threshold: confident
    ([0.45, 0.10, 0.45], False, RULE, "uncertain"),  # a tie
    ([0.549, 0.443, 0.008], False, RULE, "uncertain"),  # the 54.9 % against 44.3 %
    ([0.05, 0.90, 0.05], True, RULE, None),  # out of distribution: no band, no diagnosis
    ([0.05, 0.90, 0.05], False, None, None),  # an export without a rule
    ([0.05, 0.90, 0.05], False, {"rule": {"kind": KIND, "threshold": None}}, "uncertain"),  # target never reached
    ([0.05, 0.90, 0.05], False, {"rule": {"kind": "margin_below", "threshold": 0.1}}, "uncertain"),  # unknown kind
]


@pytest.mark.parametrize("probabilities, ood, uncertainty, expected", BAND_CASES)
def test_band(probabilities, ood, uncertainty, expected):
    assert band(np.array(probabilities, np.float32), ood, uncertainty) == expected


def test_threshold_is_the_smallest_that_reaches_the_target():
    top = [0.40, 0.50, 0.55, 0.60, 0.70, 0.80, 0.90, 0.95, 0.97, 0.99]
    right = [0, 0, 1, 0, 1, 1, 1, 1, 1, 1]
    # >= 0.70: 6 of 6 right; >= 0.60: 6 of 7 (86 %); so 0.70 with support 5, and nothing with support 7.
    assert choose_threshold(top, right, 0.9, 5) == 0.70
    assert choose_threshold(top, right, 0.9, 7) is None
    assert choose_threshold(top, right, 0.8, 5) == 0.55  # 7 of 8 right from 0.55 up
    assert choose_threshold(top, [1] * 10, 0.9, 5) == 0.40  # all right: the lowest validation value
    assert choose_threshold([], [], 0.9, 1) is None


def test_ties_never_split_between_bands():
    top = [0.5, 0.7, 0.7, 0.7, 0.9]
    right = [0, 1, 0, 1, 1]
    # A threshold between the three 0.7s does not exist: >= 0.7 is 3 of 4 right, >= 0.9 is 1 of 1.
    assert choose_threshold(top, right, 0.9, 1) == 0.9
    assert choose_threshold(top, right, 0.75, 1) == 0.7


def test_measure_counts_each_band_with_a_patient_interval():
    bands = ["confident"] * 4 + ["uncertain"] * 2
    m = measure(bands, [1, 1, 1, 0, 1, 0], ["a", "b", "c", "d", "e", "f"], n_boot=50)
    assert m["confident"]["n"] == 4 and m["confident"]["correct"] == 3 and m["confident"]["accuracy"] == 0.75
    low, high = m["confident"]["ci95"]
    assert 0 <= low <= 0.75 <= high <= 1
    assert measure(["confident"], [1], ["a"], 10)["uncertain"] == {"n": 0, "correct": 0, "accuracy": None,
                                                                   "ci95": None}


def test_card_section_excludes_ood_and_says_what_it_chose():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 40)
    confident = np.eye(3)[labels] * 0.8 + 0.2 / 3  # right and sure
    unsure = np.full((40, 3), 1 / 3) + np.eye(3)[(labels + 1) % 3] * 0.05  # wrong and unsure
    probabilities = np.where((np.arange(40) % 4 == 0)[:, None], unsure, confident) / 1.05
    ood = np.where(np.arange(40) == 1, 99.0, 1.0)  # one image the OOD check flags
    split = {"probabilities": probabilities, "ood_score": ood, "labels": labels,
             "patients": [f"p{i}" for i in range(40)]}
    section = uncertainty_card(split, split, ood_threshold=10, n_boot=20, model_file="model.onnx")
    assert section["target_reached"] and section["rule"]["kind"] == KIND
    assert section["rule"]["threshold"] == pytest.approx(float(np.float32(confident.max() / 1.05)), abs=1e-6)
    assert section["validation"]["excluded_ood"] == section["test_excluded_ood"] == 1
    assert section["bands"]["confident"]["accuracy"] == 1.0 and section["bands"]["uncertain"]["accuracy"] == 0.0
    assert section["bands"]["confident"]["n"] + section["bands"]["uncertain"]["n"] == 39
    assert "marked uncertain when its top probability is below" in " ".join(section["summary"])
    never = uncertainty_card({**split, "labels": (labels + 1) % 3}, split, 10, 0, "model.onnx")
    assert never["rule"]["threshold"] is None and not never["target_reached"]
    assert "every result is marked uncertain" in never["summary"][0]


def test_export_writes_the_rule_and_the_predictor_gives_the_band(tiny_export):
    from runtime.predictor import Predictor
    from training.data.phantoms import phantom

    card = json.loads((tiny_export / "model.json").read_text())
    jsonschema.validate(card, json.loads((REPO / "export" / "model.schema.json").read_text()))
    u = card["uncertainty"]
    assert u["chosen_on"] == "val" and u["target_accuracy"] == 0.9 and u["model_file"] == "model.onnx"
    assert sum(b["n"] for b in u["bands"].values()) + u["test_excluded_ood"] == sum(
        sum(c.values()) for c in card["training_data"]["counts"]["test"].values())
    result = Predictor(tiny_export / "model.onnx").predict(
        phantom(np.random.default_rng(0), "Normal", 128)[0].astype(np.float32))
    expected = band(np.array(list(result["probabilities"].values())), result["ood"], u)
    assert result["band"] == expected and result["band"] in ("confident", "uncertain", None)


def test_card_says_how_many_images_trained_the_model(tiny_export):
    card = json.loads((tiny_export / "model.json").read_text())
    counts = card["training_data"]["counts"]
    n = {split: sum(sum(c.values()) for c in counts[split].values()) for split in ("train", "val", "test")}
    sentence = (f"{n['train']} images used for training ({n['val']} for validation, {n['test']} for test) from "
                f"{card['training_data']['patients']} patients")
    assert any(item.startswith(sentence) for item in card["limitations"]), card["limitations"]
