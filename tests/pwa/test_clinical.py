"""What a clinician reads: no diagnosis for a photograph (page, table, CSV and CLI), "uncertain" with both leading
classes for a near tie, the result brought into view and announced, a clean error state, and a per-image report
made offline.

Known answers come from a crafted copy of the tiny export: its model files are untouched, its model.json gets an OOD
threshold between the phantoms' and the photograph's scores, and an uncertainty rule whose threshold sits between
two phantoms' top probabilities (measured here with the Python predictor on the fp32 model, which the browser
matches to 1e-6). The browser runs that fp32 file (?model=model.onnx)."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO
from tests.corpus import write_bad_corpus
from tests.export.test_uncertainty import BAND_CASES

pytestmark = pytest.mark.browser

WITHHELD = "out of distribution: unlike the training X-rays, or not a chest X-ray"
DISCLAIMER = "Not a medical device."
BANDS = {"confident": {"n": 40, "correct": 38, "accuracy": 0.95, "ci95": [0.88, 1.0]},
         "uncertain": {"n": 20, "correct": 12, "accuracy": 0.6, "ci95": [0.4, 0.8]}}


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict:
    import skimage.data

    from training.data.phantoms import phantom

    folder = tmp_path_factory.mktemp("clinical")
    phantoms = []
    for i, label in enumerate(["COVID-19", "Normal", "Pneumonia", "Normal", "Pneumonia", "COVID-19"]):
        phantoms.append(folder / f"phantom_{i}_{label}_with_a_long_descriptive_file_name.png")
        Image.fromarray(phantom(np.random.default_rng(40 + i), label, 160)[0]).save(phantoms[-1])
    cat = folder / "cat.png"
    Image.fromarray(skimage.data.chelsea()).save(cat)
    return {"phantoms": phantoms, "cat": cat}


@pytest.fixture(scope="module")
def crafted(tiny_export, node_modules, images, tmp_path_factory):
    from core.decode import decode
    from pwa.site import build_site
    from runtime.predictor import Predictor
    from tests.pwa.conftest import Served

    root = tmp_path_factory.mktemp("crafted")
    export = root / "export"
    shutil.copytree(tiny_export, export)
    predictor = Predictor(export / "model.onnx")
    python = {path: predictor.predict(decode(path)) for path in [*images["phantoms"], images["cat"]]}
    xray = max(python[p]["ood_score"] for p in images["phantoms"])
    photo = python[images["cat"]]["ood_score"]
    assert photo > 1.2 * xray, f"the tiny model cannot tell the photograph ({photo}) from phantoms ({xray})"
    by_top = sorted(images["phantoms"], key=lambda p: max(python[p]["probabilities"].values()))
    near, sure = by_top[0], by_top[-1]
    low, high = (max(python[p]["probabilities"].values()) for p in (near, sure))
    assert high - low > 1e-4, "the phantoms' top probabilities are too close to put a threshold between them"
    card = json.loads((export / "model.json").read_text())
    card["ood_threshold"] = (xray + photo) / 2
    card["uncertainty"].update(rule={"kind": "top_probability_below", "threshold": (low + high) / 2},
                               target_reached=True, bands=BANDS)
    (export / "model.json").write_text(json.dumps(card, indent=2))
    build_site(export, root / "dist", node_modules)
    served = Served(root / "dist")
    predictor = Predictor(export / "model.onnx")  # with the crafted card
    yield {"export": export, "card": card, "url": served.url, "near": near, "sure": sure,
           "python": {p: predictor.predict(decode(p)) for p in python}}
    served.close()


@pytest.fixture
def crafted_app(context, crafted):
    from tests.pwa.conftest import App

    app = App(context, crafted["url"])
    app.open("?model=model.onnx", offline_ready=False)
    return app


def _csv(app) -> list[dict]:
    with app.page.expect_download() as download:
        app.page.click("#download-csv")
    return list(csv.DictReader(io.StringIO(download.value.path().read_text(encoding="utf-8"))))


def _in_viewport(page, selector) -> bool:
    return page.eval_on_selector(selector, """e => { const r = e.getBoundingClientRect();
      return r.height > 0 && r.top >= 0 && r.bottom <= innerHeight && r.left >= 0 && r.right <= innerWidth; }""")


def test_band_in_the_browser_matches_python_on_fixed_probabilities(app):
    """pwa/static/page/uncertainty.js band() against export/uncertainty.py band(), on the same float32 numbers."""
    from runtime.bands import band

    app.open(offline_ready=False)
    cases = [[[float(np.float32(p)) for p in probabilities], ood, uncertainty]
             for probabilities, ood, uncertainty, _ in BAND_CASES]
    got = app.page.evaluate("""async (cases) => {
      const { band } = await import("./app/page/uncertainty.js");
      return cases.map(([p, ood, u]) => band(p, ood, u));
    }""", cases)
    assert got == [band(np.array(p, np.float32), ood, u) for p, ood, u in cases] == [c[3] for c in BAND_CASES]


def test_gate_decision_in_the_browser_matches_python(app):
    """pwa/static/page/verdict.js decide() against runtime/gate.py decide(), on the same cases."""
    from runtime.gate import decide
    from tests.runtime.test_gate import CASES

    app.open(offline_ready=False)
    got = app.page.evaluate("""async (cases) => {
      const { decide } = await import("./app/page/verdict.js");
      return cases.map(([card, gate, reason, ood]) => decide(card, gate, reason, ood));
    }""", [list(case[:4]) for case in CASES])
    assert got == [decide(*case[:4]) for case in CASES]
    assert got == [{"withheld": w, "gate_reason": r, "unlike_training": u} for *_, w, r, u in CASES]


def test_photograph_gets_no_diagnosis_anywhere(crafted_app, crafted, images):
    app, page = crafted_app, crafted_app.page
    cat, xray = images["cat"], images["phantoms"][0]
    rows = app.classify([cat, xray])
    assert rows[0]["ood"] == "true" and rows[1]["ood"] == "false"
    assert rows[0]["class"] == "" and rows[0]["band"] == "" and rows[0]["withheld"] == WITHHELD
    assert rows[1]["class"] == crafted["python"][xray]["class"]
    # The viewer shows the photograph with the warning, and nothing of the model's output.
    page.wait_for_selector("#viewer[data-state=withheld]")
    assert page.is_visible("#ood-warning") and page.is_visible("#reveal")
    shown = page.inner_text("#viewer")
    assert not [c for c in crafted["card"]["classes"] if c in shown], shown
    assert "Most likely" not in shown
    for hidden in ("#prediction", "#probabilities", "#heat-canvas", "#heat-class"):
        assert page.is_hidden(hidden), hidden
    assert "could not be read" not in page.text_content("#result-live")
    assert "no prediction" in page.text_content("#result-live")
    # The table: no class, no probabilities, and why.
    cells = page.eval_on_selector("#results-table tbody tr:nth-child(1)",
                                  "r => [...r.children].map(c => c.textContent.trim())")
    assert cells[1:5] == ["–", "–", "–", ""] and cells[5] == WITHHELD
    # The CSV: an empty prediction, and why; the raw probabilities stay for analysis.
    line = _csv(app)[0]
    assert line["prediction"] == "" and line["band"] == "" and line["withheld"] == WITHHELD
    assert line["gate_reason"] == "" and line["unlike_training"] == "no" and float(line["p_COVID-19"]) >= 0
    # The report says it was withheld.
    with page.expect_download():
        page.click("#save-report")
    report = page.text_content("#report-body")
    assert "Withheld: " + WITHHELD in report and "Probabilities" in report
    # Only on request: the model's output, marked as not a diagnosis, with bars and heatmap.
    page.click("#reveal")
    page.wait_for_selector("#viewer[data-state=shown] #prediction", state="visible")
    assert "not a diagnosis" in page.text_content("#prediction")
    assert page.is_visible("#heat-canvas") and page.is_visible("#probabilities")
    assert page.evaluate("document.activeElement.id") == "prediction"
    # The next file starts withheld again.
    page.click("#results-table tbody tr:nth-child(2) button")
    page.click("#results-table tbody tr:nth-child(1) button")
    page.wait_for_selector("#viewer[data-state=withheld]")
    # The command line: class null, band null, and why.
    out = subprocess.run([sys.executable, "-m", "cxr", "predict", str(cat), "--model",
                          str(crafted["export"] / "model.onnx")], cwd=REPO, capture_output=True, text=True)
    result = json.loads(out.stdout)
    assert result["class"] is None and result["band"] is None and result["class_withheld"]
    assert not app.problems(), app.problems()


def test_near_tie_is_uncertain_with_both_classes_and_a_confident_result_is_not(crafted_app, crafted):
    app, page, classes = crafted_app, crafted_app.page, crafted["card"]["classes"]
    near = crafted["python"][crafted["near"]]
    (row,) = app.classify([crafted["near"]])
    assert row["band"] == near["band"] == "uncertain"  # the browser's band is the Python predictor's
    page.wait_for_selector("#prediction[data-band=uncertain]")
    leading = sorted(near["probabilities"], key=near["probabilities"].get, reverse=True)[:2]
    text = page.text_content("#prediction")
    assert "Uncertain" in text and "Most likely" not in text
    strong = page.eval_on_selector_all("#prediction strong", "s => s.map(e => e.textContent)")
    assert sorted(strong) == sorted(leading)  # both named, with the same weight
    assert strong == [c for c in classes if c in leading]  # in the model's class order, not by probability
    assert "60 %" in page.text_content("#band-note") and "12 of 20" in page.text_content("#band-note")
    assert "uncertain" in page.text_content("#result-live")
    assert page.text_content("#results-table tbody td.prediction-cell") == f"Uncertain: {' or '.join(strong)}"

    sure = crafted["python"][crafted["sure"]]
    (row,) = app.classify([crafted["sure"]])
    assert row["band"] == sure["band"] == "confident"
    page.wait_for_selector("#prediction[data-band=confident]")
    text = page.text_content("#prediction")
    assert "Uncertain" not in text and f"Most likely: {sure['class']}" in text
    assert "95 %" in page.text_content("#band-note")
    assert f"most likely {sure['class']}" in page.text_content("#result-live")
    assert not app.problems(), app.problems()


@pytest.mark.parametrize("viewport", [{"width": 1280, "height": 900}, {"width": 390, "height": 844}],
                         ids=["desktop", "phone"])
def test_shown_result_is_in_view_announced_and_focused(browser, base_url, images, viewport):
    from tests.pwa.conftest import App

    phone = viewport["width"] < 500
    context = browser.new_context(viewport=viewport, is_mobile=phone, has_touch=phone)
    try:
        app = App(context, base_url)
        app.open(offline_ready=False)
        page = app.page
        # One file: its prediction is on screen when it is done (on a phone too).
        (row,) = app.classify(images["phantoms"][:1])
        assert _in_viewport(page, "#prediction"), "the single file's prediction is below the fold"
        assert row["topClass"] in page.text_content("#result-live")
        # Several: choose another file's heatmap class, then "Show" the last one from the bottom of the table.
        rows = app.classify(images["phantoms"])
        page.select_option("#heat-class", "2")
        page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
        last = len(rows)
        page.click(f"#results-table tbody tr:nth-child({last}) button")
        page.wait_for_selector(f"#viewer[data-file='{images['phantoms'][-1].name}'] #prediction", state="visible")
        assert _in_viewport(page, "#prediction")
        live = page.text_content("#result-live")
        assert images["phantoms"][-1].name in live and rows[-1]["topClass"] in live
        assert (rows[-1]["band"] or "most likely") in live
        assert page.evaluate("document.activeElement.id") == "viewer-title"
        assert page.input_value("#heat-class") == "predicted"  # the heatmap class starts over for each file
        assert not app.problems(), app.problems()
    finally:
        context.close()


def test_a_bad_file_leaves_a_clean_error_state(app, images, tmp_path):
    bad = {p.name: p for p in write_bad_corpus(tmp_path)}
    app.open(offline_ready=False)
    page = app.page
    app.classify(images["phantoms"][:1])
    page.wait_for_selector("#viewer[data-state=shown]")
    (row,) = app.classify([bad["huge.dcm"]])
    assert row["status"] == "error"
    page.wait_for_selector("#viewer[data-state=error]")
    message = page.text_content("#viewer-error")
    assert "30000 x 30000 pixels (900 megapixels) is larger than the 67.1-megapixel limit" in message, message
    for hidden in ("#stage-figure", "#viewer-details", "#probabilities", "#report-actions", "#prediction",
                   "#ood-box"):
        assert page.is_hidden(hidden), hidden
    assert "could not be read" in page.text_content("#result-live")
    assert not app.problems(), app.problems()


def test_report_is_made_offline(app, site, images, tmp_path):
    app.open()  # everything precached by the service worker
    app.context.set_offline(True)
    page = app.page
    before = len(app.requests)
    (row,) = app.classify(images["phantoms"][:1])
    with page.expect_download() as download:
        page.click("#save-report")
    path = download.value.path()
    name = download.value.suggested_filename
    assert name.startswith("cxr-report-") and name.endswith(".png")
    image = np.asarray(Image.open(path).convert("RGB"))
    assert image.shape[1] == 1200 and image.shape[0] > 400 and image.std() > 10  # a picture and text, not blank
    text = page.text_content("#report-body")
    card = site["card"]
    for expected in (DISCLAIMER, "do not use it for diagnosis", f"version {card['version']}", row["file"],
                     "Chest X-ray check", "Probabilities", "Date"):
        assert expected in text, expected
    assert (row["band"] or row["class"]).lower() in text.lower()
    assert [r.url for r in app.requests[before:] if not r.url.startswith(("blob:", "data:"))] == []
    assert not [p for p in app.problems() if "ERR_INTERNET_DISCONNECTED" not in p[1]], app.problems()


def test_model_card_says_how_many_images_trained_it_and_when_it_is_uncertain(app, site):
    app.open(offline_ready=False)
    app.page.click("#model-card summary")
    data = site["card"]["training_data"]
    n = {s: sum(sum(c.values()) for c in data["counts"][s].values()) for s in ("train", "val", "test")}
    text = " ".join(app.page.text_content("#model-card-body").split())
    assert (f"{n['train']} used for training ({n['val']} for validation, {n['test']} for test) from "
            f"{data['patients']} patients") in text
    for sentence in site["card"]["uncertainty"]["summary"]:
        assert sentence in text
