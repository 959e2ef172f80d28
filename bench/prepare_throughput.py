"""`prepare` throughput on the shared images: first run (decode + resize + cache) vs cached run, images/s.

python -m bench.prepare_throughput [--workers N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from training.data.prepare import prepare

from .common import machine, print_table, save, shared_or_phantoms


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=None, help="decoding processes (default: prepare's default)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        data = shared_or_phantoms(Path(tmp) / "phantoms")
        runs = []
        for label in ("first run (empty cache)", "second run (cached)"):
            started = time.perf_counter()
            summary = prepare([str(data)], Path(tmp) / "out", workers=args.workers, progress=False)
            seconds = time.perf_counter() - started
            runs.append({"run": label, "images": summary["images"], "decoded": summary["decoded"],
                         "from_cache": summary["from_cache"], "seconds": seconds,
                         "images_per_s": summary["images"] / seconds})
    ratio = runs[1]["images_per_s"] / runs[0]["images_per_s"]
    print(f"prepare throughput on {data} ({machine()})")
    print_table(["run", "images", "decoded", "from cache", "seconds", "images/s"],
                [[r["run"], r["images"], r["decoded"], r["from_cache"], f"{r['seconds']:.2f}",
                  f"{r['images_per_s']:.0f}"]
                 for r in runs])
    print(f"cached / first: {ratio:.1f}x")
    save("prepare_throughput", {"data": str(data), "runs": runs, "ratio": ratio})


if __name__ == "__main__":
    main()
