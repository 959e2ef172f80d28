"""axe-core finds no serious or critical violations; the app works with the keyboard and at phone width."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.pwa.conftest import NODE_MODULES

pytestmark = pytest.mark.browser

AXE = NODE_MODULES / "axe-core" / "axe.min.js"


@pytest.fixture(scope="module")
def xrays(tmp_path_factory):
    from training.data.phantoms import phantom

    folder = tmp_path_factory.mktemp("a11y")
    paths = []
    for i, label in enumerate(["Pneumonia", "Normal"]):
        paths.append(folder / f"{label}.png")
        Image.fromarray(phantom(np.random.default_rng(20 + i), label, 128)[0]).save(paths[-1])
    return paths


def _axe(page) -> list[dict]:
    if not AXE.is_file():
        pytest.skip(f"{AXE} not found: run `npm ci`")
    # Evaluated through the DevTools protocol, which the page's CSP does not govern: no bypass_csp needed.
    page.evaluate(AXE.read_text() + "\n;0")
    results = page.evaluate("""async () => {
      const r = await axe.run(document, { resultTypes: ["violations"] });
      return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help,
                                         nodes: v.nodes.map((n) => n.target.join(" ")) }));
    }""")
    return [v for v in results if v["impact"] in ("serious", "critical")]


def test_axe_reports_no_serious_violations(app, xrays):
    app.open()
    assert _axe(app.page) == []
    app.classify(xrays)  # with the table, the viewer and the open model card too
    app.page.click("#model-card summary")
    assert _axe(app.page) == []


def test_keyboard_opens_the_file_chooser_and_focus_is_visible(app):
    app.open()
    page = app.page
    # Wait for the chooser from the start: Playwright intercepts file choosers only once someone listens.
    with page.expect_file_chooser(timeout=20_000) as chooser:
        for _ in range(10):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.id") == "choose-files":
                break
        else:
            pytest.fail("Tab never reached the 'Choose files' button")
        outline = page.eval_on_selector("#choose-files", "e => getComputedStyle(e).outlineStyle")
        assert outline != "none"
        page.keyboard.press("Enter")
    assert chooser.value.is_multiple()
    # Every control has an accessible name.
    unnamed = page.evaluate("""() => [...document.querySelectorAll("button, select, input:not([hidden])")]
      .filter((e) => e.offsetParent !== null && !(e.labels?.length || e.getAttribute("aria-label") || e.textContent.trim()))
      .map((e) => e.id || e.outerHTML)""")
    assert unnamed == []


def test_usable_at_phone_width(browser, base_url, xrays):
    from tests.pwa.conftest import App

    context = browser.new_context(viewport={"width": 360, "height": 740}, is_mobile=True, has_touch=True)
    try:
        app = App(context, base_url)
        app.open()
        assert app.page.is_visible("#take-photo")  # the camera input's button shows on touch screens
        capture = app.page.get_attribute("#camera-input", "capture")
        assert capture == "environment"
        app.classify(xrays)
        app.page.click("#model-card summary")
        overflow = app.page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"the page scrolls sideways by {overflow} px at 360 px"
        box = app.page.locator("#image-canvas").bounding_box()
        assert box["width"] <= 360
    finally:
        context.close()
