"""The site profile file: what it holds, the refusals when fitting, and load_profile's refusals (malformed,
tampered, fitted for another model)."""

import copy
import hashlib
import json
import shutil
import subprocess

import jsonschema
import numpy as np
import pytest

from runtime.site_profile import (
    SCHEMA,
    canonical_json,
    check_site_labels,
    content_sha256,
    fit_profile,
    load_profile,
    sign,
    write_profile,
)

from .test_site_calibration import CARD, site_films

SHA = "ab" * 32


@pytest.fixture(scope="module")
def profile():
    logits, labels = site_films(60, seed=11)
    names = [CARD["classes"][k] for k in labels]
    return fit_profile(logits, names, [f"p{i // 2}" for i in range(60)], CARD, "St Elsewhere", model_sha256=SHA,
                       n_boot=50, created="2026-12-08T10:00:00Z")


def test_the_profile_holds_what_the_schema_says(profile, tmp_path):
    jsonschema.validate(profile, json.loads(SCHEMA.read_text()))
    assert profile["kind"] == "site-profile" and profile["format"] == 1
    assert profile["model"] == {"name": "test-model", "version": "1.0", "sha256": SHA}
    assert profile["site"] == "St Elsewhere" and profile["created"] == "2026-12-08T10:00:00Z"
    assert profile["films"] == 60 and profile["patients"] == 30
    assert sum(profile["films_per_class"].values()) == 60
    assert len(profile["parameters"]["offsets"]) == 3 and profile["parameters"]["fitted"]["temperature"]
    assert profile["band"]["chosen_on"] == "site"  # 60 films
    for side in ("before", "after"):
        figures = profile["cross_validated"][side]
        assert {"accuracy", "macro_auc", "nll", "ece", "confident", "uncertain"} <= figures.keys()
    write_profile(tmp_path / "p.json", profile)
    assert load_profile(tmp_path / "p.json", CARD, SHA) == profile


@pytest.mark.parametrize("labels, patients, message", [
    (["COVID-19"] * 5 + ["Normal"] * 4, None, "needs at least 10 readable labelled films"),
    (["Normal"] * 12, None, "needs films of at least 2 classes"),
    (["COVID-19"] * 6 + ["Tuberculosis"] * 6, None, "'Tuberculosis' are not classes of this model"),
    (["COVID-19"] * 6 + ["Normal"] * 6, ["one"] * 12, "films of at least 2 patients"),
])
def test_fitting_is_refused_saying_what_is_needed(labels, patients, message):
    logits = np.zeros((len(labels), 3))
    patients = patients or [f"p{i}" for i in range(len(labels))]
    with pytest.raises(ValueError, match=message):
        fit_profile(logits, labels, patients, CARD, "here", model_sha256=SHA)


def test_ten_films_of_two_classes_are_enough():
    check_site_labels(["COVID-19"] * 9 + ["Pneumonia"], CARD["classes"])
    logits, _ = site_films(10, seed=0)
    profile = fit_profile(logits, ["COVID-19"] * 9 + ["Pneumonia"], [str(i) for i in range(10)], CARD, "small",
                          model_sha256=SHA, n_boot=20)
    assert profile["parameters"]["offsets"][1] == 0.0  # Normal: not shown, neutral
    assert profile["parameters"]["temperature"] == 1.0 and profile["band"]["chosen_on"] == "model"


def test_canonical_json_is_what_json_stringify_writes():
    value = {"b": 1.0, "a": [1e-7, 0.00001, 1e21, -0.5, "é\n"], "c": None, "B": True}
    assert canonical_json(value) == '{"B":true,"a":[1e-7,0.00001,1e+21,-0.5,"é\\n"],"b":1,"c":null}'


@pytest.mark.skipif(not shutil.which("node"), reason="node not installed")
def test_the_checksum_is_the_one_a_browser_computes(profile):
    """JSON.stringify of the profile with its keys sorted, hashed: what the app will check."""
    script = """
const sortKeys = v => Array.isArray(v) ? v.map(sortKeys) : (v && typeof v === 'object') ?
  Object.fromEntries(Object.keys(v).sort().map(k => [k, sortKeys(v[k])])) : v;
let s = ''; process.stdin.on('data', d => s += d).on('end', () => {
  const p = JSON.parse(s); delete p.content_sha256;
  process.stdout.write(require('crypto').createHash('sha256').update(JSON.stringify(sortKeys(p))).digest('hex'));
});"""
    out = subprocess.run(["node", "-e", script], input=json.dumps(profile, indent=2), capture_output=True, text=True)
    assert out.stdout == profile["content_sha256"]


def written(tmp_path, profile, name="p.json"):
    path = tmp_path / name
    write_profile(path, profile)
    return path


def test_a_malformed_profile_is_refused(profile, tmp_path):
    path = tmp_path / "p.json"
    path.write_text('{"kind": "site-profile", "format": 1,')
    with pytest.raises(ValueError, match=r"p.json: not a site profile: not valid JSON"):
        load_profile(path, CARD, SHA)
    path.write_text(json.dumps({"name": "test-model", "classes": []}))
    with pytest.raises(ValueError, match=r"p.json: not a site profile"):
        load_profile(path, CARD, SHA)
    missing = sign({k: v for k, v in profile.items() if k != "band"})  # a correct checksum: the schema must catch it
    with pytest.raises(ValueError, match=r"malformed site profile: 'band' is a required property"):
        load_profile(written(tmp_path, missing), CARD, SHA)
    wrong = copy.deepcopy(profile)
    wrong["parameters"]["temperature"] = -1.0
    with pytest.raises(ValueError, match=r"malformed site profile: .* \(at parameters/temperature\)"):
        load_profile(written(tmp_path, sign(wrong)), CARD, SHA)
    short = copy.deepcopy(profile)
    short["parameters"]["offsets"] = [0.1, 0.2]
    with pytest.raises(ValueError, match=r"do not match the model's 3 classes"):
        load_profile(written(tmp_path, sign(short)), CARD, SHA)
    path.write_text(json.dumps(profile).replace('"offsets": [', '"offsets": [NaN, ', 1))
    with pytest.raises(ValueError, match="not valid JSON"):
        load_profile(path, CARD, SHA)
    with pytest.raises(ValueError, match="no such site profile"):
        load_profile(tmp_path / "absent.json", CARD, SHA)


def test_a_profile_edited_by_hand_is_refused(profile, tmp_path):
    path = written(tmp_path, profile)
    text = path.read_text()
    offset = json.dumps(profile["parameters"]["offsets"][0])
    path.write_text(text.replace(offset, "0.0", 1))
    with pytest.raises(ValueError, match="changed after it was written"):
        load_profile(path, CARD, SHA)
    path.write_text(text.replace('"St Elsewhere"', '"Elsewhere"'))
    with pytest.raises(ValueError, match="changed after it was written"):
        load_profile(path, CARD, SHA)
    reindented = json.dumps(json.loads(text), indent=None)  # the same content, laid out differently: accepted
    path.write_text(reindented)
    loaded = load_profile(path, CARD, SHA)
    # and its checksum is the sha256 of the canonical text, as documented
    body = canonical_json({k: v for k, v in profile.items() if k != "content_sha256"})
    assert loaded["content_sha256"] == hashlib.sha256(body.encode()).hexdigest() == content_sha256(profile)


@pytest.mark.parametrize("change", ["sha256", "version", "name"])
def test_a_profile_for_another_model_is_refused(profile, tmp_path, change):
    path = written(tmp_path, profile)
    card, sha = dict(CARD), SHA
    if change == "sha256":
        sha = "cd" * 32
    else:
        card[change] = card[change] + "-other"
    with pytest.raises(ValueError, match=rf"p.json: the site profile was fitted for another model .*{change} differ"):
        load_profile(path, card, sha)
