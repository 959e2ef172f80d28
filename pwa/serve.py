"""Serve a built dist/ on 127.0.0.1 with the headers the app wants.

`make_server(dist, port=0)` returns a started-but-not-serving threaded HTTP server (call `serve_forever()` in a
thread; `server.server_address` says where it listens); `serve(dist, port)` blocks and prints the URL.

Every response carries Cross-Origin-Opener-Policy / Cross-Origin-Embedder-Policy / Cross-Origin-Resource-Policy
(so the page is cross-origin isolated and onnxruntime-web can use threads from the first visit on), the same
Content-Security-Policy as the page's meta tag (which then also covers the workers), `Cache-Control: no-cache`
(revalidate, so a new build is seen on the next visit) and `X-Content-Type-Options: nosniff`. Set
`server.isolation_headers = False` to serve like a static host that cannot set COOP/COEP: the service worker
then adds them itself.
"""

from __future__ import annotations

import functools
import http.server
import json
import sys
from pathlib import Path

from .headers import app_headers

MIME_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".webmanifest": "application/manifest+json",
    ".wasm": "application/wasm",
    ".onnx": "application/octet-stream",
    ".gzip": "application/octet-stream",  # the gzip-compressed wasm: bytes for the worker, not an encoding
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".txt": "text/plain; charset=utf-8",
}

def build_csp(dist: Path) -> str | None:
    """The policy the build wrote into build.json (the same one as index.html's meta tag)."""
    try:
        return json.loads((dist / "build.json").read_text())["csp"]
    except (OSError, ValueError, KeyError):
        return None


class _Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, **MIME_TYPES}

    def end_headers(self):
        headers = app_headers(build_csp(Path(self.directory)), getattr(self.server, "isolation_headers", True))
        for name, value in {**headers, "Cache-Control": "no-cache"}.items():
            self.send_header(name, value)
        super().end_headers()

    def list_directory(self, path):  # a static app has no folder listings
        self.send_error(404, "Not found")
        return None

    def log_message(self, format, *args):
        if getattr(self.server, "verbose", False):
            super().log_message(format, *args)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    isolation_headers = True
    verbose = False

    def handle_error(self, request, client_address):
        # A browser that drops a connection mid-file (reload, navigation) is normal; stay quiet about it.
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


def make_server(dist: Path, port: int = 0) -> http.server.ThreadingHTTPServer:
    """A threaded HTTP server for `dist` on 127.0.0.1 (port 0: a free one; see `server.server_address`)."""
    dist = Path(dist).resolve()
    if not (dist / "index.html").is_file():
        raise FileNotFoundError(f"{dist} has no index.html: build the site first (`cxr build` or `cxr pwa`)")
    handler = functools.partial(_Handler, directory=str(dist))
    return _Server(("127.0.0.1", port), handler)


def serve(dist: Path, port: int = 8000) -> None:
    """Serve `dist` on http://127.0.0.1:PORT/ until interrupted."""
    server = make_server(dist, port)
    server.verbose = True
    host, real_port = server.server_address[:2]
    print(f"Serving {Path(dist).resolve()} at http://{host}:{real_port}/  (Ctrl+C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
