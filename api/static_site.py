"""The optional PWA at / (`cxr api --site dist/`), with exactly the headers `cxr serve` sends (pwa.headers)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from starlette.datastructures import MutableHeaders
from starlette.staticfiles import StaticFiles

from pwa.headers import app_headers
from pwa.serve import MIME_TYPES, build_csp


class StaticSite:
    def __init__(self, dist: Path):
        self.files = StaticFiles(directory=Path(dist), html=True)  # no folder listings, nothing outside dist
        self.headers = {**app_headers(build_csp(Path(dist))), "Cache-Control": "no-cache"}

    async def __call__(self, scope, receive, send):
        suffix = PurePosixPath(scope.get("path", "")).suffix

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.update(self.headers)
                if suffix in MIME_TYPES:  # the system's MIME table may not know .wasm, .mjs or .webmanifest
                    headers["Content-Type"] = MIME_TYPES[suffix]
            await send(message)

        await self.files(scope, receive, send_with_headers)
