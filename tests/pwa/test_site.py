"""The site builder and the server, without a browser: deterministic output, the files the app needs, no
third-party origin anywhere, the CSP, and the headers and MIME types of pwa/serve.py."""

from __future__ import annotations

import gzip
import hashlib
import html
import json
import re
import urllib.request
from pathlib import Path

import pytest

import pwa
from pwa.headers import CSP
from pwa.site import ORT_FILES, WASM_GZIP, build_site


def test_two_builds_are_byte_identical(site, node_modules, tmp_path):
    again = build_site(site["export"], tmp_path / "dist", node_modules)
    assert again["build_hash"] == site["build_hash"]
    first = {p.relative_to(site["dist"]).as_posix(): p.read_bytes() for p in site["dist"].rglob("*") if p.is_file()}
    second = {p.relative_to(tmp_path / "dist").as_posix(): p.read_bytes()
              for p in (tmp_path / "dist").rglob("*") if p.is_file()}
    assert first.keys() == second.keys() == site["files"].keys()
    assert [p for p in first if first[p] != second[p]] == []


def test_build_contents(site):
    dist, files = site["dist"], site["files"]
    for name in ORT_FILES:  # the wasm binary as the worker fetches it, gzip-compressed
        assert (f"vendor/ort/{name}.gzip" if name.endswith(".wasm") else f"vendor/ort/{name}") in files
    wasm = gzip.decompress((dist / WASM_GZIP).read_bytes())
    assert wasm[:4] == b"\0asm" and files[WASM_GZIP]["size"] < len(wasm) / 3
    for path in ["index.html", "sw.js", "manifest.webmanifest", "build.json", "app/page/app.js", "app/worker/worker.js",
                 "app/page/app.css", "vendor/dicom-parser/dicom-parser.mjs", "model/model.json",
                 *(f"model/{name}" for name in site["card"]["files"])]:
        assert path in files, path
    assert site["bytes"] == sum(f["size"] for f in files.values())
    for path, info in files.items():
        assert hashlib.sha256((dist / path).read_bytes()).hexdigest() == info["sha256"]
    build = json.loads((dist / "build.json").read_text())
    assert build["build"] == site["build_hash"] and build["cache"] == site["cache"]
    sw = (dist / "sw.js").read_text()
    assert site["cache"] in sw
    on_demand = {f"model/{n}" for n in site["card"]["files"] if n != site["card"]["default_model"]}
    assert build["on_demand"] == sorted(on_demand) and on_demand  # the tiny export ships two model files
    for path in files:
        if path != "sw.js":  # everything is precached but the models a user has not chosen
            assert (json.dumps(path) in sw) == (path not in on_demand), path


def test_contract_carries_what_the_browser_shares(site):
    """The worker takes the wasm path from the generated contract.js (no copy of it in worker.js), and
    pwa/types.d.ts, which tsc checks the browser code against, declares exactly what contract.js exports."""
    contract = (site["dist"] / "app/shared/contract.js").read_text()
    assert f"export const WASM_GZIP = {json.dumps(WASM_GZIP)};" in contract
    assert WASM_GZIP not in (site["dist"] / "app/worker/worker.js").read_text()
    exported = set(re.findall(r"^export const (\w+) =", contract, re.M))
    declarations = (Path(pwa.__file__).parent / "types.d.ts").read_text()
    block = re.search(r'declare module "\*/shared/contract\.js" \{(.*?)\n\}', declarations, re.S)
    assert block and set(re.findall(r"export const (\w+):", block.group(1))) == exported


def test_no_third_party_origin(site):
    """No URL of another origin in anything the app itself loads (vendor code may mention URLs in comments or
    messages, but never loads them: the CSP would refuse it anyway)."""
    for path in site["files"]:
        if path.startswith(("app/", "index.html", "sw.js", "manifest.webmanifest")):
            text = (site["dist"] / path).read_text()
            assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.I), path
    index = (site["dist"] / "index.html").read_text()
    meta = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]*)">', index)
    assert meta and html.unescape(meta.group(1)) == CSP
    assert "style=" not in index and "<style" not in index
    assert not re.search(r"<script(?![^>]*\bsrc=)", index), "inline script"
    assert not re.search(r"\son[a-z]+=", index), "inline event handler"


def test_csp_is_strict():
    directives = dict(part.split(" ", 1) for part in CSP.split("; "))
    assert directives["default-src"] == "'self'"
    assert directives["connect-src"] == "'self'"
    assert directives["script-src"] == "'self' 'wasm-unsafe-eval'"
    assert directives["object-src"] == "'none'"
    assert directives["base-uri"] == "'none'"
    assert directives["form-action"] == "'none'"
    assert "unsafe-inline" not in CSP and "unsafe-eval'" not in CSP.replace("'wasm-unsafe-eval'", "")


@pytest.mark.parametrize("path, mime", [
    ("index.html", "text/html"), ("app/page/app.js", "text/javascript"),
    ("vendor/ort/ort.wasm.min.mjs", "text/javascript"),
    ("vendor/ort/ort-wasm-simd-threaded.wasm.gzip", "application/octet-stream"),
    ("manifest.webmanifest", "application/manifest+json"), ("model/model.json", "application/json"),
    ("icons/icon-192.png", "image/png"), ("app/page/app.css", "text/css"),
])
def test_server_types_and_headers(served, site, path, mime):
    with urllib.request.urlopen(served.url + path) as response:
        assert response.headers["Content-Type"].split(";")[0] == mime
        assert response.headers["Cross-Origin-Opener-Policy"] == "same-origin"
        assert response.headers["Cross-Origin-Embedder-Policy"] == "require-corp"
        assert response.headers["Cross-Origin-Resource-Policy"] == "same-origin"
        assert response.headers["Content-Security-Policy"].startswith(CSP)
        assert response.read() == (site["dist"] / path).read_bytes()


def test_server_model_type_and_no_listing(served, site):
    name = site["card"]["default_model"]
    with urllib.request.urlopen(served.url + f"model/{name}") as response:
        assert response.headers["Content-Type"] == "application/octet-stream"
    assert served.server.server_address[0] == "127.0.0.1"
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(served.url + "app/")
    assert error.value.code == 404


def test_refuses_to_replace_a_folder_that_is_not_a_build(site, node_modules, tmp_path):
    from pwa.site import SiteError

    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(SiteError, match="refusing"):
        build_site(site["export"], tmp_path, node_modules)
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_model_folder_is_checked(site, node_modules, tmp_path):
    import shutil

    from pwa.site import SiteError

    broken = tmp_path / "export"
    shutil.copytree(site["export"], broken)
    (broken / site["card"]["default_model"]).write_bytes(b"not a model")
    with pytest.raises(SiteError, match="re-export"):
        build_site(broken, tmp_path / "dist", node_modules)
