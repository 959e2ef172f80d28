"""The app in headless chromium vs native onnxruntime, on the same model files and the same image, in one run.

- Latency of one classification (decode + inference + heatmap) in the browser, int8 and fp32, 1 and 2 threads
  (median over a batch of repeated files, after warm-up), against native Python: decode + onnxruntime + heatmap
  overlay, same threads; the ratio browser / native.
- Time to first prediction: first visit (empty browser), warm visit (reload), offline visit (network off).
- Bytes the browser downloads on the first visit (what offline use costs).
- Lighthouse 12.2.3 category scores (node_modules/.bin/lighthouse).

python -m bench.browser --model DIR    (an export folder; default work/model from `cxr build`)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from .common import DEFAULT_MODEL, REPO, SHARED_CXR, machine, print_table, save

os.environ.setdefault("PW_EXPERIMENTAL_SERVICE_WORKER_NETWORK_EVENTS", "1")

REPEATS = 12


def test_image(folder: Path) -> Path:
    """The real 1024x1024 JPEG DICOM when present, else a 1024x1024 phantom PNG."""
    dicom = SHARED_CXR / "dicom" / "c64d5667-a776-4f95-9e21-bfabafb07740.dcm"
    if dicom.exists():
        return dicom
    from PIL import Image

    from training.data.phantoms import phantom

    path = folder / "phantom1024.png"
    Image.fromarray(phantom(np.random.default_rng(0), "Pneumonia", 1024)[0]).save(path)
    return path


def native_ms(model: Path, image: Path, threads: int, runs: int = 20) -> float:
    from core.decode import decode
    from core.heatmap import overlay

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])

    def once():
        gray = decode(image)
        out = session.run(None, {"image": gray[None, None]})
        overlay(gray, out[2][0, int(out[0][0].argmax())])

    for _ in range(3):
        once()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        once()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def browser_runs(browser, url: str, image: Path, card: dict) -> list[dict]:
    from tests.pwa.conftest import App

    rows = []
    for name in card["files"]:
        for threads in (1, 2):
            context = browser.new_context()
            app = App(context, url)
            app.open(f"?model={name}&threads={threads}")
            app.classify([image, image])  # warm-up: session creation, first-run allocations
            results = app.classify([image] * REPEATS)
            engine = app.engine()
            context.close()
            rows.append({"file": name, "threads": int(engine.get("threads", threads)),
                         "total_ms": statistics.median(float(r["totalMs"]) for r in results),
                         "inference_ms": statistics.median(float(r["inferenceMs"]) for r in results),
                         "decode_ms": statistics.median(float(r["decodeMs"]) for r in results)})
    return rows


def first_prediction(browser, url: str, image: Path) -> dict:
    """Seconds from navigation to the first result, and the bytes the first visit downloaded."""
    from tests.pwa.conftest import App

    context = browser.new_context()
    sizes = []
    context.on("requestfinished", lambda request: sizes.append(request.sizes()["responseBodySize"]))
    app = App(context, url)

    def timed(action) -> float:
        started = time.perf_counter()
        action()
        app.wait_ready(offline_ready=False)
        app.classify([image])
        return time.perf_counter() - started

    result = {"first_visit_s": timed(lambda: app.page.goto(url))}
    app.wait_ready(offline_ready=True)
    result["first_visit_bytes"] = int(sum(sizes))
    result["warm_visit_s"] = timed(lambda: app.page.reload())
    context.set_offline(True)
    result["offline_visit_s"] = timed(lambda: app.page.reload())
    context.close()
    return result


LIGHTHOUSE_CATEGORIES = ("performance", "accessibility", "best-practices", "seo")
PHONE = {"width": 390, "height": 844, "deviceScaleFactor": 3}


def lighthouse(url: str, chromium: str, categories=LIGHTHOUSE_CATEGORIES, phone: bool = False) -> dict | None:
    """Lighthouse category scores (0-100) for `url`: desktop, or a 390x844 phone screen; None when it cannot run.
    tests/pwa/test_accessibility.py uses it too."""
    binary = REPO / "node_modules" / ".bin" / "lighthouse"
    if not binary.exists():
        print("note: node_modules/.bin/lighthouse missing (npm ci); skipping Lighthouse")
        return None
    from tests.pwa.conftest import CHROMIUM_ARGS

    screen = (["--form-factor=mobile", "--screenEmulation.mobile"]
              + [f"--screenEmulation.{key}={value}" for key, value in PHONE.items()] if phone
              else ["--form-factor=desktop", "--screenEmulation.disabled"])
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        result = subprocess.run(
            [str(binary), url, "--output=json", f"--output-path={report}", "--quiet", f"--chrome-path={chromium}",
             f"--chrome-flags={' '.join(CHROMIUM_ARGS)}", f"--only-categories={','.join(categories)}", *screen,
             "--throttling-method=provided"],
            capture_output=True, text=True, timeout=300)
        if result.returncode != 0 or not report.exists():
            print(f"note: Lighthouse failed: {result.stderr[-500:]}")
            return None
        categories = json.loads(report.read_text())["categories"]
    return {name: round(100 * c["score"]) for name, c in categories.items() if c.get("score") is not None}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    args = parser.parse_args(argv)
    if not (args.model / "model.json").exists():
        raise SystemExit(f"{args.model / 'model.json'} not found: run `cxr build` first, or pass --model")
    chromium = os.environ.get("CHROMIUM") or shutil.which("chromium")
    if not chromium:
        raise SystemExit("no chromium on PATH (sudo apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    from pwa.site import build_site
    from tests.pwa.conftest import CHROMIUM_ARGS, Served

    card = json.loads((args.model / "model.json").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        site = build_site(args.model, Path(tmp) / "dist", REPO / "node_modules")
        image = test_image(Path(tmp))
        served = Served(Path(tmp) / "dist")
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
                latency = browser_runs(browser, served.url, image, card)
                visits = first_prediction(browser, served.url, image)
                browser.close()
            scores = lighthouse(served.url, chromium)
        finally:
            served.close()
        for row in latency:
            row["native_ms"] = native_ms(args.model / row["file"], image, row["threads"])
            row["ratio"] = row["total_ms"] / row["native_ms"]

    print(f"{card['arch']} on {image.name}; headless chromium vs native onnxruntime {ort.__version__} ({machine()})")
    print_table(["model", "threads", "browser ms (decode/infer)", "native ms", "browser/native"],
                [[r["file"], r["threads"], f"{r['total_ms']:.0f} ({r['decode_ms']:.0f}/{r['inference_ms']:.0f})",
                  f"{r['native_ms']:.0f}", f"{r['ratio']:.2f}x"] for r in latency])
    print(f"time to first prediction: first visit {visits['first_visit_s']:.1f} s, "
          f"warm {visits['warm_visit_s']:.1f} s, offline {visits['offline_visit_s']:.1f} s; "
          f"first visit downloaded {visits['first_visit_bytes'] / 1e6:.1f} MB "
          f"(site: {site['bytes'] / 1e6:.1f} MB)")
    if scores:
        print("Lighthouse: " + ", ".join(f"{k} {v}" for k, v in scores.items()))
    save("browser", {"model": str(args.model), "arch": card["arch"], "image": image.name, "latency": latency,
                     "visits": visits, "site_bytes": site["bytes"], "lighthouse": scores})


if __name__ == "__main__":
    main()
