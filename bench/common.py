"""Shared helpers for the benchmarks: where the data is, where results go, how to print a table."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_CXR = Path(os.environ.get("CXR_SHARED_DATA", REPO.parent / "shared" / "data" / "cxr"))
RESULTS = REPO / "work" / "bench"
# The model the benchmarks measure unless told otherwise: the released one (models/), else the phantom demo's export.
RELEASED_MODEL = REPO / "models" / "cxr-triage-lite0"
DEFAULT_MODEL = RELEASED_MODEL if (RELEASED_MODEL / "model.json").exists() else REPO / "work" / "model"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{os.cpu_count()} cores ({cpu}), {platform.system()} {platform.machine()}, "
            f"Python {platform.python_version()}")


def shared_or_phantoms(folder: Path, n: int = 300) -> Path:
    """The shared real images if present, else `n` phantoms at 512 px written to `folder` (said loudly)."""
    if (SHARED_CXR / "manifest.csv").exists():
        return SHARED_CXR
    from training.data.phantoms import write_phantoms

    print(f"note: {SHARED_CXR} not found; using {n} synthetic phantoms instead")
    return write_phantoms(folder, n, size=512).parent


def save(name: str, result: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **result}, indent=2) + "\n")
    print(f"results: {path}")
    return path


def print_table(header: list[str], rows: list[list]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    for row in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths)))
