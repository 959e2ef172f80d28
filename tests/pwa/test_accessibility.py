"""axe-core finds no serious or critical violations (desktop and a 390x844 phone, with results, a withheld
non-X-ray and the report); Lighthouse scores accessibility and best practices 100; the app works with the keyboard;
at phone width nothing is wider than the screen except inside a scroll box that fits on it."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.conftest import chromium_path
from tests.pwa.conftest import NODE_MODULES

pytestmark = pytest.mark.browser

AXE = NODE_MODULES / "axe-core" / "axe.min.js"
PHONE = {"width": 390, "height": 844}
LONG_NAME = "Pneumonia_follow_up_frontal_view_patient_0042_series_7_image_3.png"

# Elements whose box reaches past the viewport's sides, unless inside a horizontal scroll container that itself
# fits (a table that scrolls in its own box is fine; a page that scrolls sideways is not).
OVERFLOWING = """() => {
  const width = document.documentElement.clientWidth;
  const fits = (r) => r.left >= -0.5 && r.right <= width + 0.5;
  const out = [];
  for (const e of document.querySelectorAll("body *")) {
    const r = e.getBoundingClientRect();
    if (!r.width || !r.height || fits(r)) continue;
    let box = e.parentElement;
    while (box && !["auto", "scroll"].includes(getComputedStyle(box).overflowX)) box = box.parentElement;
    if (box && box.getBoundingClientRect().width > 0 && fits(box.getBoundingClientRect())) continue;
    const name = `${e.tagName.toLowerCase()}${e.id ? "#" + e.id : ""}.${e.className}`;
    out.push(`${name}: ${Math.round(r.left)}..${Math.round(r.right)}`);
  }
  return out;
}"""


@pytest.fixture(scope="module")
def xrays(tmp_path_factory):
    from training.data.phantoms import phantom

    folder = tmp_path_factory.mktemp("a11y")
    paths = []
    for i, (label, name) in enumerate([("Pneumonia", LONG_NAME), ("Normal", "Normal.png")]):
        paths.append(folder / name)
        Image.fromarray(phantom(np.random.default_rng(20 + i), label, 128)[0]).save(paths[-1])
    return paths


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    import skimage.data

    path = tmp_path_factory.mktemp("a11y_photo") / "cat.png"
    Image.fromarray(skimage.data.chelsea()).save(path)
    return path


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


def _axe_in_every_state(app, xrays, photo):
    page = app.page
    assert _axe(page) == []
    app.classify([*xrays, photo])  # with the table, the viewer and the open model card too
    page.click("#model-card summary")
    assert _axe(page) == []
    page.click("#results-table tbody tr:nth-child(3) button")  # a withheld non-X-ray (the tiny model flags it)
    page.wait_for_selector("#viewer[data-file='cat.png']")
    assert _axe(page) == []
    if page.is_visible("#reveal"):
        page.click("#reveal")
        assert _axe(page) == []
    with page.expect_download():
        page.click("#save-report")
    assert _axe(page) == []


def test_axe_reports_no_serious_violations(app, xrays, photo):
    app.open()
    _axe_in_every_state(app, xrays, photo)


def test_axe_reports_no_serious_violations_on_a_phone(browser, base_url, xrays, photo):
    from tests.pwa.conftest import App

    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True, accept_downloads=True)
    try:
        app = App(context, base_url)
        app.open(offline_ready=False)
        _axe_in_every_state(app, xrays, photo)
    finally:
        context.close()


@pytest.mark.parametrize("phone", [False, True], ids=["desktop", "phone"])
def test_lighthouse_accessibility_and_best_practices_are_100(served, phone):
    from bench.browser import lighthouse

    if not (NODE_MODULES / ".bin" / "lighthouse").exists():
        pytest.skip("node_modules/.bin/lighthouse not found: run `npm ci`")
    scores = lighthouse(served.url, chromium_path(), categories=("accessibility", "best-practices"), phone=phone)
    assert scores == {"accessibility": 100, "best-practices": 100}


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
      .filter((e) => e.offsetParent !== null
        && !(e.labels?.length || e.getAttribute("aria-label") || e.textContent.trim()))
      .map((e) => e.id || e.outerHTML)""")
    assert unnamed == []


@pytest.mark.parametrize("viewport", [PHONE, {"width": 360, "height": 740}], ids=["390x844", "360x740"])
def test_usable_at_phone_width(browser, base_url, xrays, viewport):
    from tests.pwa.conftest import App

    context = browser.new_context(viewport=viewport, is_mobile=True, has_touch=True)
    try:
        app = App(context, base_url)
        app.open(offline_ready=False)
        page = app.page
        assert page.is_visible("#take-photo")  # the camera input's button shows on touch screens
        capture = page.get_attribute("#camera-input", "capture")
        assert capture == "environment"
        app.classify(xrays)
        page.click("#model-card summary")
        assert page.evaluate(OVERFLOWING) == []
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"the page scrolls sideways by {overflow} px"
        box = page.locator("#image-canvas").bounding_box()
        assert box["width"] <= viewport["width"]
        # The results table scrolls in its own box, and says so; the long file name is one line, cut with an
        # ellipsis, and whole in its title.
        scroller = "#results .table-scroll"
        assert page.eval_on_selector(scroller, "e => e.scrollWidth > e.clientWidth")
        assert page.is_visible("#results .scroll-hint")
        name = page.locator("#results-table tbody tr:nth-child(1) th.file-name")
        assert name.get_attribute("title") == LONG_NAME
        assert name.evaluate("""th => { const s = th.querySelector(".truncate"), style = getComputedStyle(s);
          return style.textOverflow === "ellipsis" && style.whiteSpace === "nowrap"
            && s.scrollWidth > s.clientWidth; }""")
        line = float(name.evaluate("th => parseFloat(getComputedStyle(th).lineHeight) || 20"))
        assert name.locator(".truncate").bounding_box()["height"] < 1.5 * line  # one line of text, not five
    finally:
        context.close()
