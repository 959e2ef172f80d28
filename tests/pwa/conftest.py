"""Browser tests: build dist/ once per session from the tiny export, serve it on 127.0.0.1, drive Debian's chromium
with Playwright for Python. Every test gets a fresh browser context (empty caches, no service worker), so each one
is a first visit unless it says otherwise.

Waits use CSS selectors, never JavaScript predicates: Playwright evaluates predicate strings with eval, which the
app's Content-Security-Policy forbids (and should).
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO, SHARED_CXR, chromium_path
from tests.corpus import make_dicom

# Before Playwright's driver starts: report the service worker's own requests too (the privacy test needs them).
os.environ.setdefault("PW_EXPERIMENTAL_SERVICE_WORKER_NETWORK_EVENTS", "1")

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
NODE_MODULES = REPO / "node_modules"
READY = "#status[data-state=ready]"
OFFLINE_READY = "html[data-offline=ready]"
TIMEOUT_MS = 60_000


def pytest_collection_modifyitems(items):
    # The update test rebuilds a site and trains a second model: run it last, after the cheap checks.
    items.sort(key=lambda item: "browser/test_update" in item.nodeid)


@pytest.fixture(scope="session")
def node_modules() -> Path:
    if not (NODE_MODULES / "onnxruntime-web" / "dist" / "ort.wasm.min.mjs").is_file():
        pytest.skip(f"{NODE_MODULES} has no onnxruntime-web: run `npm ci` (or `make setup`)")
    return NODE_MODULES


@pytest.fixture(scope="session")
def site(tiny_export, tiny_prepared, node_modules, tmp_path_factory) -> dict:
    """The PWA built from the tiny export (with an int8 file, tests.conftest.with_int8): build_site's answer plus
    "dist", "card" and "model_path"."""
    from pwa.site import build_site
    from tests.conftest import with_int8

    tiny_export = with_int8(tiny_export, tiny_prepared, tmp_path_factory.mktemp("site_export") / "export")
    dist = tmp_path_factory.mktemp("site") / "dist"
    info = build_site(tiny_export, dist, node_modules)
    card = json.loads((tiny_export / "model.json").read_text())
    return {**info, "dist": dist, "card": card, "export": tiny_export,
            "model_path": tiny_export / card["default_model"]}


class Served:
    """A running make_server() on a thread."""

    def __init__(self, dist: Path):
        from pwa.serve import make_server

        self.server = make_server(dist)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="session")
def served(site):
    served = Served(site["dist"])
    yield served
    served.close()


@pytest.fixture(scope="session")
def base_url(served) -> str:
    return served.url


@pytest.fixture(scope="session")
def playwright():
    path = chromium_path()
    if not path:
        pytest.skip("no chromium on PATH (or CHROMIUM): install Debian's chromium (`sudo apt-get install chromium`)")
    playwright_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed")
    sync_playwright = playwright_api.sync_playwright

    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="session")
def browser(playwright):
    browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
    yield browser
    browser.close()


class App:
    """One page of the app, with everything it logged and every request it (or its workers) made."""

    def __init__(self, context, base_url: str):
        self.context = context
        self.base_url = base_url
        self.console: list[tuple[str, str]] = []
        self.requests: list = []
        context.on("request", lambda request: self.requests.append(request))
        self.page = context.new_page()
        self.page.set_default_timeout(TIMEOUT_MS)
        self.page.on("console", lambda m: self.console.append((m.type, m.text)))
        self.page.on("pageerror", lambda e: self.console.append(("pageerror", str(e))))

    def open(self, query: str = "", offline_ready: bool = True):
        response = self.page.goto(self.base_url + query)
        self.wait_ready(offline_ready)
        return response

    def wait_ready(self, offline_ready: bool = True):
        self.page.wait_for_selector(READY, state="attached")
        if offline_ready:
            self.page.wait_for_selector(OFFLINE_READY, state="attached")

    def classify(self, files) -> list[dict]:
        """Open `files` with the file input; wait for the batch; the rows' data-* attributes, in order."""
        self.page.set_input_files("#file-input", [str(f) for f in files])
        self.page.wait_for_selector(f"#results[data-state=done] #results-table tbody tr:nth-child({len(files)})",
                                    state="attached")
        return self.rows()

    def rows(self) -> list[dict]:
        return self.page.eval_on_selector_all("#results-table tbody tr", "rows => rows.map(r => ({...r.dataset}))")

    def engine(self) -> dict:
        return self.page.eval_on_selector("#engine", "e => ({...e.dataset})")

    def problems(self) -> list[tuple[str, str]]:
        return [(kind, text) for kind, text in self.console if kind in ("error", "warning", "pageerror")]


@pytest.fixture
def context(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    yield context
    context.close()


@pytest.fixture
def app(context, base_url) -> App:
    return App(context, base_url)


def phantom_image(label: str, size: int, seed: int) -> np.ndarray:
    from training.data.phantoms import phantom

    return phantom(np.random.default_rng(seed), label, size)[0]


# The parity files: the same PNG, JPEG and DICOM decoded and classified in Python and in the browser.
@pytest.fixture(scope="module")
def parity_files(tmp_path_factory) -> list:
    folder = tmp_path_factory.mktemp("parity")
    files = []
    # A PNG: a real radiograph from the shared set when there is one, else a phantom.
    pngs = sorted((SHARED_CXR / "images").glob("*.png")) if (SHARED_CXR / "manifest.csv").exists() else []
    if pngs:
        files.append(pngs[0])
    else:
        files.append(folder / "phantom.png")
        Image.fromarray(phantom_image("Pneumonia", 256, 1)).save(files[-1])
    # A non-square RGB JPEG (the gray formula and the browser's JPEG decoder).
    gray = Image.fromarray(phantom_image("COVID-19", 256, 2)).resize((300, 220), Image.Resampling.BILINEAR)
    tint = Image.merge("RGB", [gray, gray.point(lambda v: int(v * 0.9)), gray.point(lambda v: int(v * 0.8))])
    files.append(folder / "wide.jpg")
    tint.save(files[-1], "JPEG", quality=90)
    # A 16-bit MONOCHROME1 DICOM with rescale slope/intercept and a window (12 bits stored).
    stored = (4095 - phantom_image("Normal", 200, 3).astype(np.uint16) * 16).astype(np.uint16)
    files.append(folder / "mono1_16bit.dcm")
    files[-1].write_bytes(make_dicom(stored, photometric="MONOCHROME1", BitsStored=12, HighBit=11, RescaleSlope=2,
                                     RescaleIntercept=-1024, WindowCenter=3000, WindowWidth=5000))
    return files
