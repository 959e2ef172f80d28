"""Native onnxruntime latency of the exported models: batch 1, 2 threads, median of 30 runs after 5 warm-up runs,
for a 1024x1024 input (the in-graph preprocessing is included) and a 224x224 one; fp32 vs int8, with file sizes.

python -m bench.onnx_latency --model DIR   (an export folder: model.json, model.onnx, model.int8.onnx)
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from .common import DEFAULT_MODEL, machine, print_table, save


def latency_ms(path: Path, image: np.ndarray, threads: int, warmup: int, runs: int) -> list[float]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {"image": image[None, None]}
    for _ in range(warmup):
        session.run(None, feed)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        session.run(None, feed)
        times.append((time.perf_counter() - started) * 1000)
    return times


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args(argv)
    card_path = args.model / "model.json"
    if not card_path.exists():
        raise SystemExit(f"{card_path} not found: run `cxr build` (or `cxr export`) first, or pass --model")
    card = json.loads(card_path.read_text())
    rng = np.random.default_rng(0)
    rows, results = [], []
    for side in (1024, 224):
        image = rng.uniform(0, 255, (side, side)).astype(np.float32)
        for name, info in card["files"].items():
            times = latency_ms(args.model / name, image, args.threads, args.warmup, args.runs)
            result = {"file": name, "precision": info["precision"], "input": f"{side}x{side}",
                      "size_mb": info["size"] / 1e6, "median_ms": statistics.median(times),
                      "p90_ms": float(np.percentile(times, 90))}
            results.append(result)
            rows.append([name, result["input"], f"{result['size_mb']:.1f}", f"{result['median_ms']:.1f}",
                         f"{result['p90_ms']:.1f}"])
    print(f"native onnxruntime {ort.__version__}, {card['arch']}, batch 1, {args.threads} threads, "
          f"median of {args.runs} ({machine()})")
    print_table(["file", "input", "MB", "median ms", "p90 ms"], rows)
    by = {(r["file"], r["input"]): r["median_ms"] for r in results}
    if ("model.int8.onnx", "1024x1024") in by:
        speedup = by[("model.onnx", "1024x1024")] / by[("model.int8.onnx", "1024x1024")]
        print(f"int8 speed-up at 1024x1024: {speedup:.2f}x")
    save("onnx_latency", {"model": str(args.model), "arch": card["arch"], "threads": args.threads, "results": results})


if __name__ == "__main__":
    main()
