"""Run the app on uvicorn: `serve(settings)` blocks (`cxr api`); `Running(settings)` starts it in a thread of this
process on a free port of 127.0.0.1, for the tests and the benchmark."""

from __future__ import annotations

import copy
import os
import socket
import threading

import uvicorn
from uvicorn.config import LOGGING_CONFIG

from .app import create_app
from .settings import SETTINGS_ENV, Settings


def _log_config(level: str) -> dict:
    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["cxr.api"] = {"handlers": ["default"], "level": level.upper(), "propagate": False}
    return config


def _options(settings: Settings, log_level: str) -> dict:
    return dict(
        log_config=_log_config(log_level), log_level=log_level,
        access_log=False,  # uvicorn's would log query strings; api.middleware.AccessLog logs what is safe
        server_header=False, timeout_keep_alive=5, timeout_graceful_shutdown=10,
        limit_concurrency=settings.max_connections,
    )


def serve(settings: Settings, log_level: str = "info") -> None:
    options = _options(settings, log_level)
    if settings.workers == 1:
        uvicorn.Server(uvicorn.Config(create_app(settings), host=settings.host, port=settings.port,
                                      **options)).run()
        return
    # Several processes, each with its own session and thread pool, sharing the listening socket; uvicorn needs an
    # import string for them, so the settings travel in the environment.
    os.environ[SETTINGS_ENV] = settings.model_dump_json()
    uvicorn.run("api.app:from_environment", factory=True, host=settings.host, port=settings.port,
                workers=settings.workers, **options)


class Running:
    """`with Running(settings) as url:` a real server on 127.0.0.1, stopped on exit."""

    def __init__(self, settings: Settings, log_level: str = "warning"):
        self.app = create_app(settings)
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(self.app, **_options(settings, log_level)))
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self._socket]}, daemon=True)

    def __enter__(self) -> str:
        self._thread.start()
        while not self.server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the API server did not start")
            self._thread.join(0.02)
        return self.url

    def __exit__(self, *exc):
        self.server.should_exit = True
        self._thread.join(15)
        self._socket.close()
