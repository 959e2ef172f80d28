"""The web app manifest, icons and service worker meet Chromium's installability criteria."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

pytestmark = pytest.mark.browser


def test_manifest_and_icons(site):
    dist = site["dist"]
    manifest = json.loads((dist / "manifest.webmanifest").read_text())
    for key in ("name", "short_name", "description", "start_url", "scope", "display", "theme_color",
                "background_color", "icons"):
        assert manifest.get(key), key
    assert manifest["display"] == "standalone"
    sizes = {}
    for icon in manifest["icons"]:
        image = Image.open(io.BytesIO((dist / icon["src"]).read_bytes()))
        assert image.format == "PNG"
        assert f"{image.width}x{image.height}" == icon["sizes"], icon
        sizes.setdefault(icon.get("purpose", "any"), set()).add(image.width)
    assert {192, 512} <= sizes["any"]
    assert 512 in sizes["maskable"]


def test_installable_in_chromium(playwright, base_url, tmp_path):
    """Chromium's own verdict (DevTools Page.getInstallabilityErrors). Playwright's ordinary contexts are
    incognito, which is never installable, so this one runs in a persistent profile."""
    from tests.conftest import chromium_path
    from tests.pwa.conftest import CHROMIUM_ARGS, App

    context = playwright.chromium.launch_persistent_context(tmp_path / "profile", executable_path=chromium_path(),
                                                            args=CHROMIUM_ARGS)
    try:
        app = App(context, base_url)
        app.open()
        page = app.page
        assert page.evaluate("navigator.serviceWorker.controller !== null")
        href = page.get_attribute("link[rel=manifest]", "href")
        content_type = page.evaluate("async (href) => (await fetch(href)).headers.get('content-type')", href)
        assert content_type.startswith("application/manifest+json")
        cdp = context.new_cdp_session(page)
        manifest = cdp.send("Page.getAppManifest")
        assert not manifest.get("errors"), manifest.get("errors")
        assert cdp.send("Page.getInstallabilityErrors")["installabilityErrors"] == []
        # The service worker has a fetch handler: it serves the page itself.
        assert page.reload().from_service_worker
    finally:
        context.close()
