"""The bearer token: when one is set, every /v1 endpoint requires `Authorization: Bearer TOKEN`."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .dependencies import SettingsDep
from .errors import ApiError
from .limits import CLOSE

_scheme = HTTPBearer(auto_error=False, description="the server's token (--token or CXR_API_TOKEN)")


async def require_token(settings: SettingsDep,
                        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_scheme)]) -> None:
    """Refuse a request without the settings' token (compared in constant time); none set, none needed."""
    if settings.token is None:
        return
    if credentials is None or not hmac.compare_digest(credentials.credentials.encode(), settings.token.encode()):
        # Refused before the body is read; closing the connection leaves the rest of an upload unread.
        raise ApiError(401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer", **CLOSE})
