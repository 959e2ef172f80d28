"""Evidence in the lungs in the app (docs/lungs.md), on the tiny model exported with the released lung segmenter:
the browser's lung outputs equal the Python predictor's, the share is shown (a warning when it is low), the lung
outline can be drawn over the image, and the CSV has the column. A tiny lung-cropping model gives the browser the
Python predictor's answers, crop box included."""

from __future__ import annotations

import csv
import io
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from tests.conftest import SHARED_CXR
from tests.pwa.test_parity import _check_lungs

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def xrays(tmp_path_factory) -> list:
    folder = tmp_path_factory.mktemp("lung_files")
    files = sorted((SHARED_CXR / "images").glob("nih_*.png"))[:2] if (SHARED_CXR / "manifest.csv").exists() else []
    if not files:
        from training.data.phantoms import phantom

        for i, label in enumerate(("Normal", "Pneumonia")):
            files.append(folder / f"phantom_{i}.png")
            Image.fromarray(phantom(np.random.default_rng(i), label, 256)[0]).save(files[-1])
    return files


def _site(export, tmp_path, node_modules, threshold=None):
    """A site of `export` (optionally with its model card's evidence threshold replaced)."""
    from pwa.site import build_site

    folder = tmp_path / "export"
    shutil.copytree(export, folder)
    if threshold is not None:
        card = json.loads((folder / "model.json").read_text())
        card["lungs"]["evidence_threshold"] = threshold
        (folder / "model.json").write_text(json.dumps(card))
    build_site(folder, tmp_path / "dist", node_modules)
    return folder


def _open(browser, dist):
    from tests.pwa.conftest import App, Served

    served = Served(dist)
    app = App(browser.new_context(accept_downloads=True), served.url)
    app.open("?model=model.onnx")
    return app, served


def _reveal(app, row):
    """The tiny phantom-trained model finds real films out of distribution: ask for its output, as a user can."""
    if row["ood"] == "true":
        app.page.click("#reveal")


def test_lung_outputs_match_python_and_the_share_is_shown(browser, tiny_export_lungs, node_modules, xrays,
                                                           tmp_path):
    from runtime.predictor import predict_files

    export = _site(tiny_export_lungs, tmp_path, node_modules)
    app, served = _open(browser, tmp_path / "dist")
    try:
        rows = app.classify(xrays)
        expected = {r["file"]: r for r in predict_files([str(f) for f in xrays], export / "model.onnx")}
        for path, row in zip(xrays, rows):
            _check_lungs(row, expected[str(path)], True, path.name)
        _reveal(app, rows[0])
        evidence = app.page.locator("#evidence")
        evidence.wait_for(state="visible")
        text = evidence.text_content()
        first = expected[str(xrays[0])]
        if first["lung_fallback"]:
            assert "could not be found" in text
        else:
            assert f"{round(100 * first['lung_evidence'])}% of the model's evidence lies inside the lung fields" in text
        # The outline toggle draws the lung fields over the image.
        assert app.page.locator("#outline-canvas").is_hidden()
        app.page.check("#lung-outline")
        assert app.page.locator("#outline-canvas").is_visible()
        # ... for the first file too, whose pictures come with its result (not only for a row clicked later)
        size = "e => [e.width, e.height]"
        assert app.page.eval_on_selector("#outline-canvas", size) == app.page.eval_on_selector("#image-canvas", size)
        with app.page.expect_download() as download:
            app.page.click("#download-csv")
        table = list(csv.DictReader(io.StringIO(open(download.value.path(), encoding="utf-8").read())))
        assert "lung_evidence" in table[0] and "lung_fallback" in table[0]
        for row, line in zip(rows, table):
            if row["lungFallback"] == "false":
                assert float(line["lung_evidence"]) == pytest.approx(float(row["lungEvidence"]), abs=1e-4)
        assert not app.problems(), app.problems()
    finally:
        app.context.close()
        served.close()


def test_a_low_share_is_a_warning(browser, tiny_export_lungs, node_modules, xrays, tmp_path):
    _site(tiny_export_lungs, tmp_path, node_modules, threshold=1.01)  # every usable share is below it
    app, served = _open(browser, tmp_path / "dist")
    try:
        (row,) = app.classify(xrays[:1])
        _reveal(app, row)
        evidence = app.page.locator("#evidence")
        evidence.wait_for(state="visible")
        assert row["lungFallback"] == "false"  # the segmenter finds the lungs of this film
        assert evidence.get_attribute("data-low") == "true" and evidence.get_attribute("role") == "alert"
        assert "may rest on something outside the lungs" in evidence.text_content()
    finally:
        app.context.close()
        served.close()


def test_lung_crop_model_matches_python(browser, tiny_export_lung_crop, node_modules, parity_files, tmp_path):
    """The graph crops to the lung box before classifying: the browser's probabilities, crop box, fallback flag and
    evidence share equal the Python predictor's (tests/pwa/test_parity.py `_check`) on a real PNG, a JPEG, a
    16-bit DICOM and the real JPEG DICOM."""
    from tests.pwa.test_parity import REAL_DICOM, _check

    card = json.loads((tiny_export_lung_crop / "model.json").read_text())
    assert card["lungs"]["crop"] is True and "crop_box" in card["output_names"]
    export = _site(tiny_export_lung_crop, tmp_path, node_modules)
    files = [*parity_files, *([SHARED_CXR / REAL_DICOM] if (SHARED_CXR / REAL_DICOM).exists() else [])]
    app, served = _open(browser, tmp_path / "dist")
    try:
        rows = app.classify(files)
        _check(rows, files, export / "model.onnx", card, {})
        if (SHARED_CXR / "manifest.csv").exists():  # real films: the segmenter finds lungs, so the box is a crop
            boxes = [(json.loads(r["cropBox"]), [0, 0, int(r["width"]), int(r["height"])]) for r in rows
                     if r["lungFallback"] == "false"]
            assert any(not np.allclose(box, whole) for box, whole in boxes), boxes
        assert not app.problems(), app.problems()
    finally:
        app.context.close()
        served.close()
