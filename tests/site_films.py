"""A site's labelled films for the site-validation tests: phantoms of the tiny set, listed in a CSV."""

from __future__ import annotations

from pathlib import Path

from core.classes import CLASSES


def phantom_site(prepared: Path, folder: Path, n: int = 15, broken: bool = True) -> Path:
    """labels.csv in `folder`: the first `n` phantoms of the tiny set (labels cycle through the classes, written in
    lower case as a site might; two films per patient) and, with `broken`, a file that cannot be decoded."""
    folder.mkdir(parents=True, exist_ok=True)
    images = prepared.parent / "phantoms" / "images"
    rows = ["file,label,patient_id"]
    rows += [f"{images / f'phantom_{i:05d}.png'},{CLASSES[i % 3].lower()},site_{i // 2}" for i in range(n)]
    if broken:
        (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
        rows.append("broken.png,Normal,site_broken")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return folder / "labels.csv"
