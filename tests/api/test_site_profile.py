"""`cxr api --site-profile`: every answer calibrated for the site and saying so, the profile on GET /v1/model, and a
profile for another model refused at start."""

import json

import numpy as np
import pytest

from api.commands import add_arguments, settings_from
from api.settings import Settings, SettingsError
from runtime.predictor import predict_files
from runtime.site_validation import validate_site, write_outputs
from tests.site_films import phantom_site

from .conftest import api_server
from .test_predict import model_file


@pytest.fixture(scope="module")
def site_profile(tiny_export, tiny_prepared, tmp_path_factory):
    root = tmp_path_factory.mktemp("api_site")
    labels = phantom_site(tiny_prepared, root / "data", n=12, broken=False)
    metrics, profile = validate_site(model_file(tiny_export), labels, "Phantom General", n_boot=10, progress=False)
    write_outputs(root / "out", metrics, profile)
    return root / "out" / "site-profile.json"


def phantoms(tiny_prepared, *numbers):
    return [tiny_prepared.parent / "phantoms" / "images" / f"phantom_{i:05d}.png" for i in numbers]


def test_answers_are_calibrated_and_say_so(tiny_export, tiny_prepared, site_profile, client):
    profile = json.loads(site_profile.read_text())
    offsets, t = np.array(profile["parameters"]["offsets"]), profile["parameters"]["temperature"]
    T = json.loads((tiny_export / "model.json").read_text())["temperature"]
    files = phantoms(tiny_prepared, 30, 31)
    uncalibrated = list(predict_files([str(f) for f in files], model_file(tiny_export)))
    with api_server(tiny_export, site_profile=site_profile) as (url, _):
        card = client.get(f"{url}/v1/model").json()
        assert card["site_profile"]["site"] == "Phantom General"
        assert card["site_profile"]["parameters"]["offsets"] == profile["parameters"]["offsets"]
        assert card["site_profile"]["cross_validated"] == profile["cross_validated"]
        single = client.post(f"{url}/v1/predict", content=files[0].read_bytes()).json()
        batch = client.post(f"{url}/v1/predict/batch",
                            files=[("file", (f.name, f.read_bytes())) for f in files]).json()["results"]
        for got, plain in zip([single, *batch], [uncalibrated[0], *uncalibrated]):
            assert got["site_profile"] == {"site": "Phantom General", "films": 12, "created": profile["created"],
                                           "summary": f"calibrated for Phantom General (site profile of 12 films, "
                                                      f"{profile['created'][:10]})"}
            u = (np.array(plain["logits"]) + offsets) / (T * t)
            expected = np.exp(u - u.max()) / np.exp(u - u.max()).sum()
            np.testing.assert_allclose(list(got["probabilities"].values()), expected, rtol=0, atol=1e-12)
            assert got["top_class"] == ["COVID-19", "Normal", "Pneumonia"][int(expected.argmax())]
    with api_server(tiny_export) as (url, _):  # without a profile: nothing says calibrated
        assert "site_profile" not in client.get(f"{url}/v1/model").json()
        assert "site_profile" not in client.post(f"{url}/v1/predict", content=files[0].read_bytes()).json()


def test_a_profile_for_another_model_is_refused_at_start(tiny_export, site_profile, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    served = model_file(tiny_export).name  # the very file the profile was fitted with, in another export
    for name in ("model.json", served):
        (other / name).write_bytes((tiny_export / name).read_bytes())
    card = json.loads((other / "model.json").read_text())
    card["version"] += "-retrained"
    (other / "model.json").write_text(json.dumps(card))
    with pytest.raises(SettingsError, match=r"--site-profile refused: .*fitted for another model .*; version differ"):
        Settings(model=other / served, site_profile=site_profile)
    with pytest.raises(SettingsError, match="no such site profile"):
        Settings(model=tiny_export, site_profile=tmp_path / "absent.json")


def test_the_command_line_option(tiny_export, site_profile):
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--model", str(tiny_export), "--site-profile", str(site_profile)])
    assert settings_from(args).site_profile == site_profile
