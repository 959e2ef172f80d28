"""REST API throughput: requests/s and p50/p99 latency at concurrency 1, 4 and 16 over HTTP (`cxr api` in its own
process, keep-alive clients in this one), against direct in-process calls of the same Predictor on the same bytes
(decode + inference, what the server does per request) in the same run. One real 1024x1024 DICOM by default.

python -m bench.api_throughput --model DIR   (an export folder; default: the model `cxr build` writes)
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .common import REPO, SHARED_CXR, machine, print_table, save

DICOM = SHARED_CXR / "dicom" / "c64d5667-a776-4f95-9e21-bfabafb07740.dcm"


def load(call, concurrency: int, requests: int) -> dict:
    """`requests` calls of `call()` from `concurrency` threads: throughput and latency percentiles."""
    latencies, lock, remaining = [], threading.Lock(), [requests]

    def worker():
        while True:
            with lock:
                if remaining[0] == 0:
                    return
                remaining[0] -= 1
            started = time.perf_counter()
            call()
            elapsed = (time.perf_counter() - started) * 1000
            with lock:
                latencies.append(elapsed)

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        for future in [pool.submit(worker) for _ in range(concurrency)]:
            future.result()
    wall = time.perf_counter() - started
    return {"requests_per_s": requests / wall, "p50_ms": float(np.percentile(latencies, 50)),
            "p99_ms": float(np.percentile(latencies, 99))}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: Path, queue: int) -> tuple[subprocess.Popen, str]:
    import httpx

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "cxr", "api", "--model", str(model), "--port", str(port),
                               "--queue", str(queue), "--log-level", "warning"], cwd=REPO,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and server.poll() is None:
        try:
            if httpx.get(f"{url}/readyz").status_code == 200:
                return server, url
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    server.kill()
    raise SystemExit("the API server did not become ready")


def main(argv=None):
    import httpx

    from api.settings import Settings
    from runtime.predictor import Predictor

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=REPO / "work" / "model")
    parser.add_argument("--image", type=Path, help="the file sent (default: a real 1024x1024 DICOM of the shared set)")
    parser.add_argument("--requests", type=int, default=100, help="per concurrency level and path")
    parser.add_argument("--levels", default="1,4,16")
    args = parser.parse_args(argv)
    if not (args.model / "model.json").exists():
        raise SystemExit(f"{args.model / 'model.json'} not found: run `cxr build` (or `cxr export`) first, or "
                         "pass --model")
    image = args.image or DICOM
    if not image.exists():
        raise SystemExit(f"{image} not found: pass --image FILE (a PNG, JPEG or DICOM)")
    data = image.read_bytes()
    levels = [int(x) for x in args.levels.split(",")]
    settings = Settings(model=args.model)  # the server's defaults: the same session options on both paths
    predictor = Predictor(settings.model_file(), settings.session_threads)
    predictor.predict_file(data)
    server, url = start_server(args.model, queue=2 * max(levels))  # deep enough that nothing is refused here
    results, rows = [], []
    try:
        clients = threading.local()

        def over_http():
            if not hasattr(clients, "client"):
                clients.client = httpx.Client(timeout=60)  # one keep-alive connection per client thread
            response = clients.client.post(f"{url}/v1/predict", content=data)
            if response.status_code != 200:
                raise RuntimeError(f"HTTP {response.status_code}: {response.text}")

        for concurrency in levels:
            load(lambda: predictor.predict_file(data), concurrency, max(4, concurrency))  # warm-up
            direct = load(lambda: predictor.predict_file(data), concurrency, args.requests)
            load(over_http, concurrency, max(4, concurrency))
            http = load(over_http, concurrency, args.requests)
            ratio = http["requests_per_s"] / direct["requests_per_s"]
            results.append({"concurrency": concurrency, "direct": direct, "http": http, "ratio": ratio})
            rows.append([concurrency, f"{direct['requests_per_s']:.1f}", f"{direct['p50_ms']:.1f}",
                         f"{direct['p99_ms']:.1f}", f"{http['requests_per_s']:.1f}", f"{http['p50_ms']:.1f}",
                         f"{http['p99_ms']:.1f}", f"{ratio:.2f}"])
    finally:
        server.terminate()
        server.wait(30)
    print(f"{predictor.card['arch']} {settings.model_file().name}, {image.name}, {args.requests} requests per "
          f"level, server: 1 worker x {settings.pool_size} threads ({machine()})")
    print_table(["concurrency", "direct req/s", "p50 ms", "p99 ms", "HTTP req/s", "p50 ms", "p99 ms", "HTTP/direct"],
                rows)
    save("api_throughput", {"model": str(args.model), "arch": predictor.card["arch"],
                            "file": settings.model_file().name, "image": image.name, "requests": args.requests,
                            "threads": settings.pool_size, "results": results})


if __name__ == "__main__":
    main()
