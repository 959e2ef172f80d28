"""What the routes are given (`Depends`): the app's settings, engine and admission, made once by `create_app` and
kept on `app.state`, so that the routes are module-level functions and a test can reach the same objects."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from .admission import Admission
from .engine import Engine
from .settings import Settings


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_engine(request: Request) -> Engine:
    return request.app.state.engine


def get_admission(request: Request) -> Admission:
    return request.app.state.admission


SettingsDep = Annotated[Settings, Depends(get_settings)]
EngineDep = Annotated[Engine, Depends(get_engine)]
AdmissionDep = Annotated[Admission, Depends(get_admission)]
