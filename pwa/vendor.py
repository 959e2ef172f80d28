"""The third-party browser code the site ships, copied from node_modules (pinned in package.json; never a CDN):
onnxruntime-web's wasm build under vendor/ort/ and dicom-parser, wrapped as an ES module, under vendor/dicom-parser/.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from .errors import SiteError

# The three files onnxruntime-web's wasm build needs (the ESM entry, the emscripten glue that also starts the
# pthread workers, and the SIMD+threads binary). Nothing else: no WebGPU/JSEP build, no proxy worker.
ORT_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
# The wasm binary ships gzip-compressed (14.2 MB -> 3.7 MB) and the worker inflates it with DecompressionStream:
# whatever the static host does about compression, the first visit stays small. The suffix is not ".gz", which
# some hosts would serve with Content-Encoding: gzip (the browser would then inflate it before the worker does).
# The worker takes this path from the generated contract.js (pwa/contract.py).
WASM_GZIP = "vendor/ort/ort-wasm-simd-threaded.wasm.gzip"


def vendor_files(node_modules: Path) -> dict[str, bytes]:
    """{path in dist/: bytes} of the vendored files, with vendor/versions.json and the licences."""
    ort = node_modules / "onnxruntime-web"
    dicom = node_modules / "dicom-parser"
    missing = [p for p in [*(ort / "dist" / f for f in ORT_FILES), dicom / "dist" / "dicomParser.min.js"]
               if not p.is_file()]
    if missing:
        raise SiteError(f"{missing[0]} not found: run `npm ci` in the repository (versions pinned in package.json)")
    files = {f"vendor/ort/{name}": (ort / "dist" / name).read_bytes()
             for name in ORT_FILES if not name.endswith(".wasm")}
    files[WASM_GZIP] = gzip.compress((ort / "dist" / "ort-wasm-simd-threaded.wasm").read_bytes(), 9, mtime=0)
    versions = {"onnxruntime-web": json.loads((ort / "package.json").read_text())["version"],
                "dicom-parser": json.loads((dicom / "package.json").read_text())["version"]}
    # The npm package of onnxruntime-web carries no LICENSE file; say what it is and where its license lives.
    files["vendor/ort/NOTICE.txt"] = (
        f"onnxruntime-web {versions['onnxruntime-web']} (npm), Copyright (c) Microsoft Corporation.\n"
        "Licensed under the MIT License: https://github.com/microsoft/onnxruntime/blob/main/LICENSE\n").encode()
    files["vendor/dicom-parser/dicom-parser.mjs"] = dicom_parser_module(
        (dicom / "dist" / "dicomParser.min.js").read_text(), versions["dicom-parser"]).encode()
    files["vendor/dicom-parser/LICENSE"] = (dicom / "LICENSE").read_bytes()
    files["vendor/versions.json"] = (json.dumps(versions, indent=1, sort_keys=True) + "\n").encode()
    return files


def dicom_parser_module(umd: str, version: str) -> str:
    """dicom-parser ships a UMD build only. Run it with `this` bound to a plain object (no `exports`, `module` or
    `define` exist in a module), so it sets `root.dicomParser`, and export that: an ES module the worker imports."""
    umd = umd.replace("//# sourceMappingURL=dicomParser.min.js.map", "")
    return (f"// dicom-parser {version} (MIT), its UMD build wrapped as an ES module by pwa/vendor.py.\n"
            "const root = {};\n(function () {\n" + umd.rstrip() + "\n}).call(root);\n"
            "export default root.dicomParser;\n")
