"""The server as it is run: a separate process (`python -m cxr api`) that writes nothing to disk, and no torch."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import REPO
from tests.corpus import write_bad_corpus

from .conftest import noise_png


def listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_nothing_is_written_to_disk(tiny_export, real_files, tmp_path):
    # The server gets a working directory, temp dir and home of its own, empty: anything it writes shows there.
    cwd, tmp, home = (tmp_path / name for name in ("cwd", "tmp", "home"))
    for folder in (cwd, tmp, home):
        folder.mkdir()
    bad = write_bad_corpus(tmp_path / "bad")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "MPLCONFIGDIR", "CXR_API"))}
    env.update(TMPDIR=str(tmp), TEMP=str(tmp), TMP=str(tmp), HOME=str(home), PYTHONPATH=str(REPO))
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "cxr", "api", "--model", str(tiny_export), "--port", str(port),
                               "--log-level", "warning"], cwd=cwd, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(timeout=30) as client:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if client.get(f"{url}/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert server.poll() is None and time.monotonic() < deadline, server.stdout.read()
                time.sleep(0.2)
            before = [listing(folder) for folder in (cwd, tmp, home)]
            big = noise_png(1800)  # about 3 MB: over the 1 MB at which Starlette's form parser spools to a file
            assert len(big) > 2 << 20
            for path in real_files.values():
                assert client.post(f"{url}/v1/predict", content=path.read_bytes()).status_code == 200
                assert client.post(f"{url}/v1/predict?heatmap=png",
                                   files={"file": (path.name, path.read_bytes())}).status_code == 200
            assert client.post(f"{url}/v1/predict", files={"file": ("big.png", big)}).status_code == 200
            batch = [("file", (p.name, p.read_bytes())) for p in [*real_files.values(), *bad[:5]]]
            batch.append(("file", ("big.png", big)))
            assert client.post(f"{url}/v1/predict/batch", files=batch).status_code == 200
            for path in bad:
                assert client.post(f"{url}/v1/predict", files={"file": (path.name, path.read_bytes())}).is_error
            assert client.post(f"{url}/v1/predict", content=bytes(70 << 20)).status_code == 413
            after = [listing(folder) for folder in (cwd, tmp, home)]
    finally:
        server.terminate()
        server.wait(30)
    assert after == before
    assert before[:2] == [set(), set()]  # nothing in the working or temp directory at startup either


def test_the_server_never_imports_torch(tiny_export):
    code = ("import sys; from pathlib import Path; from cxr import cli; cli.parser_for('api'); "
            "from api.app import create_app; from api.settings import Settings; "
            f"app = create_app(Settings(model=Path({str(tiny_export)!r}))); app.state.engine.warm_up(); "
            "print(*sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    modules = result.stdout.split()
    assert "api.engine" in modules and "onnxruntime" in modules
    assert not [m for m in modules if m == "torch" or m.startswith("torch.")]
