"""GET /v1/model: the model card."""

from __future__ import annotations

from fastapi import APIRouter

from ..dependencies import EngineDep
from ..schemas import ErrorBody, ModelCard

router = APIRouter(prefix="/v1", tags=["model"])


@router.get("/model", response_model_exclude_unset=True,
            responses={401: {"model": ErrorBody, "description": "missing or wrong bearer token"}})
async def model_card(engine: EngineDep) -> ModelCard:
    """model.json of the model served, without where its checkpoint and data lay on the build machine (their
    checksums stay) and with any other absolute path cut to its file name."""
    return engine.card
