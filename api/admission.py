"""Admission control: a bounded number of requests in the server at once, so that a burst is answered 503 at once
instead of piling up. Not a queue that orders anything: a counter of admitted requests, with one ticket each."""

from __future__ import annotations

import threading

from .errors import ApiError
from .limits import CLOSE


class Admission:
    """At most `depth` requests in the server at once, from admission until their inference has finished (a
    request that timed out still holds its place until its thread is done, so the bound holds for the CPUs)."""

    def __init__(self, depth: int, retry_after_s: int):
        self.depth = depth
        self.retry_after_s = retry_after_s
        self.active = 0
        self._lock = threading.Lock()  # tickets are released from inference threads too

    def admit(self) -> Ticket:
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
    """One admitted request's place; released exactly once, by whoever finishes last with it."""

    def __init__(self, admission: Admission):
        self._admission = admission
        self._released = False
        self._lock = threading.Lock()
        self.handed_over = False  # an inference thread now owns the release

    def release(self) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
        self._admission._leave()
