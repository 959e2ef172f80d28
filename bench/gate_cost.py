"""What the chest gate costs: bytes added to a first visit and milliseconds added per image, measured in one run
beside the same model without it.

The baseline is the released graph with the gate's two outputs cut off (onnx.utils.extract_model keeps only the
nodes the other outputs need): the very same classifier and segmenter, so the difference is the gate alone. Native
onnxruntime, batch 1, 2 threads, a 1024x1024 input; the two sessions run alternately so that the machine's load
falls on both alike.

python -m bench.gate_cost [--model DIR]
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from runtime.session import open_session

from .common import DEFAULT_MODEL, machine, print_table, save

GATE_OUTPUTS = ("gate", "gate_reason")


def without_gate(model: Path, card: dict, out: Path) -> Path:
    import onnx.utils

    outputs = [name for name in card["output_names"] if name not in GATE_OUTPUTS]
    onnx.utils.extract_model(str(model), str(out), [card["input"]["name"]], outputs)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args(argv)
    card = json.loads((args.model / "model.json").read_text())
    if "gate" not in card.get("output_names", []):
        raise SystemExit(f"{args.model}: this export has no chest gate (cxr export --gate)")
    with tempfile.TemporaryDirectory() as tmp:
        gated_path = args.model / card["default_model"]
        plain_path = without_gate(gated_path, card, Path(tmp) / "without-gate.onnx")
        sizes = {name: (p.stat().st_size, len(gzip.compress(p.read_bytes(), 6)))
                 for name, p in (("with gate", gated_path), ("without gate", plain_path))}
        sessions = {"with gate": open_session(gated_path, args.threads),
                    "without gate": open_session(plain_path, args.threads)}
        image = np.random.default_rng(0).uniform(0, 255, (1, 1, 1024, 1024)).astype(np.float32)
        times = {name: [] for name in sessions}
        for i in range(args.runs + 5):
            for name, sess in sessions.items():
                started = time.perf_counter()
                sess.run(None, {card["input"]["name"]: image})
                if i >= 5:  # warm-up
                    times[name].append((time.perf_counter() - started) * 1000)
    median = {name: statistics.median(t) for name, t in times.items()}
    rows = [[name, f"{sizes[name][0] / 1e6:.3f}", f"{sizes[name][1] / 1e6:.3f}", f"{median[name]:.2f}"]
            for name in sessions]
    added = {"bytes": sizes["with gate"][0] - sizes["without gate"][0],
             "gzip_bytes": sizes["with gate"][1] - sizes["without gate"][1],
             "ms": median["with gate"] - median["without gate"],
             "ratio": median["with gate"] / median["without gate"]}
    rows.append(["added by the gate", f"{added['bytes'] / 1e6:.3f}", f"{added['gzip_bytes'] / 1e6:.3f}",
                 f"{added['ms']:+.2f} ({added['ratio']:.3f}x)"])
    print(f"{card['name']} {card['version']}, native onnxruntime {ort.__version__}, batch 1, {args.threads} threads, "
          f"1024x1024, median of {args.runs} alternating runs; {machine()}")
    print_table(["model", "file MB", "gzip MB", "latency ms"], rows)
    save("gate_cost", {"model": card["name"], "version": card["version"], "machine": machine(), "sizes": sizes,
                       "median_ms": median, "added": added})


if __name__ == "__main__":
    main()
