"""The ASGI app: `create_app(settings)` (uvicorn's worker processes call `from_environment()` instead).

POST /v1/predict         one file, as the raw body or as the multipart field `file`; ?heatmap=png for the overlay
POST /v1/predict/batch   several multipart `file` fields: one result per file, a bad file does not fail the others
GET  /v1/model           the model card
GET  /healthz, /readyz   liveness, and readiness (model warmed up, queue not full)
GET  /docs, /openapi.json
/                        the PWA, when --site is given

The routes live in api.routes and get what they use through api.dependencies; this module only assembles.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.middleware import Middleware

from . import errors
from .admission import Admission
from .auth import require_token
from .engine import Engine
from .middleware import API_HEADERS, AccessLog, DefaultHeaders
from .routes import health, model, predict
from .settings import SETTINGS_ENV, Settings
from .static_site import StaticSite


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    engine: Engine = app.state.engine
    await asyncio.to_thread(engine.warm_up)
    yield
    engine.close()


def middleware(settings: Settings) -> list[Middleware]:
    """Outermost first: the access log sees every answer, the default headers go on every API answer."""
    stack = [Middleware(AccessLog), Middleware(DefaultHeaders, headers=API_HEADERS)]
    if settings.cors_origins:  # off unless configured: a browser page elsewhere cannot call the API by default
        stack.append(Middleware(CORSMiddleware, allow_origins=list(settings.cors_origins),
                                allow_methods=["GET", "POST"], allow_headers=["Authorization", "Content-Type"],
                                max_age=600))
    return stack


def create_app(settings: Settings) -> FastAPI:
    engine = Engine(settings)
    app = FastAPI(title="cxr-triage", version=engine.model.version, lifespan=lifespan,
                  summary="Chest X-ray triage (research, not a medical device): the model of the offline app.",
                  exception_handlers=errors.HANDLERS, middleware=middleware(settings))
    app.state.settings = settings
    app.state.engine = engine
    app.state.admission = Admission(settings.queue_depth, settings.retry_after_s)
    # Only with a token does /v1 require one (and the OpenAPI document say so); the probes always stay open.
    protected = [Depends(require_token)] if settings.token else []
    app.include_router(predict.router, dependencies=protected)
    app.include_router(model.router, dependencies=protected)
    app.include_router(health.router)
    if settings.site:
        app.mount("/", StaticSite(settings.site))  # after every route, so it only gets what they do not match
    return app


def from_environment() -> FastAPI:
    """uvicorn's factory in each worker process: the settings the parent left in the environment."""
    return create_app(Settings.model_validate_json(os.environ[SETTINGS_ENV]))
