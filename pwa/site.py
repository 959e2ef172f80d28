"""Render the static PWA (dist/) from an exported model: `build_site(model_dir, dist, node_modules)`.

dist/ holds index.html, the app's ES modules and CSS (app/), sw.js, manifest.webmanifest, icons/, the pinned
onnxruntime-web wasm files and dicom-parser (vendor/, copied from node_modules; never a CDN), the model files with
model.json (model/) and build.json. The output is deterministic: the same inputs give byte-identical files (no
timestamps, sorted lists, icons drawn by Pillow from fixed shapes). The build hash is the SHA-256 over the sorted
(path, SHA-256) list of every file except sw.js, which embeds it, and build.json, which records it; the service
worker's cache is named after it. docs/pwa.md describes the result.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import shutil
import tempfile
from pathlib import Path

import jinja2

from core.checksum import sha256_file

from .headers import CSP, app_headers

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

APP_NAME = "Chest X-ray triage"
SHORT_NAME = "CXR triage"
DESCRIPTION = ("Chest X-ray triage (COVID-19 / Normal / Pneumonia) that runs entirely in your browser, offline: "
               "the image never leaves the device. Research and education only; not a medical device.")
THEME_COLOR = "#12304d"
BACKGROUND_COLOR = "#f6f8fa"
CACHE_PREFIX = "cxr-triage-"

# The three files onnxruntime-web's wasm build needs (the ESM entry, the emscripten glue that also starts the
# pthread workers, and the SIMD+threads binary). Nothing else: no WebGPU/JSEP build, no proxy worker.
ORT_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
# The wasm binary ships gzip-compressed (14.2 MB -> 3.7 MB) and the worker inflates it with DecompressionStream:
# whatever the static host does about compression, the first visit stays small. The suffix is not ".gz", which
# some hosts would serve with Content-Encoding: gzip (the browser would then inflate it before the worker does).
WASM_GZIP = "vendor/ort/ort-wasm-simd-threaded.wasm.gzip"

# The app's code, laid out by where it runs (as Squoosh does): static/page/ on the main thread, static/worker/ in
# the inference worker, static/shared/ in both (app/shared/contract.js is generated here); the service worker is
# templates/sw.js. The page's modules are preloaded from index.html; the worker's load in the worker.
PAGE_MODULES = tuple(sorted(f"page/{p.name}" for p in (STATIC / "page").glob("*.js"))) + ("shared/contract.js",)

ICON_SIZES = (("icon-192.png", 192, False), ("icon-512.png", 512, False), ("icon-maskable-512.png", 512, True))


class SiteError(ValueError):
    """The inputs cannot make a site (model folder or node_modules incomplete); the message says what to do."""


def build_site(model_dir: Path, dist: Path, node_modules: Path) -> dict:
    """Write the PWA for the export in `model_dir` to `dist` (replacing a previous build there).

    Returns {"build_hash", "cache", "version", "files": {path: {"size", "sha256"}}, "bytes", "dist"}.
    """
    model_dir, dist, node_modules = Path(model_dir), Path(dist), Path(node_modules)
    card, card_bytes = _load_card(model_dir)
    files: dict[str, bytes] = {}

    for path in sorted(p for p in STATIC.rglob("*") if p.is_file()):
        files[f"app/{path.relative_to(STATIC).as_posix()}"] = path.read_bytes()
    files["app/shared/contract.js"] = _contract_module().encode()
    files.update(_vendor_files(node_modules))
    files["model/model.json"] = card_bytes
    for name in _model_files(card):
        files[f"model/{name}"] = (model_dir / name).read_bytes()
    for name, size, maskable in ICON_SIZES:
        files[f"icons/{name}"] = make_icon(size, maskable)
    files["manifest.webmanifest"] = _manifest().encode()

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=jinja2.select_autoescape(["html"]),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    files["index.html"] = env.get_template("index.html").render(
        csp=CSP, card=card, app_name=APP_NAME, description=DESCRIPTION, theme_color=THEME_COLOR,
        preload=[f"app/{m}" for m in PAGE_MODULES], model_choices=_model_choices(card),
    ).encode()

    digests = {path: hashlib.sha256(data).hexdigest() for path, data in files.items()}
    build_hash = hashlib.sha256("".join(f"{digests[p]}  {p}\n" for p in sorted(files)).encode()).hexdigest()
    cache = CACHE_PREFIX + build_hash[:16]
    # Model files other than the default are fetched (and kept for offline use) only when the user chooses one, so
    # the first visit downloads one model, not all of them.
    on_demand = [f"model/{name}" for name in _model_files(card) if name != card["default_model"]]
    files["build.json"] = (json.dumps({
        "build": build_hash, "cache": cache, "version": card.get("version"), "model": card.get("name"),
        "demo": bool(card.get("demo")), "csp": CSP, "default_model": card["default_model"],
        "wasm": WASM_GZIP, "on_demand": on_demand,
        "files": {p: {"size": len(files[p]), "sha256": digests[p]} for p in sorted(digests)},
    }, indent=1, sort_keys=True) + "\n").encode()
    digests["build.json"] = hashlib.sha256(files["build.json"]).hexdigest()
    precache = [{"path": p, "integrity": _sri(digests[p])} for p in sorted(digests) if p not in on_demand]
    files["sw.js"] = env.get_template("sw.js").render(
        build=build_hash, cache=cache, cache_prefix=CACHE_PREFIX, precache=precache, headers=app_headers(CSP),
    ).encode()

    _write(dist, files)
    return {
        "build_hash": build_hash,
        "cache": cache,
        "version": card.get("version"),
        "dist": str(dist),
        "files": {p: {"size": len(files[p]), "sha256": hashlib.sha256(files[p]).hexdigest()} for p in sorted(files)},
        "bytes": sum(len(data) for data in files.values()),
    }


# --- inputs -----------------------------------------------------------------------------------------------------


def _load_card(model_dir: Path) -> tuple[dict, bytes]:
    path = model_dir / "model.json"
    if not path.is_file():
        raise SiteError(f"{path} not found: pass the folder written by `python -m export` (model.json + models)")
    data = path.read_bytes()
    card = json.loads(data)
    for key in ("classes", "input", "ood_threshold", "files", "default_model", "version"):
        if key not in card:
            raise SiteError(f"{path} has no {key!r}: re-export the model")
    if card["default_model"] not in card["files"]:
        raise SiteError(f"{path}: default_model {card['default_model']!r} is not one of its files")
    for name in _model_files(card):
        info, file = card["files"][name], model_dir / name
        if not file.is_file():
            raise SiteError(f"{file} not found, but {path.name} lists it")
        if "size" in info and file.stat().st_size != info["size"]:
            raise SiteError(f"{file} is {file.stat().st_size} bytes, {path.name} says {info['size']}: re-export")
        if "sha256" in info and sha256_file(file) != info["sha256"]:
            raise SiteError(f"{file} does not match the sha256 in {path.name}: re-export")
    return card, data


def _model_files(card: dict) -> list[str]:
    names = sorted(card["files"])
    for name in names:
        if "/" in name or "\\" in name or name.startswith("."):
            raise SiteError(f"model.json lists an odd file name {name!r}")
    return names


def _model_choices(card: dict) -> list[dict]:
    """The model files in the order the <select> shows them: the default first."""
    names = sorted(card["files"], key=lambda n: (n != card["default_model"], n))
    return [{"file": n, "precision": card["files"][n].get("precision", n), "default": n == card["default_model"]}
            for n in names]


def _vendor_files(node_modules: Path) -> dict[str, bytes]:
    ort = node_modules / "onnxruntime-web"
    dicom = node_modules / "dicom-parser"
    missing = [p for p in [*(ort / "dist" / f for f in ORT_FILES), dicom / "dist" / "dicomParser.min.js"]
               if not p.is_file()]
    if missing:
        raise SiteError(f"{missing[0]} not found: run `npm ci` in the repository (versions pinned in package.json)")
    files = {f"vendor/ort/{name}": (ort / "dist" / name).read_bytes() for name in ORT_FILES if not name.endswith(".wasm")}
    files[WASM_GZIP] = gzip.compress((ort / "dist" / "ort-wasm-simd-threaded.wasm").read_bytes(), 9, mtime=0)
    versions = {"onnxruntime-web": json.loads((ort / "package.json").read_text())["version"],
                "dicom-parser": json.loads((dicom / "package.json").read_text())["version"]}
    # The npm package of onnxruntime-web carries no LICENSE file; say what it is and where its license lives.
    files["vendor/ort/NOTICE.txt"] = (
        f"onnxruntime-web {versions['onnxruntime-web']} (npm), Copyright (c) Microsoft Corporation.\n"
        "Licensed under the MIT License: https://github.com/microsoft/onnxruntime/blob/main/LICENSE\n").encode()
    files["vendor/dicom-parser/dicom-parser.mjs"] = _dicom_parser_module(
        (dicom / "dist" / "dicomParser.min.js").read_text(), versions["dicom-parser"]).encode()
    files["vendor/dicom-parser/LICENSE"] = (dicom / "LICENSE").read_bytes()
    files["vendor/versions.json"] = (json.dumps(versions, indent=1, sort_keys=True) + "\n").encode()
    return files


def _dicom_parser_module(umd: str, version: str) -> str:
    """dicom-parser ships a UMD build only. Run it with `this` bound to a plain object (no `exports`, `module` or
    `define` exist in a module), so it sets `root.dicomParser`, and export that: an ES module the worker imports."""
    umd = umd.replace("//# sourceMappingURL=dicomParser.min.js.map", "")
    return (f"// dicom-parser {version} (MIT), its UMD build wrapped as an ES module by pwa/site.py.\n"
            "const root = {};\n(function () {\n" + umd.rstrip() + "\n}).call(root);\n"
            "export default root.dicomParser;\n")


def _contract_module() -> str:
    """app/shared/contract.js: the constants the browser must share with Python, taken from the Python side itself."""
    from pydicom.uid import UID, AllTransferSyntaxes

    from core import decode

    names = {str(uid): UID(uid).name for uid in sorted(set(AllTransferSyntaxes) | set(decode.DICOM_TRANSFER_SYNTAXES))}
    other = [[offset, base64.b16encode(magic).decode().lower(), what] for offset, magic, what in decode._OTHER_FORMATS]
    lines = [
        "// Generated by pwa/site.py from core/decode.py, pydicom and matplotlib: do not edit.",
        "// docs/decoding.md is the contract; these values keep the browser and Python in step.",
        f"export const MAX_PIXELS = {decode.MAX_PIXELS};",
        f"export const GRAY_WEIGHTS = {json.dumps(list(decode.GRAY_WEIGHTS))};",
        f"export const DICOM_TRANSFER_SYNTAXES = {json.dumps(decode.DICOM_TRANSFER_SYNTAXES, indent=2)};",
        f"export const TRANSFER_SYNTAX_NAMES = {json.dumps(names, indent=2)};",
        "// [offset, magic bytes in hex, what it is]: only to tell the user what an unsupported file looks like.",
        f"export const OTHER_FORMATS = {json.dumps(other)};",
        "// The inferno colour map (matplotlib), 256 RGB entries as hex.",
        f"export const INFERNO = \"{_inferno_hex()}\";",
    ]
    return "\n".join(lines) + "\n"


def _inferno_hex() -> str:
    import numpy as np
    from matplotlib import colormaps

    lut = colormaps["inferno"](np.arange(256))[:, :3]  # integer indexes: the table's own 256 entries
    return bytes(np.round(lut * 255).astype(np.uint8).ravel()).hex()


def _manifest() -> str:
    manifest = {
        "id": "./",
        "name": APP_NAME,
        "short_name": SHORT_NAME,
        "description": DESCRIPTION,
        "lang": "en",
        "start_url": "./",
        "scope": "./",
        "display": "standalone",
        "orientation": "any",
        "theme_color": THEME_COLOR,
        "background_color": BACKGROUND_COLOR,
        "categories": ["medical", "education"],
        "icons": [
            {"src": "icons/icon-192.png", "sizes": "192x192", "type": "image/png", "purpose": "any"},
            {"src": "icons/icon-512.png", "sizes": "512x512", "type": "image/png", "purpose": "any"},
            {"src": "icons/icon-maskable-512.png", "sizes": "512x512", "type": "image/png", "purpose": "maskable"},
        ],
        "prefer_related_applications": False,
    }
    return json.dumps(manifest, indent=2) + "\n"


# --- icons ------------------------------------------------------------------------------------------------------


def make_icon(size: int, maskable: bool = False) -> bytes:
    """A stylised chest radiograph (two lungs, spine, a warm spot) as PNG bytes, drawn deterministically.

    Drawn at 4x and reduced with a box filter for smooth edges. The maskable variant fills the whole square and
    keeps its picture inside the central 80 % safe zone."""
    from PIL import Image, ImageDraw

    scale = 4
    s = size * scale
    image = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    navy, lung, spot = (18, 48, 77, 255), (214, 231, 245, 255), (244, 162, 97, 255)
    if maskable:
        draw.rectangle([0, 0, s, s], fill=navy)
        inset = 0.2
    else:
        draw.rounded_rectangle([0, 0, s - 1, s - 1], radius=round(s * 0.22), fill=navy)
        inset = 0.12

    def box(x0, y0, x1, y1):  # coordinates in 0..1 of the picture area
        span = s * (1 - 2 * inset)
        return [round(s * inset + x0 * span), round(s * inset + y0 * span),
                round(s * inset + x1 * span), round(s * inset + y1 * span)]

    draw.rounded_rectangle(box(0.47, 0.06, 0.53, 0.94), radius=round(s * 0.02), fill=lung)  # spine + trachea
    draw.ellipse(box(0.10, 0.14, 0.44, 0.90), fill=lung)  # right lung (viewer's left)
    draw.ellipse(box(0.56, 0.14, 0.90, 0.90), fill=lung)  # left lung
    draw.ellipse(box(0.55, 0.52, 0.72, 0.92), fill=navy)  # heart shadow
    draw.ellipse(box(0.18, 0.52, 0.34, 0.68), fill=spot)  # the heatmap's hot spot
    image = image.resize((size, size), Image.Resampling.BOX)
    buffer = io.BytesIO()
    image.save(buffer, "PNG", optimize=False, compress_level=9)
    return buffer.getvalue()


# --- output -----------------------------------------------------------------------------------------------------


def _write(dist: Path, files: dict[str, bytes]) -> None:
    """Write into a fresh sibling folder, then swap it in: a half-written dist/ is never served."""
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


def _sri(hex_digest: str) -> str:
    return "sha256-" + base64.b64encode(bytes.fromhex(hex_digest)).decode()
