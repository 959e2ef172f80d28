"""`python -m bench`: run every benchmark in turn (each prints its table and saves JSON under work/bench/)."""

import importlib
import sys

BENCHES = ["prepare_throughput", "train_throughput", "ddp_throughput", "onnx_latency", "gate_cost", "api_throughput",
           "browser"]

if __name__ == "__main__":
    only = sys.argv[1:] or BENCHES
    for name in only:
        print(f"\n=== {name} ===")
        importlib.import_module(f"bench.{name}").main([])
