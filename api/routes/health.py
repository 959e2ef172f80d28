"""GET /healthz (liveness) and GET /readyz (readiness, for a load balancer): open without the token."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from ..dependencies import AdmissionDep, EngineDep, SettingsDep
from ..errors import ApiError
from ..schemas import Health, NotReady, QueueState, Ready

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> Health:
    """The process answers."""
    return Health(status="ok")


@router.get("/readyz", response_model=Ready, responses={
    503: {"model": NotReady, "description": "warming up, or the queue is full: retry after Retry-After seconds"}})
async def readyz(settings: SettingsDep, engine: EngineDep, admission: AdmissionDep) -> Ready | JSONResponse:
    """The model is warmed up and the queue has room: a request sent now would be admitted."""
    queue = QueueState(active=admission.active, depth=admission.depth)
    if not engine.ready or admission.full:
        reason = "warming up" if not engine.ready else "queue full"
        body = NotReady(**ApiError(503, reason).body().model_dump(), queue=queue)
        return JSONResponse(body.model_dump(), 503, headers={"Retry-After": str(settings.retry_after_s)})
    return Ready(status="ready", queue=queue, model=engine.model)
