"""Several files at once: one row per file, errors in their rows, a CSV that matches the table, and a session
with no console errors or warnings."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from PIL import Image

from tests.corpus import BAD_INPUTS, write_bad_corpus
from tests.pwa.test_clinical import WITHHELD

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def xrays(tmp_path_factory):
    from training.data.phantoms import phantom

    folder = tmp_path_factory.mktemp("batch")
    paths = []
    for i, label in enumerate(["COVID-19", "Normal", "Pneumonia"]):
        paths.append(folder / f"{label},x'{i}.png")  # a comma and a quote: the CSV must quote them
        Image.fromarray(phantom(np.random.default_rng(10 + i), label, 160)[0]).save(paths[-1])
    return paths


def test_each_bad_file_shows_its_error_and_the_next_good_file_classifies(app, tmp_path, xrays):
    bad = write_bad_corpus(tmp_path / "bad")
    files = [f for path in bad for f in (path, xrays[0])]  # bad, good, bad, good, ...
    app.open()
    rows = app.classify(files)
    assert len(rows) == len(files)
    for (name, what, expected), bad_row, good_row in zip(BAD_INPUTS, rows[0::2], rows[1::2]):
        assert bad_row["file"] == name
        assert bad_row["status"] == "error", (name, what)
        assert expected in bad_row["error"], (name, bad_row["error"])
        assert good_row["status"] == "done", (name, good_row)
    # The message is on screen, in the row.
    first_error = app.page.text_content("#results-table tbody tr:nth-child(1) .error-cell")
    assert BAD_INPUTS[0][2] in first_error
    assert not app.problems()


def test_table_and_csv_match(app, xrays, site):
    app.open()
    rows = app.classify(xrays)
    assert [r["file"] for r in rows] == [p.name for p in xrays]
    assert all(r["status"] == "done" for r in rows)
    cells = app.page.eval_on_selector_all("#results-table tbody tr",
                                          "rows => rows.map(r => [...r.children].map(c => c.textContent.trim()))")
    with app.page.expect_download() as download:
        app.page.click("#download-csv")
    text = download.value.path().read_text(encoding="utf-8")
    assert download.value.suggested_filename.endswith(".csv")
    table = list(csv.DictReader(io.StringIO(text)))
    classes = site["card"]["classes"]
    assert len(table) == len(rows)
    for line, row, shown in zip(table, rows, cells):
        assert line["file"] == row["file"] == shown[0]
        probabilities = json.loads(row["probabilities"])
        ood = row["ood"] == "true"
        for c, p, on_screen in zip(classes, probabilities, shown[1:4]):
            assert float(line[f"p_{c}"]) == pytest.approx(p, abs=1e-6)
            assert on_screen == ("–" if ood else f"{100 * p:.1f} %")  # no numbers on screen for a non-X-ray
        # The CSV's prediction is the class the page shows (none for a non-X-ray); the table adds the band.
        assert line["prediction"] == row["class"] == ("" if ood else row["topClass"])
        assert line["band"] == row["band"]
        if row["band"] == "uncertain":
            assert shown[4].startswith("Uncertain: ") and row["topClass"] in shown[4]
        else:
            assert shown[4] == row["class"]
        assert line["withheld"] == row["withheld"] == shown[5] == (WITHHELD if ood else "")
        # The tiny export has no gate: the distance withholds, and nothing is "unlike the training films".
        assert line["gate"] == line["gate_reason"] == "" and line["unlike_training"] == "no"
        assert float(line["ood_score"]) == pytest.approx(float(row["oodScore"]), abs=1e-3)
        assert line["error"] == ""
        assert line["model"] == site["card"]["default_model"]
        assert line["model_version"] == site["card"]["version"]


def test_normal_session_has_no_console_errors_and_stays_responsive(app, xrays):
    app.open()
    # Long tasks on the main thread while a batch runs (decoding and inference are in the worker).
    app.page.evaluate("""() => {
      window.__longest = 0;
      new PerformanceObserver((list) => {
        for (const entry of list.getEntries()) window.__longest = Math.max(window.__longest, entry.duration);
      }).observe({ type: "longtask" });
    }""")
    app.classify(xrays * 4)
    app.page.click("#results-table tbody tr:nth-child(3) button")
    app.page.wait_for_selector("#results-table tbody tr.selected[data-index='2']", state="attached")
    app.page.select_option("#heat-class", "2")
    app.page.fill("#opacity", "30")
    app.page.click("#model-card summary")
    assert app.page.is_visible("#model-card-body h3")
    # The model card states what is known of the source/label confound (here: one source, cannot be measured).
    assert "one source" in app.page.text_content("#known-bias")
    longest = app.page.evaluate("window.__longest")
    assert longest < 250, f"a main-thread task took {longest:.0f} ms during the batch"
    assert not app.problems(), app.problems()


def test_single_file_shows_result_heatmap_and_warning(app, tmp_path, site):
    """One file: the viewer shows probabilities and the heatmap; a photo-like image gets the OOD warning, and its
    output only on request."""
    noise = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (120, 90, 3), dtype=np.uint8)).save(noise)
    app.open()
    (row,) = app.classify([noise])
    assert row["status"] == "done"
    viewer = app.page.locator("#viewer")
    assert viewer.is_visible()
    if row["ood"] == "true":
        assert app.page.is_hidden("#probabilities") and app.page.is_hidden("#heat-canvas")
        app.page.click("#reveal")
    assert app.page.is_visible("#heat-canvas")
    assert app.page.locator("#probabilities tbody tr").count() == 3
    size = app.page.eval_on_selector("#heat-canvas", "c => [c.width, c.height]")
    assert size == app.page.eval_on_selector("#image-canvas", "c => [c.width, c.height]") == [90, 120]
    warning = app.page.locator("#ood-warning")
    assert warning.is_visible() == (row["ood"] == "true")
    if row["ood"] == "true":
        assert f"No diagnosis for this image: {WITHHELD}." in " ".join(warning.text_content().split())
    if site["card"].get("demo"):
        assert app.page.locator("#demo-banner").is_visible()
    assert "Not a medical device" in app.page.text_content("#disclaimer")
