"""The chest gate's data: frontal chest films (positives) and what the gate must refuse, each with its kind and split.

Positives: every film of the given chest datasets (manifest.csv folders: ../shared/data/cxr, hannover,
montgomery-shenzhen). Negatives, by where they come from:

- *transformed films*: a chest film inverted (a negative, as a mishandled MONOCHROME1 gives), upside down (turned
  180 degrees, or flipped top to bottom) and rotated by 90 degrees either way; they keep the film's patient, so a
  held-out fold's transformed films are of patients the gate never saw;
- *real images that are not frontal chest films*: the lateral views and CT slices of ../shared/data/not-frontal.
  Their patients have frontal films in ../cxr, so one fold by patient covers both folders (`patient_fold`);
- *not radiographs*: photographs and documents shipped with scikit-learn and scikit-image (training and test use
  different images: the test uses not_xrays.py's photographs and pages, the images the OOD rates were always
  measured on), and pages, viewer screenshots, noise and flat or graded fields drawn by this module, with
  different seeds for training and test.

Abdominal and limb radiographs, and screenshots of a viewer showing a chest film, have no real examples here: the
report says so, and nothing is claimed for them.

Folds are by patient, from a hash of the patient id alone (`patient_fold`), so adding files never moves a patient;
the images drawn or cropped from one photograph share a "patient".
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from core.decode import DecodeError, decode

from ..graph.gate import REASONS

SIDE = 192  # training images are squashed to this square (the graph squashes to 160 for the segmenter)
FOLDS = 5
TRANSFORMS = {  # kind -> (reason, function of a gray array); applied to the full image, before any resizing
    "inverted": ("inverted", lambda a: 255 - a),
    "upside_down": ("upside_down", lambda a: np.rot90(a, 2)),
    "flipped_vertically": ("upside_down", lambda a: a[::-1]),
    "rotated_90_cw": ("rotated", lambda a: np.rot90(a, -1)),
    "rotated_90_ccw": ("rotated", lambda a: np.rot90(a, 1)),
}
TRAIN_PHOTOS = ("cat", "retina", "logo", "checkerboard", "shepp_logan_phantom", "binary_blobs", "cell",
                "microaneurysms", "text")
DRAWN = ("document", "screenshot", "noise", "flat")
WORDS = ("patient", "report", "the", "of", "and", "result", "normal", "date", "findings", "chest", "page", "total",
         "name", "dose", "signed", "clinic", "form", "please", "review", "series", "study", "window", "level")


@dataclass
class Item:
    """One image of the gate's data: `image` (uint8 gray, any size), its fine `kind` (a source name for positives),
    the REASONS entry it should get, and its patient (what folds keep together)."""

    image: np.ndarray
    kind: str
    reason: str
    patient: str
    name: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def label(self) -> int:
        return REASONS.index(self.reason)

    @property
    def source(self) -> str:
        """The chest collection a film or a transformed film comes from ("" for other images)."""
        return self.kind if self.reason == "frontal" else self.extra.get("from", "")


def patient_fold(patient: str, folds: int = FOLDS) -> int:
    """The cross-validation fold of a patient, from a hash of the id alone."""
    return int(hashlib.sha256(f"chest-gate:{patient}".encode()).hexdigest()[:8], 16) % folds


def squash(image: np.ndarray, side: int = SIDE) -> np.ndarray:
    return np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize((side, side), Image.BILINEAR))


def _manifest(folder: Path) -> list[dict]:
    path = Path(folder) / "manifest.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the gate reads datasets with a manifest.csv")
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _read(folder: Path, rows: list[dict], *, kind_column: str | None, reason: str, skipped: list) -> list[Item]:
    items = []
    for row in rows:
        file = Path(folder) / row["file"]
        try:
            image = decode(str(file))
        except DecodeError as e:
            skipped.append((str(file), e.reason))
            continue
        kind = row[kind_column] if kind_column else row.get("source") or Path(folder).name
        patient = row.get("patient_id") or str(file)
        items.append(Item(image.astype(np.uint8), kind, reason, patient, str(file)))
    return items


def chest_films(folders, skipped: list) -> list[Item]:
    """Every film of manifest folders, as positives (kind: the manifest's source column)."""
    items = []
    for folder in folders:
        items += _read(folder, _manifest(folder), kind_column=None, reason="frontal", skipped=skipped)
    return items


def not_frontal(folder, skipped: list) -> list[Item]:
    """../shared/data/not-frontal: lateral views and CT slices (kind column), folded by patient like ../cxr."""
    return _read(folder, _manifest(folder), kind_column="kind", reason="not_frontal", skipped=skipped)


def transformed(films: list[Item], kinds=tuple(TRANSFORMS)) -> list[Item]:
    """Each film in every transformed kind (same patient)."""
    return [transform(item, kind) for item in films for kind in kinds]


def transform(item: Item, kind: str) -> Item:
    reason, function = TRANSFORMS[kind]
    return Item(np.ascontiguousarray(function(item.image)), kind, reason, item.patient, item.name,
                {"from": item.kind})


def _gray(image: np.ndarray) -> np.ndarray:
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    elif image.dtype != np.uint8:
        image = np.clip(image * (255.0 / max(float(image.max()), 1e-6)), 0, 255).astype(np.uint8)
    if image.ndim == 3:
        image = np.asarray(Image.fromarray(image[..., :3]).convert("L"))
    return image


def training_photos() -> list[np.ndarray]:
    """Photographs and figures shipped with scikit-learn and scikit-image that the test never uses."""
    import skimage.data
    from sklearn.datasets import load_sample_images

    images = [_gray(image) for image in load_sample_images().images]
    for name in TRAIN_PHOTOS:
        try:
            images.append(_gray(getattr(skimage.data, name)()))
        except Exception:  # a sample that needs a download is left out, not fatal
            continue
    return images


def _crops(image: np.ndarray, n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """The whole image and n - 1 random crops of at least half its side."""
    out = [image]
    h, w = image.shape
    for _ in range(n - 1):
        ch, cw = int(h * rng.uniform(0.5, 1)), int(w * rng.uniform(0.5, 1))
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        out.append(image[y:y + ch, x:x + cw])
    return out


def drawn(kind: str, seed: int) -> np.ndarray:
    """A generated image of `kind` (DRAWN): a text page, a viewer or form screenshot, noise, or a flat field."""
    rng = np.random.default_rng(seed)
    h, w = int(rng.integers(300, 900)), int(rng.integers(300, 1200))
    if kind == "noise":
        style = rng.integers(3)
        if style == 0:
            return rng.integers(0, 256, (h, w)).astype(np.uint8)
        if style == 1:
            return np.clip(rng.normal(rng.uniform(40, 210), rng.uniform(10, 60), (h, w)), 0, 255).astype(np.uint8)
        coarse = rng.uniform(0, 255, (int(rng.integers(3, 16)), int(rng.integers(3, 16)))).astype(np.uint8)
        return np.asarray(Image.fromarray(coarse).resize((w, h), Image.BICUBIC))
    if kind == "flat":
        if rng.random() < 0.5:
            return np.full((h, w), int(rng.integers(0, 256)), np.uint8)
        a, b = rng.uniform(0, 255, 2)
        ramp = np.linspace(a, b, w if rng.random() < 0.5 else h)
        return (np.tile(ramp, (h, 1)) if ramp.size == w else np.tile(ramp[:, None], (1, w))).astype(np.uint8)
    dark = kind == "screenshot" and rng.random() < 0.5
    page = Image.new("L", (w, h), int(rng.integers(0, 50)) if dark else int(rng.integers(200, 256)))
    draw = ImageDraw.Draw(page)
    ink = 230 if dark else int(rng.integers(0, 60))
    font = ImageFont.load_default(size=int(rng.integers(10, 28)))
    if kind == "screenshot":  # toolbars, side panels, buttons and boxes, with labels
        for _ in range(int(rng.integers(4, 14))):
            x0, y0 = int(rng.integers(0, w - 20)), int(rng.integers(0, h - 20))
            x1, y1 = min(w, x0 + int(rng.integers(20, w // 2))), min(h, y0 + int(rng.integers(12, h // 3)))
            draw.rectangle((x0, y0, x1, y1), fill=int(rng.integers(0, 256)), outline=ink)
            draw.text((x0 + 4, y0 + 2), " ".join(rng.choice(WORDS, 2)), fill=ink, font=font)
    step = int(font.size * 1.6)
    for y in range(int(rng.integers(10, 60)), h - step, step):
        if kind == "screenshot" and rng.random() < 0.6:
            continue
        draw.text((int(rng.integers(10, 60)), y), " ".join(rng.choice(WORDS, int(rng.integers(3, 12)))), fill=ink,
                  font=font)
    return np.asarray(page)


def training_not_radiographs(n_drawn: int, seed: int = 0) -> list[Item]:
    """The training photographs in crops, and drawn images of seeds from `seed`."""
    rng = np.random.default_rng(seed)
    items = [Item(crop, "photograph", "not_radiograph", f"photo{i}", f"photo{i}")
             for i, photo in enumerate(training_photos()) for crop in _crops(photo, 6, rng)]
    return items + _drawn_items(n_drawn, seed)


def test_not_radiographs(n_drawn: int, seed: int = 1_000_000) -> list[Item]:
    """Never trained on: not_xrays.py's photographs and pages, and drawn images of other seeds."""
    from .not_xrays import photographs, text_pages

    items = [Item(image.astype(np.uint8), "photograph", "not_radiograph", name, name)
             for name, image in photographs().items()]
    items += [Item(image.astype(np.uint8), "document", "not_radiograph", name, name)
              for name, image in text_pages().items()]
    return items + _drawn_items(n_drawn, seed)


def _drawn_items(n: int, seed: int) -> list[Item]:
    kinds = [DRAWN[i % len(DRAWN)] for i in range(n)]
    return [Item(drawn(kind, seed + i), kind, "not_radiograph", f"{kind}-{seed + i}", f"{kind}-{seed + i}")
            for i, kind in enumerate(kinds)]
