"""Fault injection for the resume and distributed tests: crash or hang at an exact optimiser step."""

from __future__ import annotations

import os
import signal
import time


def crash_for_tests(step: int, rank: int = 0) -> None:
    """CXR_KILL_AT_STEP=N kills this process with SIGKILL right after optimiser step N, the way a crash or an
    out-of-memory kill would (no cleanup). CXR_HANG_AT_STEP=N instead leaves the process alive but stuck there
    forever (a hung peer: only --dist-timeout ends the job). CXR_KILL_RANK=R restricts either to rank R of a
    torchrun job (default: every rank). Unset in normal use, where this does nothing."""
    if os.environ.get("CXR_KILL_RANK", str(rank)) != str(rank):
        return
    if os.environ.get("CXR_KILL_AT_STEP") == str(step):
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get("CXR_HANG_AT_STEP") == str(step):
        while True:
            time.sleep(3600)
