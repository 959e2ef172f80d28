"""pwa/static/page/shift.js against runtime/site_shift.py: the same verdict and numbers on the same batches."""

import numpy as np
import pytest

from runtime.site_shift import card_section, check, reference

pytestmark = pytest.mark.browser

CLASSES = ["COVID-19", "Normal", "Pneumonia"]


def _card():
    rng = np.random.default_rng(0)
    scores = rng.gamma(4.0, 500.0, 90)
    logits = rng.normal(0, 1, (90, 3)) + np.array([0.5, 0.0, -0.3])
    return {"classes": CLASSES, "site_shift": card_section([reference(scores, logits, CLASSES, "model.onnx")])}


def _batches():
    rng = np.random.default_rng(1)
    like = (rng.gamma(4.0, 500.0, 30).tolist(), rng.choice(CLASSES, 30, p=[0.4, 0.3, 0.3]).tolist())
    far = (rng.gamma(4.0, 900.0, 25).tolist(), ["Pneumonia"] * 20 + ["Normal"] * 5)
    tied = ([1000.0] * 10 + [2000.0] * 12, ["Normal"] * 22)  # ties and one class only
    few = (rng.gamma(4.0, 500.0, 8).tolist(), ["Normal"] * 8)
    return [like, far, tied, few]


def test_browser_and_python_give_the_same_verdict(app):
    card = _card()
    batches = _batches()
    app.open(offline_ready=False)
    got = app.page.evaluate("""async ([batches, card]) => {
      const { check } = await import("./app/page/shift.js");
      return batches.map(([scores, predicted]) => check(scores, predicted, card, "model.onnx"));
    }""", [batches, card])
    expected = [check(scores, predicted, card, "model.onnx") for scores, predicted in batches]
    assert [g["judged"] for g in got] == [True, True, True, False]
    assert got[1]["shifted"] is True  # a batch far from the reference is flagged on both sides
    for g, e in zip(got, expected):
        assert {k: g[k] for k in ("judged", "shifted", "n", "min_films", "alpha", "message", "class_counts")} == \
            {k: e[k] for k in ("judged", "shifted", "n", "min_films", "alpha", "message", "class_counts")}
        if e["judged"]:
            assert g["p_value"] == pytest.approx(e["p_value"], rel=1e-9, abs=1e-15)
            for key in ("ood_score", "predicted_class"):
                assert g["p_values"][key] == pytest.approx(e["p_values"][key], rel=1e-9, abs=1e-15)
            assert g["statistics"]["ks_d"] == pytest.approx(e["statistics"]["ks_d"], abs=1e-15)
            assert g["statistics"]["chi_square"] == pytest.approx(e["statistics"]["chi_square"], rel=1e-12)
            assert g["statistics"]["df"] == e["statistics"]["df"]
    without = app.page.evaluate("""async () => {
      const { check } = await import("./app/page/shift.js");
      return check(new Array(30).fill(1), new Array(30).fill("Normal"), {classes: ["Normal"]}, "model.onnx");
    }""")
    assert without["judged"] is False and without["message"].startswith("not checked")


def test_a_batch_says_whether_its_films_differ_from_the_validation_films(app, site, tmp_path):
    """22 films in the app: the batch view's verdict is runtime.site_shift's on the predictor's results for the same
    files and model file; a batch of two is not judged, and says why."""
    from PIL import Image

    from runtime.predictor import predict_files
    from runtime.site_shift import check_results
    from tests.pwa.conftest import phantom_image

    card = site["card"]
    assert "site_shift" in card, "the export writes the validation split's reference"
    files = []
    for i in range(22):
        files.append(tmp_path / f"film_{i:02d}.png")
        Image.fromarray(phantom_image(["COVID-19", "Normal", "Pneumonia"][i % 3], 160, seed=i)).save(files[-1])
    app.open()
    model = app.engine()["model"]
    app.classify(files)
    box = app.page.locator("#site-shift")
    expected = check_results(list(predict_files([str(f) for f in files], site["export"] / model)), card, model)
    assert box.get_attribute("data-judged") == "true" == str(expected["judged"]).lower()
    assert box.get_attribute("data-shifted") == str(expected["shifted"]).lower()
    assert float(box.get_attribute("data-p-value")) == pytest.approx(expected["p_value"], rel=1e-4, abs=1e-12)
    assert expected["message"] in box.text_content()
    app.classify(files[:2])
    assert box.get_attribute("data-judged") == "false"
    assert "needs at least 20 films" in box.text_content()
