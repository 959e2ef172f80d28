"""The app's "Validate at your site" view (docs/site.md, docs/pwa.md): labelled films give the numbers `cxr validate`
gives on the same files, the site profile it fits (or imports) calibrates later results exactly as `cxr predict
--site-profile` does and they say so, it all works offline without a request leaving the page, and bad inputs and
bad profiles are refused with a clear message and change nothing.

Every expected value comes from the Python side (`cxr validate`'s metrics.json and site-profile.json,
runtime.predictor with the profile, runtime.site_profile.load_profile), never from the JS under test. The browser runs
the fp32 file (?model=model.onnx), which onnxruntime-web computes to about 1e-7 of native onnxruntime."""

from __future__ import annotations

import copy
import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from cxr.cli import main
from runtime.predictor import predict_files
from runtime.site_profile import load_profile, sign
from tests.site_films import phantom_site

pytestmark = pytest.mark.browser

SITE = "Phantom General"
MODEL = "model.onnx"
TOLERANCE = 1e-6
# The model's own outputs for a film (metrics.json `scored`: its logits and probabilities) come from onnxruntime-web
# in the browser and native onnxruntime in Python: they agree to about 1e-6 (measured here: at most 1.3e-6 on a
# logit; docs/pwa.md, fp32 parity). Every figure computed from them agrees to TOLERANCE.
MODEL_OUTPUTS = 1e-5
# What differs between two runs on the same films by construction: when, the source's description and the files'
# paths (the browser knows names, not where they lie on disk: compared by name below). An unreadable file's reason
# is compared by its kind: for tests/site_films.py's broken PNG, Pillow says "broken PNG file (chunk b' rea')" and
# the browser's png.js "image file is truncated (no IHDR)" (both "truncated or corrupt PNG").
UNCOMPARED = {"created", "data", "file", "content_sha256", "reason"}


def close(js, py, path: str = "", tolerance: float = TOLERANCE) -> list[str]:
    """Where `js` and `py` (parsed JSON) differ: numbers by more than `tolerance` (MODEL_OUTPUTS for a scored film's
    logits and probabilities), anything else at all."""
    if isinstance(py, bool) or isinstance(js, bool):
        return [] if js == py else [f"{path}: {js!r} != {py!r}"]
    if isinstance(py, (int, float)) and isinstance(js, (int, float)):
        return [] if abs(js - py) <= tolerance else [f"{path}: {js!r} != {py!r}"]
    if isinstance(py, dict) and isinstance(js, dict):
        if set(js) != set(py):
            return [f"{path}: keys {sorted(set(js) ^ set(py))} on one side only"]
        raw = path.startswith("/scored/")
        return [d for k in py if k not in UNCOMPARED for d in close(
            js[k], py[k], f"{path}/{k}", MODEL_OUTPUTS if raw and k in ("logits", "probabilities") else tolerance)]
    if isinstance(py, list) and isinstance(js, list):
        if len(js) != len(py):
            return [f"{path}: {len(js)} items != {len(py)}"]
        return [d for i, (a, b) in enumerate(zip(js, py)) for d in close(a, b, f"{path}/{i}", tolerance)]
    return [] if js == py else [f"{path}: {js!r} != {py!r}"]


# --- the labelled films ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def csv_site(tiny_prepared, tmp_path_factory) -> dict:
    """tests/site_films.py's CSV (15 phantoms, two films per patient, lower-case labels, one broken file) and the
    files it names."""
    labels = phantom_site(tiny_prepared, tmp_path_factory.mktemp("csv_site") / "data", n=15)
    files = [Path(line.split(",")[0]) for line in labels.read_text().splitlines()[1:]]
    return {"data": labels, "labels": labels, "files": [f if f.is_absolute() else labels.parent / f for f in files]}


@pytest.fixture(scope="module")
def folder_site(tiny_prepared, tmp_path_factory) -> dict:
    """A folder per class of 55 phantoms and one broken file: one patient per film, so more than 30 patients (10
    folds dealt out by numpy's permutation), a temperature (30 films on) and the band re-chosen on the site's films
    (50 on)."""
    from core.classes import CLASSES

    root = tmp_path_factory.mktemp("folder_site")
    images = tiny_prepared.parent / "phantoms" / "images"
    for i in range(55):
        folder = root / "data" / CLASSES[i % 3]
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(images / f"phantom_{i:05d}.png", folder / f"phantom_{i:05d}.png")
    (root / "data" / "Normal" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return {"data": root / "data", "folders": [root / "data" / c for c in CLASSES]}


@pytest.fixture(scope="module")
def validated(site, csv_site, folder_site, tmp_path_factory) -> dict:
    """metrics.json and site-profile.json of `cxr validate` for both sets, with its defaults (1000 resamples by
    patient, seed 0), on the model file the browser runs."""
    out = {}
    for name, films in (("csv", csv_site["data"]), ("folders", folder_site["data"])):
        folder = tmp_path_factory.mktemp(f"validated_{name}")
        status = main(["validate", "--model", str(site["export"] / MODEL), "--data", str(films), "--out",
                       str(folder), "--site", SITE, "--no-progress"])
        assert status == 0
        out[name] = {"metrics": json.loads((folder / "metrics.json").read_text()),
                     "profile": json.loads((folder / "site-profile.json").read_text()),
                     "profile_path": folder / "site-profile.json"}
    return out


# --- driving the view --------------------------------------------------------------------------------------------


def open_app(app, offline_ready: bool = False):
    app.open(f"?model={MODEL}", offline_ready=offline_ready)


def run_validation(app, *, files=None, labels=None, folders=None, site=SITE, wait: str = "done"):
    """Fill the view and press Validate; wait for `wait` (data-state of #site)."""
    page = app.page
    page.fill("#site-name", site)
    if labels is not None or files is not None:
        page.check("#site-source-csv")
        if files:
            page.set_input_files("#site-files", [str(f) for f in files])
        if labels:
            page.set_input_files("#site-labels", str(labels))
    for i, folder in enumerate(folders or []):
        if folder is not None:
            page.set_input_files(f"#site-folder-{i}", str(folder))
    page.eval_on_selector("#site", "e => { e.dataset.state = 'idle'; }")  # so that the wait sees this run's end
    page.click("#site-run")
    page.wait_for_selector(f"#site[data-state={wait}]", state="attached")


def downloaded(app, selector: str):
    with app.page.expect_download() as download:
        app.page.click(selector)
    return download.value


def downloaded_json(app, selector: str):
    return json.loads(downloaded(app, selector).path().read_text(encoding="utf-8"))


def message(app) -> str:
    return " ".join((app.page.text_content("#site-message") or "").split())


# --- the maths, on the same scored films -------------------------------------------------------------------------


def synthetic(n: int, seed: int, n_patients: int, classes=(0, 1, 2)):
    """(card, scored films) as score_films gives them: logits, float32 probabilities, bands, some withheld and some
    unlike the training films, patients with several films."""
    from runtime.bands import band

    rng = np.random.default_rng(seed)
    card = {"name": "test-model", "version": "1.0", "classes": ["COVID-19", "Normal", "Pneumonia"],
            "temperature": 1.5, "default_model": MODEL,
            "files": {MODEL: {"sha256": "ab" * 32, "metrics_test": {"all": {"n": 90, "accuracy": 0.7}}}},
            "uncertainty": {"rule": {"kind": "top_probability_below", "threshold": 0.6}, "target_accuracy": 0.9,
                            "min_support": 10, "target_reached": True}}
    labels = rng.choice(list(classes), n)
    z = np.round(rng.normal(0, 2.5, (n, 3)), 3)  # rounded: some ties, for the AUCs
    z[np.arange(n), labels] += 1.5
    u = z / card["temperature"]
    p = np.exp(u - u.max(1, keepdims=True))
    p = (p / p.sum(1, keepdims=True)).astype(np.float32).astype(float)
    withheld = rng.random(n) < 0.05
    unlike = ~withheld & (rng.random(n) < 0.05)
    patients = [f"p{int(v)}" for v in rng.integers(0, n_patients, n)]
    scored = [{"file": f"f{i}.png", "label": card["classes"][labels[i]], "patient_id": patients[i],
               "logits": z[i].tolist(), "probabilities": p[i].tolist(),
               "top_class": card["classes"][int(p[i].argmax())],
               "band": band(p[i], bool(withheld[i]), card["uncertainty"], bool(unlike[i])),
               "withheld": bool(withheld[i]), "unlike_training": bool(unlike[i])} for i in range(n)]
    return card, scored


# (films, seed, patients, resamples): leave-one-patient-out; 10 folds with a temperature and the band chosen on the
# site; many patients; twelve films; one class (refused); too few films (refused).
CASES = [(15, 0, 8, 200, (0, 1, 2)), (60, 1, 45, 100, (0, 1, 2)), (120, 2, 200, 50, (0, 1, 2)),
         (12, 3, 12, 100, (0, 2)), (14, 4, 14, 50, (1,)), (9, 5, 9, 50, (0, 1, 2))]


def test_the_figures_and_the_profile_equal_python_on_the_same_scored_films(app):
    """site-validation.js against runtime/site_validation.py `summarise` on the same scored films: every figure of
    metrics.json and the profile, to 1e-6 (measured: 1e-8, the Newton fit's own tolerance)."""
    from core.jsonio import plain
    from runtime.site_validation import summarise

    open_app(app)
    for n, seed, patients, n_boot, classes in CASES:
        card, scored = synthetic(n, seed, patients, classes)
        unreadable = [{"file": "bad.png", "label": "Normal", "reason": "broken"}]
        metrics, profile = summarise(scored, unreadable, card, site=SITE, data="d", model_file=MODEL,
                                     sha256="ab" * 32, n_boot=n_boot, seed=seed % 2)
        got = app.page.evaluate("""async ([scored, unreadable, card, nBoot, seed]) => {
          const { validateSite } = await import("./app/page/site-validation.js");
          return validateSite(scored, unreadable, card, {site: "Phantom General", data: "d", modelFile: "model.onnx",
            nBoot, seed});
        }""", [scored, unreadable, card, n_boot, seed % 2])
        assert not close(got["metrics"], json.loads(json.dumps(plain(metrics)))), (n, close(got["metrics"], plain(
            metrics))[:5])
        if profile is None:
            assert got["profile"] is None and got["metrics"]["profile_refused"] == metrics["profile_refused"]
            continue
        assert not close(got["profile"], profile), (n, close(got["profile"], profile)[:5])
        # and its checksum is the one Python computes for its content
        assert got["profile"]["content_sha256"] == sign(got["profile"])["content_sha256"]


def test_numpys_generator_is_reproduced_draw_for_draw(app):
    """numpy-random.js against numpy's default_rng: the bootstrap's integers and the folds' permutation."""
    open_app(app)
    cases = [(seed, n) for seed in (0, 1, 7, 2**33 + 5) for n in (1, 2, 3, 31, 1000, 2**31 + 11)]
    got = app.page.evaluate("""async (cases) => {
      const { NumpyRandom } = await import("./app/page/numpy-random.js");
      return cases.map(([seed, n]) => {
        const rng = new NumpyRandom(seed);
        return [rng.integers(n, 7), rng.integers(n, 5), rng.permutation(Math.min(n, 60))];
      });
    }""", cases)
    for (seed, n), (first, second, permutation) in zip(cases, got):
        rng = np.random.default_rng(seed)
        assert first == rng.integers(0, n, 7).tolist() and second == rng.integers(0, n, 5).tolist(), (seed, n)
        assert permutation == rng.permutation(min(n, 60)).tolist(), (seed, n)


def test_a_csv_is_read_as_cxr_validate_reads_it(app, tmp_path):
    """site-data.js against runtime/site_data.py `read_csv` on one CSV: a byte order mark, CRLF, a quoted name with
    a comma, labels in any case, a blank line, an empty patient_id (the file stands for its patient), an extra
    column; and the same refusal for a bad row."""
    from runtime.site_data import read_csv

    classes = ["COVID-19", "Normal", "Pneumonia"]
    names = ["a.png", "b, c.png", "d.png", "e.png"]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    text = ('\ufeffpatient_id,file,label,notes\r\np1,a.png,covid-19,x\r\n\r\np1,"b, c.png", Normal ,"y, z"\r\n'
            ',d.png,PNEUMONIA,\r\np2,e.png,normal\r\n')
    (tmp_path / "labels.csv").write_text(text, encoding="utf-8", newline="")
    expected = [(Path(f.file).name, f.label, f.patient_id) for f in read_csv(tmp_path / "labels.csv", classes)]
    open_app(app)
    got = app.page.evaluate("""async ([text, names, classes]) => {
      const { filmsFromCsv } = await import("./app/page/site-data.js");
      const files = names.map((n) => new File([new Uint8Array(0)], n));
      const { films, missing } = filmsFromCsv(text, "labels.csv", files, classes);
      return [films.map((f) => [f.file.name, f.label, f.patient_id]), missing];
    }""", [text, names, classes])
    assert [tuple(f) for f in got[0]] == expected and got[1] == []
    bad = "file,label\na.png,normal\nb.png,Fracture\n,Normal\n"
    (tmp_path / "bad.csv").write_text(bad)
    with pytest.raises(ValueError) as refusal:
        read_csv(tmp_path / "bad.csv", classes)
    got = app.page.evaluate("""async ([text, classes]) => {
      const { filmsFromCsv } = await import("./app/page/site-data.js");
      try { filmsFromCsv(text, "bad.csv", [new File([], "a.png")], classes); } catch (e) { return e.message; }
    }""", [bad, classes])
    assert got == str(refusal.value).replace(str(tmp_path / "bad.csv"), "bad.csv")


# --- the view, end to end ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["csv", "folders"])
def test_labelled_films_give_the_numbers_of_cxr_validate(app, site, csv_site, folder_site, validated, form,
                                                         tmp_path):
    expected = validated[form]
    open_app(app)
    if form == "csv":
        run_validation(app, files=csv_site["files"], labels=csv_site["labels"])
    else:
        run_validation(app, folders=folder_site["folders"])
    metrics = downloaded_json(app, "#site-metrics")
    differences = close(metrics, expected["metrics"])
    assert not differences, differences[:10]
    # the files, by name (the browser knows no paths on disk); the unreadable one skipped and listed, same reason
    assert [Path(s["file"]).name for s in metrics["scored"]] == [Path(s["file"]).name
                                                                 for s in expected["metrics"]["scored"]]
    kind = lambda reason: reason.split(":")[0]  # noqa: E731
    assert [(Path(u["file"]).name, u["label"], kind(u["reason"])) for u in metrics["unreadable"]] == [
        (Path(u["file"]).name, u["label"], kind(u["reason"])) for u in expected["metrics"]["unreadable"]] != []
    report = " ".join(app.page.text_content("#site-report").split())
    for text in ("Site validation: Phantom General", "cross-validated by patient", "broken.png", "model card",
                 "Skipped: unreadable files", "Confusion matrix", "Reliability"):
        assert text in report, text
    if form == "folders":
        assert expected["profile"]["cross_validated"]["method"] == "10-fold by patient"
        assert expected["profile"]["parameters"]["fitted"]["temperature"]
    # The exported profile: what `cxr validate` wrote, to 1e-6, and Python's load_profile takes it as it is.
    download = downloaded(app, "#site-export")
    assert download.suggested_filename.endswith(".json")
    profile = json.loads(download.path().read_text())
    differences = close(profile, expected["profile"])
    assert not differences, differences[:10]
    assert list(profile) == list(expected["profile"])
    card = site["card"]
    assert load_profile(download.path(), card, card["files"][MODEL]["sha256"]) == profile
    assert not app.problems(), app.problems()


def python_results(site, files, profile_path):
    return list(predict_files([str(f) for f in files], site["export"] / MODEL, site_profile=profile_path))


def test_the_profile_calibrates_later_results_as_python_does_and_they_say_so(app, site, csv_site, validated,
                                                                            tiny_prepared, tmp_path):
    page = app.page
    open_app(app)
    run_validation(app, files=csv_site["files"], labels=csv_site["labels"])
    profile_path = tmp_path / "site-profile.json"
    profile_path.write_bytes(downloaded(app, "#site-export").path().read_bytes())
    page.click("#site-use")
    page.wait_for_selector("#site-current[data-state=in-use]", state="attached")
    images = [tiny_prepared.parent / "phantoms" / "images" / f"phantom_{i:05d}.png" for i in range(40, 46)]
    rows = app.classify(images)
    expected = python_results(site, images, profile_path)
    plain = python_results(site, images, None)
    classes = site["card"]["classes"]
    summary = expected[0]["site_profile"]["summary"]
    assert summary.startswith(f"calibrated for {SITE} (site profile of 15 films, ")
    moved = 0
    for row, want, before in zip(rows, expected, plain):
        np.testing.assert_allclose(json.loads(row["probabilities"]), list(want["probabilities"].values()),
                                   rtol=0, atol=TOLERANCE)
        assert row["topClass"] == want["top_class"] and row["class"] == (want["class"] or "")
        assert row["band"] == (want["band"] or "")
        assert row["siteProfile"] == want["site_profile"]["summary"] == summary
        np.testing.assert_allclose(json.loads(row["logits"]), want["logits"], rtol=0, atol=TOLERANCE)
        moved += max(abs(a - b) for a, b in zip(want["probabilities"].values(), before["probabilities"].values()))
    assert moved > 1e-3, "the profile changed nothing: the test would not see a wrong calibration"
    # It says so: the viewer, the table, the live region, the CSV and the report.
    calibrated = "Calibrated for " + summary[len("calibrated for "):]
    assert calibrated in page.text_content("#site-note") and page.is_visible("#site-note")
    assert page.get_attribute("#viewer", "data-site-profile") == summary
    assert calibrated in page.text_content("#result-live")
    assert page.is_visible("#results-table thead .site-cell")
    assert SITE in page.text_content("#results-table tbody tr:nth-child(1) .site-cell")
    with page.expect_download() as download:
        page.click("#download-csv")
    lines = list(csv.DictReader(io.StringIO(download.value.path().read_text(encoding="utf-8"))))
    assert [line["site_profile"] for line in lines] == [summary] * len(images)
    for line, want in zip(lines, expected):
        for c in classes:
            assert float(line[f"p_{c}"]) == pytest.approx(want["probabilities"][c], abs=1e-6)
    with page.expect_download():
        page.click("#save-report")
    assert calibrated in page.text_content("#report-body")
    # Kept on this device: a reload applies it again (checked again first).
    open_app(app)
    assert page.get_attribute("#site-current", "data-site") == SITE
    (row, *_) = app.classify(images[:1])
    assert row["siteProfile"] == summary
    # Another model file: not this profile's, so not applied, and the page says why.
    page.select_option("#model-choice", "model.int8.onnx")
    page.wait_for_selector("#site-current[data-state=refused]", state="attached")
    assert "fitted for another model" in message(app) and "sha256 differ" in message(app)
    page.wait_for_selector("#engine[data-model='model.int8.onnx']", state="attached")
    page.wait_for_selector("#results[data-state=done]", state="attached")
    assert all(r["siteProfile"] == "" for r in app.rows())
    page.select_option("#model-choice", MODEL)
    page.wait_for_selector("#site-current[data-state=in-use]", state="attached")
    # Stopped: later results are the model's as it comes again.
    page.click("#site-remove")
    page.wait_for_selector("#site-current[data-state=none]", state="attached")
    rows = app.classify(images)
    for row, before in zip(rows, plain):
        np.testing.assert_allclose(json.loads(row["probabilities"]), list(before["probabilities"].values()),
                                   rtol=0, atol=TOLERANCE)
        assert row["siteProfile"] == ""
    assert page.is_hidden("#results-table thead .site-cell")
    assert not app.problems(), app.problems()


def test_an_imported_profile_applies_as_python_applies_it(app, site, validated, tiny_prepared):
    """The profile `cxr validate` wrote, imported: the very file `cxr predict --site-profile` reads."""
    open_app(app)
    app.page.set_input_files("#site-import-input", str(validated["folders"]["profile_path"]))
    app.page.wait_for_selector("#site-current[data-state=in-use]", state="attached")
    images = [tiny_prepared.parent / "phantoms" / "images" / f"phantom_{i:05d}.png" for i in range(55, 60)]
    expected = python_results(site, images, validated["folders"]["profile_path"])
    for row, want in zip(app.classify(images), expected):
        np.testing.assert_allclose(json.loads(row["probabilities"]), list(want["probabilities"].values()),
                                   rtol=0, atol=TOLERANCE)
        assert (row["topClass"], row["band"], row["siteProfile"]) == (want["top_class"], want["band"] or "",
                                                                       want["site_profile"]["summary"])
    assert not app.problems(), app.problems()


def test_works_offline_and_no_request_leaves_the_page(app, site, csv_site, validated, tiny_prepared):
    page = app.page
    open_app(app)
    page.wait_for_selector("html[data-offline=ready]", state="attached")
    app.context.set_offline(True)
    response = page.reload()
    assert response.from_service_worker
    app.wait_ready(offline_ready=False)
    before = len(app.requests)
    run_validation(app, files=csv_site["files"], labels=csv_site["labels"])
    assert not close(downloaded_json(app, "#site-metrics"), validated["csv"]["metrics"])
    downloaded(app, "#site-export")
    page.click("#site-use")
    page.wait_for_selector("#site-current[data-state=in-use]", state="attached")
    (row,) = app.classify([tiny_prepared.parent / "phantoms" / "images" / "phantom_00050.png"])
    assert row["siteProfile"].startswith(f"calibrated for {SITE}")
    page.set_input_files("#site-import-input", str(validated["csv"]["profile_path"]))
    page.wait_for_selector("#site-current[data-state=in-use]", state="attached")
    assert [r.url for r in app.requests[before:] if not r.url.startswith(("blob:", "data:"))] == []
    assert not [p for p in app.problems() if "ERR_INTERNET_DISCONNECTED" not in p[1]], app.problems()


def test_the_view_and_calibrated_results_are_accessible_on_a_phone(browser, base_url, csv_site, tiny_prepared):
    """axe finds no serious violation in the view, its report and a calibrated result, and at 390 px nothing is
    wider than the screen but inside a scroll box that fits (tests/pwa/test_accessibility.py's checks)."""
    from tests.pwa.conftest import App
    from tests.pwa.test_accessibility import OVERFLOWING, PHONE, _axe

    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True, accept_downloads=True)
    try:
        app = App(context, base_url)
        open_app(app)
        page = app.page
        assert _axe(page) == []
        run_validation(app, files=csv_site["files"], labels=csv_site["labels"])
        assert _axe(page) == [] and page.evaluate(OVERFLOWING) == []
        page.click("#site-use")
        page.wait_for_selector("#site-current[data-state=in-use]", state="attached")
        app.classify([tiny_prepared.parent / "phantoms" / "images" / f"phantom_{i:05d}.png" for i in (40, 41)])
        assert page.is_visible("#site-note")
        assert _axe(page) == [] and page.evaluate(OVERFLOWING) == []
        assert not app.problems(), app.problems()
    finally:
        context.close()


# --- bad inputs ----------------------------------------------------------------------------------------------------


def assert_nothing_applied(app, state: str = "none"):
    assert app.page.get_attribute("#site-current", "data-state") == state
    assert app.page.is_hidden("#site-use") or not app.page.query_selector("#site-use")


def test_bad_films_are_refused_with_a_clear_message(app, site, csv_site, folder_site, tiny_prepared, tmp_path):
    from runtime.site_profile import check_site_labels

    page = app.page
    open_app(app)
    classes = site["card"]["classes"]
    # No labels: films but no CSV; then no folder at all.
    run_validation(app, files=csv_site["files"][:3], wait="refused")
    assert message(app).startswith("no labels: choose the CSV")
    assert_nothing_applied(app)
    page.check("#site-source-folders")
    run_validation(app, wait="refused")
    assert message(app).startswith("no labelled films: choose a folder")
    # A CSV without a label column: runtime/site_data.py's words.
    unlabelled = tmp_path / "unlabelled.csv"
    unlabelled.write_text("file,patient_id\nphantom_00000.png,a\n")
    run_validation(app, files=csv_site["files"][:1], labels=unlabelled, wait="refused")
    assert message(app) == ("unlabelled.csv: no label column (a labelled CSV has file,label and optionally "
                            "patient_id; it has file, patient_id)")
    # A label that is not a class of the model.
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("file,label\nphantom_00000.png,Fracture\n")
    run_validation(app, files=csv_site["files"][:1], labels=wrong, wait="refused")
    assert message(app) == (f"wrong.csv: line 2: label 'Fracture' is not a class of this model (classes: "
                            f"{', '.join(classes)})")
    # One class, and too few films: scored and reported, no profile, with `cxr validate`'s reasons.
    open_app(app)
    run_validation(app, folders=[None, folder_site["folders"][1]])
    normal = [f for f in folder_site["folders"][1].iterdir() if f.name != "broken.png"]
    with pytest.raises(ValueError) as refusal:
        check_site_labels(["Normal"] * len(normal), classes)
    assert page.text_content("#site-refused") == f"No site profile: {refusal.value}"
    assert page.is_hidden("#site-use") or not page.query_selector("#site-use")
    assert page.get_attribute("#site-report", "data-unreadable") == "1"  # the broken file: skipped and listed
    few = phantom_site(tiny_prepared, tmp_path / "few", n=8, broken=False)
    files = [Path(line.split(",")[0]) for line in few.read_text().splitlines()[1:]]
    open_app(app)
    run_validation(app, files=files, labels=few)
    with pytest.raises(ValueError) as refusal:
        check_site_labels(["x"] * 8, ["x", "y"])
    assert page.text_content("#site-refused") == f"No site profile: {refusal.value}"
    assert not page.query_selector("#site-use")
    assert_nothing_applied(app)
    # Files the CSV names that were not chosen: skipped and listed, not fatal.
    open_app(app)
    run_validation(app, files=csv_site["files"][:12], labels=csv_site["labels"])
    skipped = app.page.text_content("#site-report")
    assert "not among the chosen files" in skipped and "phantom_00014.png" in skipped
    assert not app.problems(), app.problems()


@pytest.fixture
def bad_profiles(validated, site, tmp_path) -> list[tuple[Path, str]]:
    """(a profile file load_profile refuses, the words of its refusal) for each way a profile can be wrong."""
    good = validated["csv"]["profile"]
    out = []

    def add(name, text, words):
        path = tmp_path / name
        path.write_text(text)
        out.append((path, words))

    other = copy.deepcopy(good)
    other["model"]["version"] += "-other"
    add("other-version.json", json.dumps(sign(other)), "fitted for another model")
    other = copy.deepcopy(good)
    other["model"]["sha256"] = "cd" * 32
    add("other-file.json", json.dumps(sign(other)), "sha256 differ")
    add("tampered.json", json.dumps(good).replace(f'"{SITE}"', '"Elsewhere"'), "changed after it was written")
    offsets = copy.deepcopy(good)
    offsets["parameters"]["offsets"][0] += 1
    add("edited.json", json.dumps(offsets), "changed after it was written")
    add("truncated.json", json.dumps(good)[:-20], "not a site profile: not valid JSON")
    add("not-a-profile.json", json.dumps({"name": "x"}), "not a site profile (no \"kind\"")
    missing = sign({k: v for k, v in good.items() if k != "band"})
    add("missing.json", json.dumps(missing), "malformed site profile: 'band' is a required property")
    negative = copy.deepcopy(good)
    negative["parameters"]["temperature"] = -1.0
    add("negative.json", json.dumps(sign(negative)), "(at parameters/temperature)")
    short = copy.deepcopy(good)
    short["parameters"]["offsets"] = short["parameters"]["offsets"][:2]
    add("short.json", json.dumps(sign(short)), "do not match the model's 3 classes")
    # Python refuses every one of them, with these words: the app must too.
    card = site["card"]
    for path, words in out:
        with pytest.raises(ValueError, match=None) as refusal:
            load_profile(path, card, card["files"][MODEL]["sha256"])
        assert words in str(refusal.value), (path.name, str(refusal.value))
    return out


def test_bad_profiles_are_refused_as_python_refuses_them_and_nothing_is_applied(app, site, validated,
                                                                                  bad_profiles, tiny_prepared):
    page = app.page
    open_app(app)
    image = tiny_prepared.parent / "phantoms" / "images" / "phantom_00041.png"
    for path, words in bad_profiles:
        page.set_input_files("#site-import-input", str(path))
        page.wait_for_selector("#site[data-state=refused]", state="attached")
        assert message(app).startswith(f"{path.name}: ") and words in message(app), (path.name, message(app))
        assert "Nothing was applied" in message(app)
        assert_nothing_applied(app)
        page.eval_on_selector("#site", "e => { e.dataset.state = 'idle'; }")
    (row,) = app.classify([image])
    assert row["siteProfile"] == ""
    # With a profile in use, a refused import leaves it in use: nothing lost.
    page.set_input_files("#site-import-input", str(validated["csv"]["profile_path"]))
    page.wait_for_selector("#site-current[data-state=in-use]", state="attached")
    page.set_input_files("#site-import-input", str(bad_profiles[0][0]))
    page.wait_for_selector("#site[data-state=refused]", state="attached")
    assert "the site profile in use is unchanged" in message(app)
    assert page.get_attribute("#site-current", "data-state") == "in-use"
    (row,) = app.classify([image])
    assert row["siteProfile"].startswith(f"calibrated for {SITE}")
    # A profile stored on this device and damaged there is checked again at start, and not applied.
    page.evaluate("""() => localStorage.setItem("cxr-triage/site-profile",
      localStorage.getItem("cxr-triage/site-profile").replace("Phantom General", "Elsewhere"))""")
    open_app(app)
    assert page.get_attribute("#site-current", "data-state") == "refused"
    assert "changed after it was written" in message(app) and "It is not applied" in message(app)
    (row,) = app.classify([image])
    assert row["siteProfile"] == ""
    assert not app.problems(), app.problems()
