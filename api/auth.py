"""The bearer token: when one is set, every /v1 endpoint requires `Authorization: Bearer TOKEN`."""

from __future__ import annotations

import hmac

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .errors import ApiError
from .limits import CLOSE

_scheme = HTTPBearer(auto_error=False, description="the server's token (--token or CXR_API_TOKEN)")


def bearer(token: str):
    """A FastAPI dependency that refuses a request without the token (compared in constant time)."""
    expected = token.encode()

    async def check(credentials: HTTPAuthorizationCredentials | None = Depends(_scheme)):
        if credentials is None or not hmac.compare_digest(credentials.credentials.encode(), expected):
            # Refused before the body is read; closing the connection leaves the rest of an upload unread.
            raise ApiError(401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer", **CLOSE})

    return check
