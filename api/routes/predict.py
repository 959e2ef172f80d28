"""POST /v1/predict and /v1/predict/batch: the body read within the limits, the files run in the engine's pool.

These routes read their body themselves (api.limits.read_body, api.uploads): counted against the size limit while it
arrives and parsed in memory, where FastAPI's form parameters would spool large uploads to disk. So FastAPI sees no
body parameter, and the request body of the OpenAPI document is declared from api.schemas' upload models.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated, Literal, TypeVar

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from .. import errors
from ..dependencies import AdmissionDep, EngineDep, SettingsDep
from ..errors import ApiError
from ..limits import CLOSE, read_body
from ..schemas import BatchResponse, BatchUpload, ErrorBody, Prediction, SingleUpload, request_body
from ..uploads import Upload, files_of

T = TypeVar("T")

router = APIRouter(prefix="/v1", tags=["predict"])

ERRORS = {status: {"model": ErrorBody, "description": what} for status, what in {
    400: "empty body, malformed multipart, or a bad parameter", 401: "missing or wrong bearer token",
    408: "the upload did not arrive in time", 413: "body over the size limit", 415: "not a PNG, JPEG or DICOM file",
    422: "a corrupt or unsupported image (the decoder's reason)", 503: "busy: retry after Retry-After seconds",
    504: "no result in time"}.items()}


class Inference:
    """A request's way to the engine: admitted (or 503), its body read within the time limit (or 408), its files
    parsed and its job run in the pool within the same limit (or 504)."""

    def __init__(self, request: Request, settings: SettingsDep, engine: EngineDep, admission: AdmissionDep):
        self.request, self.settings, self.engine, self.admission = request, settings, engine, admission

    async def run(self, job: Callable[[list[Upload]], T]) -> tuple[T, float]:
        """`job(files)` in the pool: (its result, how long the request waited for a thread, in ms)."""
        settings = self.settings
        ticket = self.admission.admit()
        reading = True
        try:
            async with asyncio.timeout(settings.timeout_s):
                body = await read_body(self.request, settings.max_body)
                reading = False
                content_type = self.request.headers.get("content-type")
                return await self.engine.run(ticket, lambda: job(files_of(body, content_type, settings.max_files)))
        except TimeoutError:
            if reading:
                raise ApiError(408, f"the request did not arrive within {settings.timeout_s:g} s", CLOSE) from None
            raise ApiError(504, f"no result within {settings.timeout_s:g} s",
                           {"Retry-After": str(settings.retry_after_s)}) from None
        except ApiError:
            raise
        except Exception as e:  # answered here, so that the connection stays usable (the last resort closes it)
            raise errors.unexpected(self.request, e) from None
        finally:
            if not ticket.handed_over:
                ticket.release()


InferenceDep = Annotated[Inference, Depends()]


@router.post("/predict", response_model=Prediction, response_model_exclude_unset=True,
             openapi_extra=request_body({"application/octet-stream": bytes, "multipart/form-data": SingleUpload}),
             responses={200: {"content": {"image/png": {}},
                              "description": "the result (JSON), or with ?heatmap=png the overlay"}, **ERRORS})
async def predict(inference: InferenceDep, heatmap: Annotated[Literal["png"] | None, Query(
        description="png: answer with the top class's heatmap over the image instead of JSON")] = None,
                  ) -> Prediction | Response:
    """One PNG, JPEG or DICOM file, as the raw body or as the multipart field `file` (its bytes decide what it is,
    never its name or Content-Type)."""
    engine = inference.engine

    def job(files: list[Upload]):
        if len(files) != 1:
            raise ApiError(400, "one file per request here; send several to /v1/predict/batch")
        return (engine.overlay_png if heatmap else engine.analyse)(files[0].data)

    result, queued_ms = await inference.run(job)
    if heatmap:
        return Response(result, media_type="image/png")
    return Prediction.model_validate({**result, "queue_ms": queued_ms})


@router.post("/predict/batch", response_model_exclude_unset=True,
             openapi_extra=request_body({"multipart/form-data": BatchUpload}), responses=ERRORS)
async def predict_batch(inference: InferenceDep) -> BatchResponse:
    """Several multipart `file` fields: one entry per file, in order; a bad file does not fail the others. With
    `site_shift`: whether the files, as one site's, differ from the films the model was validated on (from 20
    files; docs/site.md)."""
    (results, shift), queued_ms = await inference.run(inference.engine.analyse_batch)
    return BatchResponse.model_validate({"results": results, "site_shift": shift, "queue_ms": queued_ms,
                                         "model": inference.engine.model})
