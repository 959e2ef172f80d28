"""Two pure ASGI wrappers: the access log, and the headers every API answer carries."""

from __future__ import annotations

import logging
import time

from starlette.datastructures import MutableHeaders

access = logging.getLogger("cxr.api.access")

# Results are about one patient's image: no cache on the way may keep them. The site sets its own Cache-Control.
API_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


class AccessLog:
    """One line per request: client, method, path (never the query string), status, duration and byte counts.
    Never a file name, a header value or a byte of the body: the images are patient data."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        seen = {"status": 0, "in": 0, "out": 0}

        async def counting_receive():
            message = await receive()
            seen["in"] += len(message.get("body", b""))
            return message

        async def counting_send(message):
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
            seen["out"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, counting_receive, counting_send)
        except Exception:
            seen["status"] = seen["status"] or 500
            raise
        finally:
            client = scope.get("client") or ("-", 0)
            access.info('%s "%s %s" %s %.1f ms in=%d out=%d', client[0], scope["method"], scope["path"][:200],
                        seen["status"] or "-", (time.perf_counter() - started) * 1000, seen["in"], seen["out"])


class DefaultHeaders:
    """Add `headers` to every response that does not set them itself."""

    def __init__(self, app, headers: dict):
        self.app = app
        self.headers = headers

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.headers.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)
