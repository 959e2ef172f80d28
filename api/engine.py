"""Inference for the API: one shared `runtime.predictor.Predictor` (one onnxruntime session, safe to run from several
threads) and a thread pool, so that decoding and inference never block the event loop.

The file's bytes are sniffed first (415 for what is not a PNG, JPEG or DICOM at all), then decoded and predicted by
the Predictor exactly as `cxr predict` does (422 with the decoder's reason for a corrupt or unsupported image).
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np

from core.decode import DecodeError, sniff
from runtime import site_shift
from runtime.predictor import Predictor, heatmap

from .admission import Ticket
from .errors import ApiError
from .public_card import public_card
from .schemas import ModelCard, ModelInfo
from .settings import Settings
from .uploads import Upload

T = TypeVar("T")


class Engine:
    """The model (its Predictor, what answers say about it, and its public card) and the threads that run it."""

    def __init__(self, settings: Settings):
        model_file = settings.model_file()
        profile = settings.profile()  # checked against this model file; None without one
        self.predictor = Predictor(model_file, settings.session_threads, profile)
        card = self.predictor.card
        self.model = ModelInfo(name=card["name"], version=card["version"], file=model_file.name)
        self.card = ModelCard.model_validate(public_card({**card, **({"site_profile": profile} if profile else {})}))
        self.max_pixels = settings.max_pixels
        self.pool = ThreadPoolExecutor(settings.pool_size, thread_name_prefix="cxr-inference")
        self.ready = False

    def warm_up(self) -> None:
        """One prediction and one heatmap on a synthetic image: onnxruntime's first run and the lazy imports of
        the overlay (matplotlib) happen now, not in a client's request."""
        gray = np.linspace(0, 255, 64 * 64, dtype=np.float32).reshape(64, 64)
        result = self.predictor.predict(gray)
        _png(heatmap(gray, result.pop("cam"), result)[0])
        self.ready = True

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    async def run(self, ticket: Ticket, job: Callable[[], T]) -> tuple[T, float]:
        """Run `job()` in the pool: (its result, how long it waited for a thread in ms). The ticket is released when
        the job is done, even if the client's wait was cancelled by the request timeout (the thread cannot be
        stopped, and still uses a core)."""
        submitted = time.perf_counter()
        started = []

        def call():
            started.append(time.perf_counter())
            return job()

        future = self.pool.submit(call)
        ticket.handed_over = True
        future.add_done_callback(lambda _: ticket.release())
        result = await asyncio.wrap_future(future)
        return result, (started[0] - submitted) * 1000

    def analyse(self, data: bytes) -> dict:
        """The Predictor's result for one file, with the model and the time it took in all."""
        started = time.perf_counter()
        result, _, _ = self._predict(data)
        return {**result, "total_ms": (time.perf_counter() - started) * 1000, "model": self.model}

    def overlay_png(self, data: bytes) -> bytes:
        """The top class's heatmap over the image, as PNG bytes (made in memory)."""
        result, gray, cams = self._predict(data)
        return _png(heatmap(gray, cams, result)[0])

    def analyse_batch(self, files: list[Upload]) -> tuple[list[dict], dict]:
        """(one result per file, in order: a file that fails is an error result, the others go on; the site-shift
        check over the files analysed, runtime.site_shift)."""
        results = []
        for index, upload in enumerate(files):
            entry = {"index": index, "filename": upload.filename}
            try:
                results.append({**entry, "status": 200, **self.analyse(upload.data)})
            except ApiError as e:
                results.append({**entry, "status": e.status, **e.body().model_dump()})
        analysed = [r for r in results if r["status"] == 200]
        return results, site_shift.check_results(analysed, self.predictor.card, self.model.file)

    def _predict(self, data: bytes) -> tuple[dict, np.ndarray, np.ndarray]:
        try:
            sniff(data)
        except DecodeError as e:
            # Nothing at all (400), or bytes that are not an image format this model reads (415).
            raise ApiError(400 if not data else 415, e.reason) from None
        try:
            return self.predictor.predict_file(data, max_pixels=self.max_pixels)
        except DecodeError as e:
            raise ApiError(422, e.reason) from None


def _png(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "PNG", compress_level=3)  # speed over a few % of size for an overlay
    return buffer.getvalue()
