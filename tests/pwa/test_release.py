"""The site of the released model: the browser gives the Python predictor's answers on the same files, and a first
visit (everything needed to work offline afterwards) downloads at most 25 MB."""

from __future__ import annotations

import json

import pytest

from runtime.paths import RELEASE_DIR
from tests.conftest import SHARED_CXR
from tests.pwa.test_parity import REAL_DICOM, _check

pytestmark = [pytest.mark.browser, pytest.mark.slow]

FIRST_VISIT_LIMIT = 25_000_000


@pytest.fixture(scope="module")
def release_site(node_modules, tmp_path_factory):
    from pwa.site import build_site
    from tests.pwa.conftest import Served

    dist = tmp_path_factory.mktemp("release") / "dist"
    info = build_site(RELEASE_DIR, dist, node_modules)
    served = Served(dist)
    yield {**info, "url": served.url, "card": json.loads((RELEASE_DIR / "model.json").read_text())}
    served.close()


def test_first_visit_downloads_at_most_25_mb(browser, release_site):
    from tests.pwa.conftest import App

    context = browser.new_context()
    try:
        app = App(context, release_site["url"])
        app.open()  # waits until the service worker reports that everything is stored for offline use
        network = [r for r in app.requests if r.response() is not None and not r.response().from_service_worker]
        downloaded = sum(r.sizes()["responseBodySize"] for r in network)
        print(f"\nfirst visit of the released model's site: {downloaded / 1e6:.1f} MB in {len(network)} responses "
              f"(site {release_site['bytes'] / 1e6:.1f} MB; default model {release_site['card']['default_model']})")
        assert downloaded <= FIRST_VISIT_LIMIT
        app.context.set_offline(True)  # and that was enough to work offline
        app.page.reload()
        app.wait_ready(offline_ready=False)
    finally:
        context.close()


def test_browser_matches_python_on_the_released_model(browser, release_site, parity_files):
    from tests.pwa.conftest import App

    card = release_site["card"]
    files = [*parity_files, *([SHARED_CXR / REAL_DICOM] if (SHARED_CXR / REAL_DICOM).exists() else [])]
    context = browser.new_context()
    try:
        for name in card["files"]:
            app = App(context, release_site["url"])
            app.open(f"?model={name}")
            rows = app.classify(files)
            _check(rows, files, RELEASE_DIR / name, card, {})
            assert not app.problems(), app.problems()
            app.page.close()
    finally:
        context.close()


def test_browser_says_what_the_cli_says_for_each_kind(browser, release_site, gate_kind_files):
    """One file of each kind the gate tells apart (films, transformed films, lateral, CT, a photograph): the app's
    class, reason and warnings are the CLI's."""
    from runtime.predictor import predict_files
    from tests.gate_kinds import check_expected
    from tests.pwa.conftest import App

    if "gate" not in release_site["card"]:
        pytest.skip("the release has no chest gate")
    files = list(gate_kind_files.values())
    cli = dict(zip(gate_kind_files, predict_files([str(p) for p in files], RELEASE_DIR / "model.onnx")))
    check_expected(cli)
    context = browser.new_context()
    try:
        app = App(context, release_site["url"])
        app.open()
        for kind, row in zip(gate_kind_files, app.classify(files)):
            expected = cli[kind]
            assert row["class"] == (expected["class"] or ""), kind
            assert row["withheld"] == expected.get("class_withheld", ""), kind
            assert row["gateReason"] == (expected["gate_reason"] or ""), kind
            assert row["unlike"] == str(expected["unlike_training"]).lower(), kind
            assert row["band"] == (expected["band"] or ""), kind
        assert not app.problems(), app.problems()
    finally:
        context.close()


def test_model_card_shows_the_unseen_source_scores(browser, release_site):
    from tests.pwa.conftest import App

    external = release_site["card"].get("external")
    if not external:
        pytest.skip("the release has no unseen-source scores")
    context = browser.new_context()
    try:
        app = App(context, release_site["url"])
        app.open()
        app.page.click("#model-card summary")
        text = app.page.text_content("#unseen-sources")
        for group in external["groups"].values():
            assert f"{group['source']}: {group['label']}" in text
            assert f"{group['images']} ({group['patients']})" in text
        assert external["summary"][0] in text
        assert "never used in training" in app.page.text_content("#model-card-body")
        assert not app.problems(), app.problems()
    finally:
        context.close()
