"""Writing a build into dist/: all of it or nothing, so a half-written dist/ is never served."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from .errors import SiteError


def write_dist(dist: Path, files: dict[str, bytes]) -> None:
    """Write `files` ({relative path: bytes}) into a fresh sibling folder, then swap it in for `dist`.

    Refuses to replace a non-empty folder that is not a previous build (has no build.json)."""
    if dist.exists() and any(dist.iterdir()) and not (dist / "build.json").is_file():
        raise SiteError(f"{dist} exists, is not empty and is not a previous build: refusing to replace it")
    dist.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dist.name}-", dir=dist.parent))
    try:
        for path in sorted(files):
            target = staging / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(files[path])
        for folder in [staging, *sorted(p for p in staging.rglob("*") if p.is_dir())]:
            os.chmod(folder, 0o755)
        for path in sorted(files):
            os.chmod(staging / path, 0o644)
        if dist.exists():
            old = dist.with_name(f".{dist.name}-old-{os.getpid()}")
            dist.rename(old)
            staging.rename(dist)
            shutil.rmtree(old)
        else:
            staging.rename(dist)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
