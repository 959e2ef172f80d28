"""What the server is told (command line, the token's environment variable, or, for uvicorn's worker processes, the
settings the parent left in the environment), and the rule that keeps it from being opened to a network without a
token. A `Settings` is checked when it is made: one that exists is one the server can start with."""

from __future__ import annotations

import ipaddress
import json
import os
from pathlib import Path

from pydantic import model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from core.decode import MAX_PIXELS

TOKEN_ENV = "CXR_API_TOKEN"
SETTINGS_ENV = "CXR_API_SETTINGS"  # how the parent hands the settings to uvicorn's worker processes (JSON)
MIN_TOKEN_LENGTH = 16
MiB = 1024 * 1024


class SettingsError(Exception):
    """Settings the server refuses to start with. Not a ValueError on purpose: pydantic would wrap a ValueError
    raised while validating into its own ValidationError and message, and the command line prints this one."""


class Settings(BaseSettings):
    # Frozen: one Settings is shared by the app, its dependencies and the engine. Unknown names are refused.
    model_config = SettingsConfigDict(frozen=True, extra="forbid")

    model: Path  # an export folder (its model.json names the default ONNX file) or one ONNX file beside model.json
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1  # uvicorn worker processes, each with its own onnxruntime session and thread pool
    threads: int = 0  # inference threads per worker; 0: the cores shared out between the workers
    session_threads: int = 1  # onnxruntime intra-op threads per run: the pool already keeps every core busy
    queue: int = 0  # requests admitted at once per worker (running or waiting); 0: twice the threads
    timeout_s: float = 30.0  # the whole request, upload included
    max_body: int = 64 * MiB
    max_files: int = 32  # per batch request (the body limit bounds the bytes; 20 films judge a site shift)
    max_pixels: int = MAX_PIXELS
    token: str | None = None  # given, or read from CXR_API_TOKEN (which does not show in the process list)
    cors_origins: tuple[str, ...] = ()
    site: Path | None = None  # a built PWA (dist/) to serve at /
    site_profile: Path | None = None  # a site's calibration (runtime/site_profile.py) applied to every result
    max_connections: int = 256  # uvicorn's own backstop: beyond it, plain 503s before the app sees anything
    retry_after_s: int = 1

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings) -> tuple[PydanticBaseSettingsSource, ...]:
        # The values given win; the environment supplies the token alone. Reading every field from the environment
        # (pydantic-settings' default) would let a stray HOST or PORT variable change where the server listens.
        return init_settings, _TokenFromEnvironment(settings_cls)

    @model_validator(mode="after")
    def _refuse_what_cannot_work(self) -> Settings:
        return self.check()

    @property
    def pool_size(self) -> int:
        return self.threads or max(1, (os.cpu_count() or 1) // max(1, self.workers))

    @property
    def queue_depth(self) -> int:
        return self.queue or 2 * self.pool_size

    def model_file(self) -> Path:
        """The ONNX file to load: the folder's default model (model.json's default_model), or the file given."""
        model = Path(self.model)
        if model.is_dir():
            card = model / "model.json"
            if not card.exists():
                raise SettingsError(f"{card} not found: --model must be an export folder (run `cxr export` first)")
            return model / json.loads(card.read_text())["default_model"]
        if not model.exists():
            raise SettingsError(f"{model} not found: --model must be an export folder or an ONNX file")
        return model

    def check(self) -> Settings:
        """Refuse what would be unsafe or cannot work (run when the settings are made; again on request, since the
        files it looks at may change); returns self."""
        if not is_loopback(self.host) and not self.token:
            raise SettingsError(f"refusing to listen on {self.host} without a token: anything but a loopback address "
                                f"needs --token or {TOKEN_ENV} (clients then send 'Authorization: Bearer TOKEN')")
        if self.token is not None and len(self.token) < MIN_TOKEN_LENGTH:
            raise SettingsError(f"the token must be at least {MIN_TOKEN_LENGTH} characters "
                                "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')")
        for name in ("workers", "max_body", "max_files", "max_pixels", "max_connections", "session_threads"):
            if getattr(self, name) < 1:
                raise SettingsError(f"{name} must be at least 1")
        if self.timeout_s <= 0 or self.threads < 0 or self.queue < 0:
            raise SettingsError("timeout must be positive, threads and queue 0 (automatic) or more")
        if self.site is not None and not (Path(self.site) / "index.html").is_file():
            raise SettingsError(f"{self.site} has no index.html: build the site first (cxr pwa --model DIR)")
        self.model_file()
        if self.site_profile is not None:
            self.profile()  # refused now, with its reason, rather than when the first request comes
        return self

    def profile(self) -> dict | None:
        """The site profile, loaded and checked against the model file (None without one)."""
        if self.site_profile is None:
            return None
        from runtime.site_profile import load_profile_for_model

        try:
            return load_profile_for_model(self.site_profile, self.model_file())
        except (ValueError, FileNotFoundError) as e:
            raise SettingsError(f"--site-profile refused: {e}") from None


class _TokenFromEnvironment(PydanticBaseSettingsSource):
    """The one setting the environment gives: CXR_API_TOKEN, by that exact name (an empty one counts as none)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[str | None, str, bool]:
        return os.environ.get(TOKEN_ENV) or None, field_name, False

    def __call__(self) -> dict[str, str]:
        token, _, _ = self.get_field_value(self.settings_cls.model_fields["token"], "token")
        return {"token": token} if token else {}


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and the name localhost; everything else (0.0.0.0, ::, a LAN address, a name) is a network."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
