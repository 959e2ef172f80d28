"""The HTTP headers the app needs, in one place: `cxr serve`, the service worker (sw.js, rendered with them)
and the REST API's optional site all send exactly these.

- Cross-origin isolation (COOP/COEP/CORP), so onnxruntime-web can use wasm threads;
- the Content-Security-Policy of the page's meta tag, plus frame-ancestors (which only works as a header), which
  also covers the workers;
- nosniff and no referrer.
"""

from __future__ import annotations

# 'wasm-unsafe-eval' lets onnxruntime-web compile its WebAssembly; nothing else is allowed in.
CSP_DIRECTIVES = (
    ("default-src", "'self'"),
    ("script-src", "'self' 'wasm-unsafe-eval'"),
    ("style-src", "'self'"),
    ("img-src", "'self'"),
    ("connect-src", "'self'"),
    ("worker-src", "'self'"),
    ("manifest-src", "'self'"),
    ("object-src", "'none'"),
    ("base-uri", "'none'"),
    ("form-action", "'none'"),
)
CSP = "; ".join(f"{name} {value}" for name, value in CSP_DIRECTIVES)

ISOLATION_HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
}


def app_headers(csp: str | None = CSP, isolation: bool = True) -> dict:
    """Every response of the app carries these. `csp`: the build's policy (build.json records it); None: none."""
    headers = dict(ISOLATION_HEADERS) if isolation else {}
    if csp:
        headers["Content-Security-Policy"] = f"{csp}; frame-ancestors 'none'"
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Referrer-Policy"] = "no-referrer"
    return headers
