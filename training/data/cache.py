"""Content-addressed cache of preprocessed images, so the second run of anything decodes nothing.

An entry is keyed by the SHA-256 of the file's bytes, under a folder named for the preprocessing version and the
geometry settings (size, border crop, text suppression): editing a file, or changing preprocessing, misses the cache
for exactly the files affected. An entry holds the resized uint8 image and facts about the decoded original (pixel
hash for duplicate detection, size), or the decoding error, so bad files are not re-decoded either.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.decode import DecodeError, decode

from ..graph.preprocess import GeometryConfig, resize_to_uint8


@dataclass
class Entry:
    sha256: str
    pixel_sha256: str = ""
    height: int = 0
    width: int = 0
    error: str = ""  # decoding error reason; empty when the image decoded
    image: np.ndarray | None = None  # uint8 [size, size]; not loaded by `lookup` unless asked


class Cache:
    def __init__(self, root: Path, geometry: GeometryConfig | int):
        self.root = Path(root)
        self.geometry = GeometryConfig.of(geometry)
        self.size = self.geometry.size
        self.dir = self.root / self.geometry.tag

    def _path(self, sha: str) -> Path:
        return self.dir / sha[:2] / f"{sha}.npz"

    def lookup(self, sha: str, with_image: bool = False) -> Entry | None:
        path = self._path(sha)
        if not path.exists():
            return None
        try:
            with np.load(path) as z:
                entry = Entry(sha, str(z["pixel_sha256"]), int(z["height"]), int(z["width"]), str(z["error"]))
                if with_image and not entry.error:
                    entry.image = z["image"]
        except Exception:  # a torn or foreign file is a miss, and will be rewritten
            return None
        return entry

    def store(self, entry: Entry) -> None:
        path = self._path(entry.sha256)
        path.parent.mkdir(parents=True, exist_ok=True)
        image = entry.image if entry.image is not None else np.zeros((0, 0), np.uint8)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:  # write then rename: concurrent workers and kills never leave half an entry
            np.savez(f, image=image, pixel_sha256=entry.pixel_sha256, height=entry.height, width=entry.width,
                     error=entry.error)
        tmp.replace(path)

    def load_images(self, shas: list[str]) -> np.ndarray:
        """Stack cached images for `shas` into uint8 [N, 1, size, size]; every sha must be a good entry."""
        out = np.empty((len(shas), 1, self.size, self.size), np.uint8)
        for i, sha in enumerate(shas):
            entry = self.lookup(sha, with_image=True)
            if entry is None or entry.error:
                raise KeyError(f"image {sha} is not in the cache {self.dir}: run `python -m training prepare` again")
            out[i, 0] = entry.image
        return out


def process_file(file: str, cache: Cache) -> tuple[Entry, bool]:
    """Decode and resize one file through the cache. Returns (entry, was_cached). Never raises for bad content."""
    try:
        data = Path(file).read_bytes()
    except OSError as e:
        return Entry("", error=f"cannot read file: {e.strerror or e}"), False
    sha = hashlib.sha256(data).hexdigest()
    entry = cache.lookup(sha)
    if entry is not None:
        return entry, True
    try:
        gray = decode(data, name=file)
    except DecodeError as e:
        entry = Entry(sha, error=e.reason)
    else:
        pixel_sha = hashlib.sha256(f"{gray.shape}".encode() + gray.tobytes()).hexdigest()
        entry = Entry(sha, pixel_sha, gray.shape[0], gray.shape[1], image=resize_to_uint8(gray, cache.geometry))
    cache.store(entry)
    entry.image = None
    return entry, False
