"""A real API server on 127.0.0.1 (uvicorn in a thread of the test process), with the tiny exported model."""

import io
import threading
from contextlib import contextmanager

import httpx
import numpy as np
import pytest
from PIL import Image

from api.server import Running
from api.settings import Settings

DICOM = "dicom/c64d5667-a776-4f95-9e21-bfabafb07740.dcm"
TOKEN = "test-token-0123456789abcdef"


@contextmanager
def api_server(model, **settings):
    """(url, the Running server) for a server with these settings; stopped afterwards."""
    running = Running(Settings(model=model, **settings))
    with running as url:
        yield url, running


@pytest.fixture(scope="module")
def server(tiny_export):
    with api_server(tiny_export) as (url, running):
        yield url, running


@pytest.fixture
def client():
    with httpx.Client(timeout=30) as c:
        yield c


@pytest.fixture(scope="session")
def real_files(shared_cxr, tmp_path_factory) -> dict:
    """The shared PNG and DICOM, and a JPEG re-encoded from the PNG (quality 92)."""
    png = sorted((shared_cxr / "images").glob("*.png"))[0]
    jpeg = tmp_path_factory.mktemp("jpeg") / f"{png.stem}.jpg"
    Image.open(png).convert("L").save(jpeg, "JPEG", quality=92)
    return {"png": png, "jpeg": jpeg, "dicom": shared_cxr / DICOM}


def noise_png(side: int, seed: int = 0) -> bytes:
    """A gray PNG of noise: large (about side**2 bytes) because noise does not compress."""
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (side, side), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def held_body(data: bytes, release: threading.Event, sent: threading.Event | None = None):
    """A request body that sends half of `data`, then waits for `release` before sending the rest."""
    yield data[: len(data) // 2]
    if sent:
        sent.set()
    release.wait(30)
    yield data[len(data) // 2:]
