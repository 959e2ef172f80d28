"""`cxr api`: the options, and starting the server (`python build.py api ...` is the same)."""

from __future__ import annotations

import argparse
from pathlib import Path

from runtime.paths import RELEASE_DIR

from .settings import TOKEN_ENV, MiB, Settings, SettingsError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, default=RELEASE_DIR,
                        help="an export folder (its default model) or one ONNX file beside model.json")
    parser.add_argument("--host", default="127.0.0.1",
                        help=f"address to listen on; anything but loopback needs a token ({TOKEN_ENV} or --token)")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes, each with its own session")
    parser.add_argument("--threads", type=int, default=0,
                        help="inference threads per worker (0: the cores shared out between the workers)")
    parser.add_argument("--session-threads", type=int, default=1, help="onnxruntime intra-op threads per inference")
    parser.add_argument("--queue", type=int, default=0,
                        help="requests admitted at once per worker, beyond which 503 (0: twice the threads)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds for a whole request, upload included")
    parser.add_argument("--max-body-mb", type=float, default=64, help="request size limit in MiB (413 beyond)")
    parser.add_argument("--max-files", type=int, default=32, help="files per batch request")
    parser.add_argument("--token", help=f"bearer token for /v1 (better: the {TOKEN_ENV} environment variable, "
                                        "which does not show in the process list)")
    parser.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                        help="allow browser pages of this origin to call the API (repeatable; default: none)")
    parser.add_argument("--site", type=Path, help="also serve this built PWA (dist/) at /")
    parser.add_argument("--site-profile", type=Path,
                        help="calibrate every result for a site with its profile (`cxr validate` writes one; it must "
                             "have been fitted for the model served); GET /v1/model shows it")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def settings_from(args: argparse.Namespace) -> Settings:
    """The options as Settings; without --token, Settings reads CXR_API_TOKEN itself. Raises SettingsError."""
    token = {"token": args.token} if args.token else {}
    return Settings(model=args.model, host=args.host, port=args.port, workers=args.workers, threads=args.threads,
                    session_threads=args.session_threads, queue=args.queue, timeout_s=args.timeout,
                    max_body=int(args.max_body_mb * MiB), max_files=args.max_files,
                    cors_origins=tuple(args.cors_origin), site=args.site, site_profile=args.site_profile, **token)


def run(args: argparse.Namespace) -> int:
    from .server import serve  # uvicorn only when the server runs, not for `cxr api --help`

    try:
        settings = settings_from(args)
    except SettingsError as e:
        raise SystemExit(f"api: {e}") from None
    print(f"cxr api: http://{settings.host}:{settings.port}/docs  ({settings.workers} worker(s) x "
          f"{settings.pool_size} inference thread(s), queue {settings.queue_depth}; Ctrl+C to stop)", flush=True)
    serve(settings, args.log_level)
    return 0
