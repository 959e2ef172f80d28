"""What a public endpoint must withstand: bad files, huge bodies, bursts, slow clients, failures, the network."""

import logging
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from api.settings import Settings, SettingsError
from tests.conftest import REPO
from tests.corpus import BAD_INPUTS, write_bad_corpus

from .conftest import TOKEN, api_server, held_body, noise_png

# Bytes that are no image format the model reads: 415. Nothing at all: 400. A PNG, JPEG or DICOM that cannot be
# decoded (or is too large, or unsupported inside): 422. Each with the decoder's reason.
UNSUPPORTED = {"notes.png", "page.dcm", "animation.gif", "random.jpg", "raw_dataset.dcm"}


def expected_status(name: str) -> int:
    return 400 if name == "empty.png" else 415 if name in UNSUPPORTED else 422


def test_bad_corpus_gets_the_right_4xx_with_a_reason(server, client, tmp_path, real_files):
    url, _ = server
    reasons = {name: reason for name, _, reason in BAD_INPUTS}
    good = real_files["png"].read_bytes()
    for path in write_bad_corpus(tmp_path):
        for response in (client.post(f"{url}/v1/predict", content=path.read_bytes()),
                         client.post(f"{url}/v1/predict", files={"file": (path.name, path.read_bytes())})):
            assert response.status_code == expected_status(path.name), (path.name, response.text)
            body = response.json()
            assert set(body) == {"error", "reason"}
            assert reasons[path.name] in body["reason"], (path.name, body)
            assert str(tmp_path) not in response.text and "Traceback" not in response.text
            assert client.post(f"{url}/v1/predict", content=good).status_code == 200  # the server is fine


def test_a_300_mb_body_gets_413_quickly(server, client):
    url, _ = server
    chunk = bytes(1 << 20)
    for headers in ({"Content-Length": str(300 << 20)}, {}):  # declared, then chunked (counted while reading)
        started = time.perf_counter()
        response = client.post(f"{url}/v1/predict", content=(chunk for _ in range(300)), headers=headers)
        assert response.status_code == 413, response.text
        assert "limit" in response.json()["reason"]
        assert time.perf_counter() - started < 3
    assert client.get(f"{url}/healthz").status_code == 200


def test_malformed_requests(server, client, real_files):
    url, _ = server
    too_many = Settings.model_fields["max_files"].default + 1  # one more file than a batch may hold
    image = real_files["png"].read_bytes()
    cases = [
        client.post(f"{url}/v1/predict", content=b"--x\r\ngarbage", headers={"Content-Type": "multipart/form-data"}),
        client.post(f"{url}/v1/predict", files={"other": ("a.png", image)}),
        client.post(f"{url}/v1/predict", files=[("file", ("a.png", image)), ("file", ("b.png", image))]),
        client.post(f"{url}/v1/predict?heatmap=gif", content=image),
        client.post(f"{url}/v1/predict/batch", files=[("file", ("a.png", b"x"))] * too_many),
    ]
    assert [r.status_code for r in cases] == [400, 400, 400, 400, 413]
    assert all(set(r.json()) == {"error", "reason"} for r in cases)
    assert client.get(f"{url}/nowhere").json() == {"error": "not found", "reason": "Not Found"}
    assert client.get(f"{url}/v1/predict").status_code == 405


def test_burst_beyond_the_queue_gets_503_and_every_accepted_request_is_answered(tiny_export, real_files):
    image = real_files["png"].read_bytes()
    with api_server(tiny_export, threads=1, queue=2) as (url, running):
        admission = running.app.state.admission
        release = threading.Event()
        with ThreadPoolExecutor(24) as pool, httpx.Client(timeout=30) as client:
            # Two uploads that stop half-way hold the whole queue: everything else is refused at once.
            held = [pool.submit(client.post, f"{url}/v1/predict", content=held_body(image, release))
                    for _ in range(2)]
            deadline = time.monotonic() + 10
            while admission.active < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            refused = [client.post(f"{url}/v1/predict", content=image) for _ in range(5)]
            assert {r.status_code for r in refused} == {503}
            assert all(r.headers["Retry-After"] == "1" and r.json()["reason"] for r in refused)
            assert client.get(f"{url}/readyz").status_code == 503  # a load balancer sends traffic elsewhere
            release.set()
            assert [f.result().status_code for f in held] == [200, 200]
            # A burst of 24 at once on one thread and a queue of 2: each answered, 200 or 503, none lost.
            big = noise_png(1024)
            burst = [f.result() for f in [pool.submit(client.post, f"{url}/v1/predict", content=big)
                                          for _ in range(24)]]
            codes = [r.status_code for r in burst]
            assert set(codes) <= {200, 503} and 200 in codes, codes
            assert client.post(f"{url}/v1/predict", content=image).status_code == 200
        assert admission.active == 0


def test_timeouts(tiny_export, real_files, client):
    image = real_files["png"].read_bytes()
    with api_server(tiny_export, timeout_s=0.5) as (url, running):
        # An upload that stalls: 408.
        release = threading.Event()
        threading.Timer(1.5, release.set).start()
        slow = client.post(f"{url}/v1/predict", content=held_body(image, release))
        assert slow.status_code == 408, slow.text
        # An inference that takes too long: 504, and its place in the queue is held until its thread is done.
        predictor = running.app.state.engine.predictor
        predict = predictor.predict
        predictor.predict = lambda gray: (time.sleep(1.5), predict(gray))[1]
        try:
            late = client.post(f"{url}/v1/predict", content=image)
            assert late.status_code == 504 and late.json()["error"] == "gateway timeout"
            assert running.app.state.admission.active == 1
            time.sleep(1.5)
            assert running.app.state.admission.active == 0
        finally:
            predictor.predict = predict
        assert client.post(f"{url}/v1/predict", content=image).status_code == 200


def test_unexpected_errors_say_nothing_about_the_server(tiny_export, real_files, client, caplog):
    with api_server(tiny_export) as (url, running):
        predictor = running.app.state.engine.predictor
        predict = predictor.predict

        def broken(gray):
            raise RuntimeError(f"session failed in {REPO}/secret/model.onnx")

        predictor.predict = broken
        try:
            response = client.post(f"{url}/v1/predict", content=real_files["png"].read_bytes())
        finally:
            predictor.predict = predict
        assert response.status_code == 500
        assert set(response.json()) == {"error", "reason"}
        assert str(REPO) not in response.text and "Traceback" not in response.text and "secret" not in response.text
        assert client.post(f"{url}/v1/predict", content=real_files["png"].read_bytes()).status_code == 200


def test_access_log_has_no_file_names_queries_or_contents(server, client, real_files):
    url, _ = server
    lines = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    log = logging.getLogger("cxr.api.access")
    log.addHandler(handler)
    log.setLevel(logging.INFO)  # the test server logs warnings only
    try:
        name = "Doe_John_1970-01-01.png"
        client.post(f"{url}/v1/predict?heatmap=png", files={"file": (name, real_files["png"].read_bytes())})
        client.post(f"{url}/v1/predict/batch", files={"file": (name, real_files["png"].read_bytes())})
    finally:
        log.removeHandler(handler)
        log.setLevel(logging.NOTSET)
    assert len(lines) == 2
    assert '"POST /v1/predict" 200' in lines[0] and '"POST /v1/predict/batch" 200' in lines[1]
    assert not any("Doe" in line or "heatmap" in line or "PNG" in line for line in lines)


def test_cors_is_off_unless_configured(tiny_export, server, client):
    url, _ = server
    origin = {"Origin": "https://elsewhere.example"}
    preflight = {**origin, "Access-Control-Request-Method": "POST"}
    assert "access-control-allow-origin" not in client.get(f"{url}/v1/model", headers=origin).headers
    assert "access-control-allow-origin" not in client.options(f"{url}/v1/predict", headers=preflight).headers
    with api_server(tiny_export, cors_origins=("https://app.example",)) as (cors_url, _):
        allowed = client.options(f"{cors_url}/v1/predict",
                                 headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"})
        assert allowed.headers["access-control-allow-origin"] == "https://app.example"
        other = client.get(f"{cors_url}/v1/model", headers=origin)
        assert "access-control-allow-origin" not in other.headers


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "example.org"])
def test_no_network_bind_without_a_token(host, tiny_export):
    with pytest.raises(SettingsError, match="without a token"):
        Settings(model=tiny_export, host=host).check()
    Settings(model=tiny_export, host=host, token=TOKEN).check()
    with pytest.raises(SettingsError, match="at least"):
        Settings(model=tiny_export, host=host, token="short").check()


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_needs_no_token(host, tiny_export):
    Settings(model=tiny_export, host=host).check()


def test_command_line_refuses_a_network_bind_without_a_token(tiny_export):
    env = {k: v for k, v in __import__("os").environ.items() if k != "CXR_API_TOKEN"}
    result = subprocess.run([sys.executable, "build.py", "api", "--model", str(tiny_export), "--host", "0.0.0.0"],
                            cwd=REPO, capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode != 0
    assert "refusing to listen on 0.0.0.0 without a token" in result.stderr
