"""The ASGI app: `create_app(settings)` (uvicorn's worker processes call `from_environment()` instead).

POST /v1/predict         one file, as the raw body or as the multipart field `file`; ?heatmap=png for the overlay
POST /v1/predict/batch   several multipart `file` fields: one result per file, a bad file does not fail the others
GET  /v1/model           the model card
GET  /healthz, /readyz   liveness, and readiness (model warmed up, queue not full)
GET  /docs, /openapi.json
/                        the PWA, when --site is given
"""

from __future__ import annotations

import asyncio
import os
from contextlib import asynccontextmanager
from typing import Literal

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response

from . import errors
from .auth import bearer
from .card import public_card
from .engine import Engine
from .errors import ApiError
from .limits import CLOSE, Queue, read_body
from .middleware import API_HEADERS, AccessLog, DefaultHeaders
from .settings import SETTINGS_ENV, Settings
from .site import Site
from .uploads import files_of

_BINARY = {"type": "string", "format": "binary"}
_UPLOAD = {"requestBody": {"required": True, "content": {
    "application/octet-stream": {"schema": _BINARY},
    "multipart/form-data": {"schema": {"type": "object", "properties": {"file": _BINARY}, "required": ["file"]}},
}}}
_BATCH = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "properties": {"file": {"type": "array", "items": _BINARY}}, "required": ["file"]}}}}}
_ERRORS = {status: {"description": what} for status, what in {
    400: "empty body, malformed multipart, or a bad parameter", 401: "missing or wrong bearer token",
    408: "the upload did not arrive in time", 413: "body over the size limit", 415: "not a PNG, JPEG or DICOM file",
    422: "a corrupt or unsupported image (the decoder's reason)", 503: "busy: retry after Retry-After seconds",
    504: "no result in time"}.items()}


def create_app(settings: Settings) -> FastAPI:
    settings.check()
    engine = Engine(settings)
    queue = Queue(settings.queue_depth, settings.retry_after_s)

    @asynccontextmanager
    async def lifespan(app):
        await asyncio.to_thread(engine.warm_up)
        yield
        engine.close()

    app = FastAPI(title="cxr-triage", version=engine.model["version"], lifespan=lifespan,
                  summary="Chest X-ray triage (research, not a medical device): the model of the offline app.")
    app.state.engine, app.state.queue = engine, queue
    errors.install(app)

    async def admitted(request: Request, job):
        """Admit the request (or 503), read its body within the time limit, then parse its files and run
        `job(files)` in the pool: (the job's result, how long it waited for a thread)."""
        ticket = queue.admit()
        reading = True
        try:
            async with asyncio.timeout(settings.timeout_s):
                body = await read_body(request, settings.max_body)
                reading = False
                content_type = request.headers.get("content-type")
                return await engine.run(ticket, lambda: job(files_of(body, content_type, settings.max_files)))
        except TimeoutError:
            if reading:
                raise ApiError(408, f"the request did not arrive within {settings.timeout_s:g} s", CLOSE) from None
            raise ApiError(504, f"no result within {settings.timeout_s:g} s",
                           {"Retry-After": str(settings.retry_after_s)}) from None
        except ApiError:
            raise
        except Exception as e:  # answered here, so that the connection stays usable (the last resort closes it)
            raise errors.unexpected(request, e) from None
        finally:
            if not ticket.handed_over:
                ticket.release()

    v1 = APIRouter(prefix="/v1", dependencies=[Depends(bearer(settings.token))] if settings.token else [])

    @v1.post("/predict", openapi_extra=_UPLOAD, responses={
        200: {"content": {"application/json": {}, "image/png": {}},
              "description": "the result (JSON), or with ?heatmap=png the overlay"}, **_ERRORS})
    async def predict(request: Request, heatmap: Literal["png"] | None = Query(
            None, description="png: answer with the top class's heatmap over the image instead of JSON")):
        def job(files):
            if len(files) != 1:
                raise ApiError(400, "one file per request here; send several to /v1/predict/batch")
            return (engine.overlay_png if heatmap else engine.analyse)(files[0].data)

        result, queued_ms = await admitted(request, job)
        if heatmap:
            return Response(result, media_type="image/png")
        return {**result, "queue_ms": queued_ms}

    @v1.post("/predict/batch", openapi_extra=_BATCH, responses=_ERRORS)
    async def predict_batch(request: Request):
        results, queued_ms = await admitted(request, engine.analyse_batch)
        return {"results": results, "queue_ms": queued_ms, "model": engine.model}

    card = public_card(engine.predictor.card)

    @v1.get("/model")
    async def model_card():
        return card

    app.include_router(v1)

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz():
        state = {"active": queue.active, "depth": queue.depth}
        if not engine.ready or queue.full:
            reason = "warming up" if not engine.ready else "queue full"
            return JSONResponse({**ApiError(503, reason).body(), "queue": state}, 503,
                                headers={"Retry-After": str(settings.retry_after_s)})
        return {"status": "ready", "queue": state, "model": engine.model}

    if settings.site:
        app.mount("/", Site(settings.site))  # after every route, so it only gets what they do not match
    if settings.cors_origins:  # off unless configured: a browser page elsewhere cannot call the API by default
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"], max_age=600)
    app.add_middleware(DefaultHeaders, headers=API_HEADERS)
    app.add_middleware(AccessLog)
    return app


def from_environment() -> FastAPI:
    """uvicorn's factory in each worker process: the settings the parent left in the environment."""
    return create_app(Settings.from_env(os.environ[SETTINGS_ENV]))
