"""The limits that keep one client from exhausting the server: body size, read while counting, and a bounded queue
of admitted requests that answers 503 at once instead of letting requests pile up."""

from __future__ import annotations

import threading

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


class Queue:
    """At most `depth` requests in the server at once, from admission until their inference has finished (a
    request that timed out still holds its place until its thread is done, so the bound holds for the CPUs)."""

    def __init__(self, depth: int, retry_after_s: int):
        self.depth = depth
        self.retry_after_s = retry_after_s
        self.active = 0
        self._lock = threading.Lock()  # tickets are released from inference threads too

    def admit(self) -> "Ticket":
        with self._lock:
            if self.active >= self.depth:
                raise ApiError(503, f"the server is busy ({self.depth} requests in progress); retry shortly",
                               {"Retry-After": str(self.retry_after_s), **CLOSE})
            self.active += 1
        return Ticket(self)

    def _leave(self) -> None:
        with self._lock:
            self.active -= 1

    @property
    def full(self) -> bool:
        return self.active >= self.depth


class Ticket:
    """One admitted request's place in the queue; released exactly once, by whoever finishes last with it."""

    def __init__(self, queue: Queue):
        self._queue = queue
        self._released = False
        self._lock = threading.Lock()
        self.handed_over = False  # an inference thread now owns the release

    def release(self) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
        self._queue._leave()
