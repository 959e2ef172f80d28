"""Scores on unseen sources (export/external.py): hand-computed values on made-up predictions, and a batch in which
one unreadable file is reported while the others are scored."""

import numpy as np
import pytest
from PIL import Image

from export.external import group_metrics, score, sentence


def _row(patient, label, p_covid, shown, top=None, band="confident"):
    rest = (1 - p_covid) / 2
    return {"patient_id": patient, "label": label, "source": "elsewhere" if label == "COVID-19" else "internal",
            "result": {"probabilities": {"COVID-19": p_covid, "Normal": rest, "Pneumonia": rest},
                       "class": shown, "top_class": top or shown, "band": band}}


@pytest.fixture
def held_and_others():
    held = [_row("a", "COVID-19", 0.9, "COVID-19"), _row("a", "COVID-19", 0.8, "COVID-19", band="uncertain"),
            _row("b", "COVID-19", 0.3, "Pneumonia"), _row("c", "COVID-19", 0.6, None, top="COVID-19")]
    others = [_row("x", "Normal", 0.1, "Normal"), _row("y", "Pneumonia", 0.7, "COVID-19"),
              _row("z", "Pneumonia", 0.2, "Pneumonia")]
    return held, others


def test_group_metrics_by_hand(held_and_others):
    held, others = held_and_others
    g = group_metrics(held, others, "COVID-19", n_boot=200)
    assert (g["images"], g["patients"]) == (4, 3)
    # Shown as COVID-19: 2 of 4 (the withheld image counts as not shown, although its top class is COVID-19).
    assert g["sensitivity"]["value"] == 0.5 and g["top_class_sensitivity"] == 0.75
    assert g["shown"] == {"COVID-19": 0.5, "Normal": 0.0, "Pneumonia": 0.25, "withheld": 0.25}
    assert g["uncertain"] == 0.25
    lo, hi = g["sensitivity"]["ci95"]
    assert 0 <= lo <= 0.5 <= hi <= 1
    # AUC: of the 4 x 3 (held, other) pairs, held 0.9 and 0.8 beat all three others, 0.3 and 0.6 beat two: 10 / 12.
    auc = g["auc_vs_other_sources"]
    assert auc["auc"] == pytest.approx(10 / 12)
    assert auc["n"] == {"positive": 4, "negative": 3} and auc["other_classes"] == ["Normal", "Pneumonia"]


def test_sentence_says_where_the_images_went(held_and_others):
    held, others = held_and_others
    g = {"source": "elsewhere", **group_metrics(held, others, "COVID-19", n_boot=200)}
    text = sentence(g)
    assert text.startswith("On 4 COVID-19 images of 3 patients from elsewhere, a source never used in training")
    assert "shown as COVID-19 for 50%" in text
    assert "; 25% Pneumonia, 25% withheld (no diagnosis)." in text and "0% Normal" not in text
    assert "AUC 0.83" in text


class _Fixed:
    """A predictor that answers the same for every image it is given."""

    def predict(self, gray):
        assert gray.ndim == 2
        return {"probabilities": {"COVID-19": 1.0, "Normal": 0.0, "Pneumonia": 0.0}, "class": "COVID-19",
                "top_class": "COVID-19", "band": "confident"}


def test_one_unreadable_file_is_reported_and_the_others_scored(tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(np.full((32, 32), 100, np.uint8)).save(good)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    rows = [{"file": name, "path": tmp_path / name, "label": "COVID-19", "patient_id": name, "source": "s"}
            for name in ("good.png", "bad.png", "good.png")]
    rows[2] = {**rows[2], "patient_id": "again"}
    scored, failed = score(_Fixed(), rows)
    assert [r["patient_id"] for r in scored] == ["good.png", "again"]
    assert len(failed) == 1 and failed[0]["file"] == "bad.png" and failed[0]["error"]
