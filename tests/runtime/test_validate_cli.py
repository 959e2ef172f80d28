"""`cxr validate` on a tiny exported model and phantom films, and `cxr predict --site-profile` with what it wrote."""

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest

from cxr.cli import main
from runtime.predictor import predict_files
from runtime.site_profile import load_profile
from tests.conftest import REPO
from tests.site_films import phantom_site


def model_file(export):
    return export / json.loads((export / "model.json").read_text())["default_model"]


@pytest.fixture(scope="module")
def validated(tiny_export, tiny_prepared, tmp_path_factory):
    """(the labels CSV, the output folder, the command's exit status) of one `cxr validate` run."""
    root = tmp_path_factory.mktemp("site")
    labels = phantom_site(tiny_prepared, root / "data", n=15)
    status = main(["validate", "--model", str(model_file(tiny_export)), "--data", str(labels), "--out",
                   str(root / "out"), "--site", "Phantom General", "--n-boot", "30", "--no-progress"])
    return labels, root / "out", status


def test_validate_writes_the_report_the_metrics_and_the_profile(validated, tiny_export):
    labels, out, status = validated
    assert status == 0
    assert {p.name for p in out.iterdir()} == {"report.md", "metrics.json", "reliability.svg", "site-profile.json"}
    metrics = json.loads((out / "metrics.json").read_text())
    # the broken file is skipped and listed, not fatal
    assert [(u["file"], u["label"]) for u in metrics["unreadable"]] == [(str(labels.parent / "broken.png"), "Normal")]
    assert metrics["unreadable"][0]["reason"]
    figures = metrics["site_figures"]
    assert figures["films"] == 15 and figures["patients"] == 8
    assert figures["films_per_class"] == {"COVID-19": 5, "Normal": 5, "Pneumonia": 5}
    # the model as it comes, through `cxr predict`'s own path: the same accuracy and confusion matrix
    files = [line.split(",")[0] for line in labels.read_text().splitlines()[1:16]]
    truth = ["COVID-19", "Normal", "Pneumonia"] * 5
    predicted = [r["top_class"] for r in predict_files(files, model_file(tiny_export))]
    assert figures["metrics"]["accuracy"] == pytest.approx(np.mean([p == t for p, t in zip(predicted, truth)]))
    classes = ["COVID-19", "Normal", "Pneumonia"]
    confusion = [[sum(t == a and p == b for t, p in zip(truth, predicted)) for b in classes] for a in classes]
    assert figures["metrics"]["confusion"] == confusion
    assert set(figures["metrics"]["ci95"]) >= {"accuracy", "COVID-19/recall", "COVID-19/precision", "Normal/auc"}
    assert {"confident", "uncertain", "withheld"} <= figures["bands"].keys()
    assert metrics["model_card"]["metrics_test"]["n"] > 0  # the card's own figures beside the site's
    assert metrics["calibration"]["method"] == "leave-one-patient-out"
    assert metrics["reliability"]["after"]["bins"]
    report = (out / "report.md").read_text()
    for text in ("Phantom General", "cross-validated by patient", "broken.png", "model card", "reliability.svg"):
        assert text in report
    assert (out / "reliability.svg").read_text().startswith("<svg")


def test_the_profile_is_for_this_model_file(validated, tiny_export):
    _, out, _ = validated
    model = model_file(tiny_export)
    card = json.loads((tiny_export / "model.json").read_text())
    sha = hashlib.sha256(model.read_bytes()).hexdigest()
    profile = load_profile(out / "site-profile.json", card, sha)
    assert profile["model"] == {"name": card["name"], "version": card["version"], "sha256": sha}
    assert profile["site"] == "Phantom General" and profile["films"] == 15
    assert profile["films_per_class"] == {"COVID-19": 5, "Normal": 5, "Pneumonia": 5}


def test_predict_with_the_site_profile_is_calibrated_and_says_so(validated, tiny_export, tiny_prepared):
    _, out, _ = validated
    model = model_file(tiny_export)
    images = [str(tiny_prepared.parent / "phantoms" / "images" / f"phantom_{i:05d}.png") for i in (20, 21, 22)]
    command = [sys.executable, "-m", "cxr", "predict", *images, "--model", str(model)]
    plain = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    calibrated = subprocess.run([*command, "--site-profile", str(out / "site-profile.json")], cwd=REPO,
                                capture_output=True, text=True)
    assert plain.returncode == calibrated.returncode == 0, calibrated.stderr
    profile = json.loads((out / "site-profile.json").read_text())
    offsets, t = np.array(profile["parameters"]["offsets"]), profile["parameters"]["temperature"]
    T = json.loads((tiny_export / "model.json").read_text())["temperature"]
    threshold = profile["band"]["rule"]["threshold"]
    results = zip(map(json.loads, plain.stdout.splitlines()), map(json.loads, calibrated.stdout.splitlines()))
    for before, after in results:
        assert "site_profile" not in before
        assert after["site_profile"]["site"] == "Phantom General" and after["site_profile"]["films"] == 15
        assert after["site_profile"]["created"] == profile["created"]
        assert "calibrated for Phantom General" in after["site_profile"]["summary"]
        assert after["logits"] == before["logits"]
        u = (np.array(before["logits"]) + offsets) / (T * t)
        expected = np.exp(u - u.max()) / np.exp(u - u.max()).sum()
        np.testing.assert_allclose(list(after["probabilities"].values()), expected, rtol=0, atol=1e-12)
        assert after["top_class"] == ["COVID-19", "Normal", "Pneumonia"][int(expected.argmax())]
        if after["class"] is not None and not after.get("unlike_training"):
            assert after["band"] == ("uncertain" if threshold is None or expected.max() < threshold else "confident")


def test_a_refused_profile_stops_predict_before_any_result(validated, tiny_export, tmp_path, capsys):
    _, out, _ = validated
    tampered = tmp_path / "tampered.json"
    tampered.write_text((out / "site-profile.json").read_text().replace('"Phantom General"', '"Elsewhere"'))
    image = str(tmp_path / "x.png")
    with pytest.raises(SystemExit, match=r"predict: .*tampered.json: the site profile was changed"):
        main(["predict", image, "--model", str(model_file(tiny_export)), "--site-profile", str(tampered)])
    assert capsys.readouterr().out == ""


def test_too_few_films_give_the_report_and_no_profile(tiny_export, tiny_prepared, tmp_path, capsys):
    labels = phantom_site(tiny_prepared, tmp_path / "data", n=8, broken=False)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "site-profile.json").write_text("{}")  # an earlier run's: must not outlive this report
    status = main(["validate", "--model", str(model_file(tiny_export)), "--data", str(labels), "--out",
                   str(tmp_path / "out"), "--n-boot", "10", "--no-progress"])
    assert status == 1
    assert "no site profile: 8 labelled film(s): a site profile needs at least 10" in capsys.readouterr().err
    assert not (tmp_path / "out" / "site-profile.json").exists()
    assert "No site profile was written" in (tmp_path / "out" / "report.md").read_text()
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["profile_refused"] and metrics["calibration"] is None


def test_a_set_that_is_not_labelled_with_the_model_classes_is_refused(tiny_export, tmp_path):
    (tmp_path / "Normal").mkdir()
    (tmp_path / "Fracture").mkdir()
    with pytest.raises(SystemExit, match=r"validate: .*'Fracture' are not classes of this model"):
        main(["validate", "--model", str(model_file(tiny_export)), "--data", str(tmp_path), "--out",
              str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()
