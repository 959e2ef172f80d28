"""A new build is picked up on the next visit: the new service worker installs, deletes the old cache, takes
over, and the page says "Updated to version X" with the new model live."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from tests.conftest import make_tiny_export

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_new_build_replaces_the_old_one(app, site, tiny_prepared, node_modules, tmp_path, context):
    from pwa.site import build_site
    from tests.pwa.conftest import App, Served

    second = make_tiny_export(tiny_prepared, tmp_path / "second", seed=1, epochs=2)
    new_card = json.loads((second / "model.json").read_text())
    assert new_card["version"] != site["card"]["version"], "the second model must have another version"

    dist = tmp_path / "dist"
    shutil.copytree(site["dist"], dist)
    served = Served(dist)  # its own origin, so no other test's service worker or cache is involved
    try:
        app = App(context, served.url)
        app.open()
        assert app.engine()["version"] == site["card"]["version"]
        assert app.page.evaluate("caches.keys()") == [site["cache"]]
        assert app.page.is_hidden("#update-notice")

        info = build_site(second, dist, node_modules)
        assert info["cache"] != site["cache"]
        before = len(app.requests)
        app.page.reload()  # the visit that finds the new sw.js; the page then reloads into the new build
        app.page.wait_for_selector(f"#update-notice[data-version='{new_card['version']}']", state="visible")
        app.wait_ready()
        assert "Updated to version" in app.page.text_content("#update-notice")
        assert app.engine()["version"] == new_card["version"]
        assert app.engine()["build"] == info["build_hash"]
        assert app.page.evaluate("caches.keys()") == [info["cache"]]
        # The new service worker downloaded what changed (the model) and copied what did not (the wasm binary).
        downloaded = {r.url[len(served.url):] for r in app.requests[before:] if r.service_worker is not None}
        assert f"model/{new_card['default_model']}" in downloaded
        assert "vendor/ort/ort-wasm-simd-threaded.wasm.gzip" not in downloaded
        # The new model answers.
        image = tmp_path / "x.png"
        Image.fromarray((np.random.default_rng(0).random((64, 64)) * 255).astype(np.uint8)).save(image)
        (row,) = app.classify([image])
        assert row["status"] == "done"
        assert not app.problems(), app.problems()
    finally:
        served.close()
