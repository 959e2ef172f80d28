"""Every error the API answers is JSON `{"error": <what>, "reason": <why, in words>}` with a deliberate status, and
never a traceback or a server path: anything unexpected becomes a generic 500 and is logged here instead."""

from __future__ import annotations

import logging
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

log = logging.getLogger("cxr.api")


class ApiError(Exception):
    """An answer other than 200: status, a reason meant for the client, and headers (Retry-After, ...)."""

    def __init__(self, status: int, reason: str, headers: dict | None = None):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": HTTPStatus(self.status).phrase.lower(), "reason": self.reason}


def response(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), error.status, headers=error.headers)


def unexpected(request: Request, exc: Exception) -> ApiError:
    """A failure nobody planned for: the detail and traceback go to the server's log (the request's body is never
    in it), the client learns only that it failed."""
    log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return ApiError(500, "the server could not process this request; the error was logged")


def install(app: FastAPI) -> None:
    """Route every kind of failure to the one JSON shape."""

    async def api_error(request: Request, exc: ApiError):
        return response(exc)

    async def http_error(request: Request, exc: HTTPException):  # 404, 405, ... from the router
        reason = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        return response(ApiError(exc.status_code, reason, dict(exc.headers or {})))

    async def invalid(request: Request, exc: RequestValidationError):  # a query parameter out of range
        problems = "; ".join(f"{' '.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}"
                             for e in exc.errors())
        return response(ApiError(400, problems or "invalid request"))

    async def unexpected_error(request: Request, exc: Exception):  # the last resort, outside every route
        return response(unexpected(request, exc))

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(Exception, unexpected_error)
