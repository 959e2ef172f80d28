"""The API answers what `cxr predict` answers, on the same files, through the same Predictor."""

import io
import json
import threading

import numpy as np
import pytest
from PIL import Image

from runtime.predictor import predict_files
from tests.conftest import REPO

from .conftest import TOKEN, api_server

SAME = ("class", "top_class", "ood", "hottest_cell", "height", "width")


def model_file(tiny_export):
    return tiny_export / json.loads((tiny_export / "model.json").read_text())["default_model"]


@pytest.mark.parametrize("kind", ["png", "jpeg", "dicom"])
def test_results_equal_export_predict(kind, server, client, real_files, tiny_export):
    path = real_files[kind]
    [expected] = predict_files([str(path)], model_file(tiny_export))
    url, _ = server
    raw = client.post(f"{url}/v1/predict", content=path.read_bytes())
    form = client.post(f"{url}/v1/predict", files={"file": (path.name, path.read_bytes())})
    for response in (raw, form):
        assert response.status_code == 200, response.text
        result = response.json()
        assert result["probabilities"].keys() == expected["probabilities"].keys()
        np.testing.assert_allclose(list(result["probabilities"].values()),
                                   list(expected["probabilities"].values()), rtol=0, atol=1e-6)
        assert {k: result[k] for k in SAME} == {k: expected[k] for k in SAME}
        assert result.get("class_withheld") == expected.get("class_withheld")
        assert result["ood_score"] == pytest.approx(expected["ood_score"], rel=1e-5)
        assert result["model"]["file"] == model_file(tiny_export).name
        assert {"name", "version"} <= result["model"].keys()
        assert all(result[k] >= 0 for k in ("decode_ms", "inference_ms", "queue_ms", "total_ms"))


def test_batch_one_result_per_file_and_a_bad_file_fails_alone(server, client, real_files, tiny_export):
    url, _ = server
    names = ["png", "jpeg", "dicom"]
    files = [("file", (real_files[n].name, real_files[n].read_bytes())) for n in names]
    files.insert(1, ("file", ("notes.txt", b"not an image")))
    response = client.post(f"{url}/v1/predict/batch", files=files)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["status"] for r in results] == [200, 415, 200, 200]
    assert [r["filename"] for r in results] == [f[1][0] for f in files]
    assert "not a PNG, JPEG or DICOM" in results[1]["reason"]
    expected = list(predict_files([str(real_files[n]) for n in names], model_file(tiny_export)))
    for got, want in zip([results[0], results[2], results[3]], expected):
        np.testing.assert_allclose(list(got["probabilities"].values()), list(want["probabilities"].values()),
                                   atol=1e-6)


def test_batch_site_shift(server, client, real_files, tiny_export):
    """The batch answers whether its files, as one site's, differ from the validation split (runtime/site_shift.py):
    not judged below 20 analysed files; judged from 20, as `cxr predict`'s results on the same files are."""
    from runtime.site_shift import NOT_SHIFTED, SHIFTED, check_results

    url, _ = server
    few = client.post(f"{url}/v1/predict/batch", files=[("file", ("a.png", real_files["png"].read_bytes()))])
    shift = few.json()["site_shift"]
    assert shift["judged"] is False and shift["shifted"] is None and shift["n"] == 1 and shift["min_films"] == 20
    assert "at least 20 films" in shift["message"]
    paths = [real_files[n] for n in ("png", "jpeg", "dicom")] * 7  # 21 films
    files = [("file", (p.name, p.read_bytes())) for p in paths] + [("file", ("notes.txt", b"not an image"))]
    with api_server(tiny_export, max_files=len(files)) as (big, _):
        response = client.post(f"{big}/v1/predict/batch", files=files)
    assert response.status_code == 200, response.text
    shift = response.json()["site_shift"]
    assert shift["judged"] is True and shift["n"] == 21  # the file that is no image takes no part
    assert shift["message"] == (SHIFTED if shift["shifted"] else NOT_SHIFTED)
    assert 0 <= shift["p_value"] <= 1 and set(shift["p_values"]) == {"ood_score", "predicted_class"}
    assert sum(shift["class_counts"].values()) == 21 and isinstance(shift["statistics"]["df"], int)
    card = json.loads((tiny_export / "model.json").read_text())
    expected = check_results(list(predict_files([str(p) for p in paths], model_file(tiny_export))), card,
                             model_file(tiny_export).name)
    assert shift["shifted"] == expected["shifted"] and shift["class_counts"] == expected["class_counts"]
    assert shift["p_value"] == pytest.approx(expected["p_value"], rel=1e-4, abs=1e-12)


def test_heatmap_png_is_the_overlay(server, client, real_files, tiny_export, tmp_path):
    url, _ = server
    response = client.post(f"{url}/v1/predict?heatmap=png", content=real_files["png"].read_bytes())
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    overlay = np.asarray(Image.open(io.BytesIO(response.content)))
    [expected] = predict_files([str(real_files["png"])], model_file(tiny_export), heatmap_dir=tmp_path)
    assert overlay.shape == (expected["height"], expected["width"], 3)
    np.testing.assert_array_equal(overlay, np.asarray(Image.open(expected["heatmap"])))


def test_model_card_health_and_docs(server, client, tiny_export):
    url, _ = server
    card = client.get(f"{url}/v1/model")
    assert card.status_code == 200
    assert card.json()["version"] == json.loads((tiny_export / "model.json").read_text())["version"]
    assert str(tiny_export.parent) not in card.text and str(REPO) not in card.text  # no server paths
    assert "checkpoint_sha256" in card.json()["source"]
    assert client.get(f"{url}/healthz").json() == {"status": "ok"}
    ready = client.get(f"{url}/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    spec = client.get(f"{url}/openapi.json").json()
    assert {"/v1/predict", "/v1/predict/batch", "/v1/model", "/healthz", "/readyz"} <= spec["paths"].keys()
    assert client.get(f"{url}/docs").status_code == 200


def test_pwa_served_with_the_headers_of_cxr_serve(tiny_export, client, tmp_path):
    from pwa.serve import make_server

    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / "index.html").write_text("<!doctype html><title>app</title>")
    (dist / "build.json").write_text(json.dumps({"csp": "default-src 'self'"}))
    (dist / "ort.wasm").write_bytes(b"\0asm")
    reference = make_server(dist)
    threading.Thread(target=reference.serve_forever, daemon=True).start()
    try:
        with api_server(tiny_export, site=dist) as (url, _):
            for path in ("/", "/ort.wasm"):
                ours = client.get(url + path)
                theirs = client.get(f"http://127.0.0.1:{reference.server_address[1]}{path}")
                assert ours.status_code == theirs.status_code == 200
                assert ours.content == theirs.content
                for name in ("Content-Security-Policy", "Cross-Origin-Opener-Policy", "Cross-Origin-Embedder-Policy",
                             "Cross-Origin-Resource-Policy", "X-Content-Type-Options", "Referrer-Policy",
                             "Cache-Control", "Content-Type"):
                    assert ours.headers.get(name) == theirs.headers.get(name), (path, name)
            assert client.get(f"{url}/healthz").status_code == 200  # the API still answers beside the site
    finally:
        reference.shutdown()
        reference.server_close()


def test_token_is_enforced(tiny_export, client, real_files):
    with api_server(tiny_export, token=TOKEN) as (url, _):
        image = real_files["png"].read_bytes()
        assert client.post(f"{url}/v1/predict", content=image).status_code == 401
        wrong = client.post(f"{url}/v1/predict", content=image, headers={"Authorization": "Bearer wrong"})
        assert wrong.status_code == 401 and wrong.json()["error"] == "unauthorized"
        assert client.get(f"{url}/v1/model").status_code == 401
        assert client.post(f"{url}/v1/predict/batch", files={"file": ("a.png", image)}).status_code == 401
        ok = client.post(f"{url}/v1/predict", content=image, headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200
        assert client.get(f"{url}/healthz").status_code == 200  # probes stay open


@pytest.mark.slow
def test_the_released_model_over_http_equals_export_predict(client, real_files):
    """The model `cxr api` serves by default: the same answers as `cxr predict` on it, lung outputs included."""
    from runtime.paths import RELEASE_DIR

    card = json.loads((RELEASE_DIR / "model.json").read_text())
    expected = {r["file"]: r for r in predict_files([str(p) for p in real_files.values()],
                                                     RELEASE_DIR / card["default_model"])}
    with api_server(RELEASE_DIR) as (url, _):
        for path in real_files.values():
            response = client.post(f"{url}/v1/predict", content=path.read_bytes())
            assert response.status_code == 200, response.text
            result, want = response.json(), expected[str(path)]
            np.testing.assert_allclose(list(result["probabilities"].values()),
                                       list(want["probabilities"].values()), rtol=0, atol=1e-6)
            for key in (*SAME, "band", "lung_fallback", "lung_evidence_low", "crop_box"):
                assert result[key] == want[key], key
            assert result["lung_evidence"] == pytest.approx(want["lung_evidence"], abs=1e-6)
            assert result["model"]["version"] == card["version"]
