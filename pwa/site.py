"""Render the static PWA (dist/) from an exported model: `build_site(model_dir, dist, node_modules)`.

dist/ holds index.html, the app's ES modules and CSS (app/), sw.js, manifest.webmanifest, icons/, the pinned
onnxruntime-web wasm files and dicom-parser (vendor/, copied from node_modules; never a CDN), the model files with
model.json (model/) and build.json. The output is deterministic: the same inputs give byte-identical files (no
timestamps, sorted lists, icons drawn by Pillow from fixed shapes). The build hash is the SHA-256 over the sorted
(path, SHA-256) list of every file except sw.js, which embeds it, and build.json, which records it; the service
worker's cache is named after it. docs/pwa.md describes the result.

This module assembles the site; the parts come from pwa/export_folder.py (model.json and the model files),
pwa/vendor.py (onnxruntime-web, dicom-parser), pwa/contract.py (app/shared/contract.js), pwa/icons.py,
pwa/manifest.py, and pwa/output.py writes the result.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import jinja2

from .contract import contract_module
from .errors import SiteError
from .export_folder import load_card, model_choices, model_files
from .headers import CSP, app_headers
from .icons import icon_files
from .manifest import APP_NAME, DESCRIPTION, THEME_COLOR, manifest
from .output import write_dist
from .vendor import ORT_FILES, WASM_GZIP, vendor_files

__all__ = ["build_site", "SiteError", "ORT_FILES", "WASM_GZIP", "CACHE_PREFIX"]

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

CACHE_PREFIX = "cxr-triage-"

# The app's code, laid out by where it runs (as Squoosh does): static/page/ on the main thread, static/worker/ in
# the inference worker, static/shared/ in both (app/shared/contract.js is generated here); the service worker is
# templates/sw.js. The page's modules are preloaded from index.html; the worker's load in the worker.
PAGE_MODULES = tuple(sorted(f"page/{p.name}" for p in (STATIC / "page").glob("*.js"))) + ("shared/contract.js",)


def build_site(model_dir: Path, dist: Path, node_modules: Path) -> dict:
    """Write the PWA for the export in `model_dir` to `dist` (replacing a previous build there).

    Returns {"build_hash", "cache", "version", "files": {path: {"size", "sha256"}}, "bytes", "dist"}.
    """
    model_dir, dist, node_modules = Path(model_dir), Path(dist), Path(node_modules)
    card, card_bytes = load_card(model_dir)
    files: dict[str, bytes] = {}

    for path in sorted(p for p in STATIC.rglob("*") if p.is_file()):
        files[f"app/{path.relative_to(STATIC).as_posix()}"] = path.read_bytes()
    files["app/shared/contract.js"] = contract_module().encode()
    files.update(vendor_files(node_modules))
    files["model/model.json"] = card_bytes
    for name in model_files(card):
        files[f"model/{name}"] = (model_dir / name).read_bytes()
    files.update(icon_files())
    files["manifest.webmanifest"] = manifest().encode()

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=jinja2.select_autoescape(["html"]),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    files["index.html"] = env.get_template("index.html").render(
        csp=CSP, card=card, app_name=APP_NAME, description=DESCRIPTION, theme_color=THEME_COLOR,
        preload=[f"app/{m}" for m in PAGE_MODULES], model_choices=model_choices(card),
    ).encode()

    digests = {path: hashlib.sha256(data).hexdigest() for path, data in files.items()}
    build_hash = hashlib.sha256("".join(f"{digests[p]}  {p}\n" for p in sorted(files)).encode()).hexdigest()
    cache = CACHE_PREFIX + build_hash[:16]
    # Model files other than the default are fetched (and kept for offline use) only when the user chooses one, so
    # the first visit downloads one model, not all of them.
    on_demand = [f"model/{name}" for name in model_files(card) if name != card["default_model"]]
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

    write_dist(dist, files)
    return {
        "build_hash": build_hash,
        "cache": cache,
        "version": card.get("version"),
        "dist": str(dist),
        "files": {p: {"size": len(files[p]), "sha256": hashlib.sha256(files[p]).hexdigest()} for p in sorted(files)},
        "bytes": sum(len(data) for data in files.values()),
    }


def _sri(hex_digest: str) -> str:
    """A Subresource Integrity value (what sw.js passes to fetch) of a hex SHA-256."""
    return "sha256-" + base64.b64encode(bytes.fromhex(hex_digest)).decode()
