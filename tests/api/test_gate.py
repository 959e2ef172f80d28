"""The API says what `cxr predict` says for each kind of image the released model's chest gate tells apart."""

import pytest

from runtime.paths import RELEASE_DIR
from runtime.predictor import predict_files
from tests.api.conftest import api_server
from tests.gate_kinds import KEYS, check_expected

pytestmark = pytest.mark.slow


def test_api_and_cli_agree_on_each_kind(gate_kind_files, client):
    cli = dict(zip(gate_kind_files, predict_files([str(p) for p in gate_kind_files.values()],
                                                  RELEASE_DIR / "model.onnx")))
    check_expected(cli)
    with api_server(RELEASE_DIR) as (url, _):
        for kind, path in gate_kind_files.items():
            response = client.post(f"{url}/v1/predict", files={"file": (path.name, path.read_bytes())})
            assert response.status_code == 200, response.text
            result = response.json()
            assert {k: result.get(k) for k in KEYS} == {k: cli[kind].get(k) for k in KEYS}, kind
            assert result["gate"] == pytest.approx(cli[kind]["gate"], abs=1e-6)
