"""The body limit that keeps one client from exhausting the server's memory: the body is read while counting, and
refused as soon as it is known to be too large."""

from __future__ import annotations

from starlette.requests import Request

from .errors import ApiError

# Tell the server to close the connection after the answer: whatever the client still sends is then never read.
CLOSE = {"Connection": "close"}


def too_large(limit: int) -> ApiError:
    return ApiError(413, f"request body larger than the limit of {limit} bytes", CLOSE)


async def read_body(request: Request, limit: int) -> bytes:
    """The body, in memory, refused as soon as it is known to exceed `limit`: from Content-Length before reading
    anything, else while counting the chunks of a chunked upload."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise ApiError(400, "invalid Content-Length header", CLOSE)
        if int(declared) > limit:
            raise too_large(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large(limit)
    return bytes(body)
