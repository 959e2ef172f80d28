"""Every error the API answers is JSON `{"error": <what>, "reason": <why, in words>}` (api.schemas.ErrorBody) with a
deliberate status, and never a traceback or a server path: anything unexpected becomes a generic 500 and is logged
here instead."""

from __future__ import annotations

import logging
from http import HTTPStatus

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from .schemas import ErrorBody

log = logging.getLogger("cxr.api")


class ApiError(Exception):
    """An answer other than 200: status, a reason meant for the client, and headers (Retry-After, ...)."""

    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers or {}

    def body(self) -> ErrorBody:
        return ErrorBody(error=HTTPStatus(self.status).phrase.lower(), reason=self.reason)


def response(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body().model_dump(), error.status, headers=error.headers)


def unexpected(request: Request, exc: Exception) -> ApiError:
    """A failure nobody planned for: the detail and traceback go to the server's log (the request's body is never
    in it), the client learns only that it failed."""
    log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return ApiError(500, "the server could not process this request; the error was logged")


async def api_error(request: Request, exc: ApiError) -> JSONResponse:
    return response(exc)


async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
    """404, 405, ... from the router."""
    reason = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    return response(ApiError(exc.status_code, reason, dict(exc.headers or {})))


async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    """A query parameter out of range: 400 (FastAPI's default would be 422, which here means a bad image)."""
    problems = "; ".join(f"{' '.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}"
                         for e in exc.errors())
    return response(ApiError(400, problems or "invalid request"))


async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    """The last resort, outside every route."""
    return response(unexpected(request, exc))


# Every kind of failure, routed to the one JSON shape (FastAPI(exception_handlers=HANDLERS)).
HANDLERS = {ApiError: api_error, HTTPException: http_error, RequestValidationError: invalid_request,
            Exception: unexpected_error}
