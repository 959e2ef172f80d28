"""The released model in models/: its files are the ones model.json describes, it reproduces its own test-split
metrics through the Python predictor on the shared images, and it fits the size budget."""

import csv
import json

import jsonschema
import numpy as np
import pytest

from core.checksum import sha256_file
from core.classes import CLASSES
from core.decode import decode
from core.metrics import evaluate_predictions
from cxr.release import SHARED_DATA
from runtime.paths import RELEASE_DIR, REPO
from runtime.predictor import Predictor

MAX_RELEASE_BYTES = 20_000_000


@pytest.fixture(scope="module")
def card() -> dict:
    assert (RELEASE_DIR / "model.json").exists(), f"no released model in {RELEASE_DIR}: run `make release`"
    return json.loads((RELEASE_DIR / "model.json").read_text())


def test_every_file_matches_model_json(card):
    jsonschema.validate(card, json.loads((REPO / "export" / "model.schema.json").read_text()))
    assert card["demo"] is False and card["name"] == RELEASE_DIR.name
    for name, info in card["files"].items():
        assert sha256_file(RELEASE_DIR / name) == info["sha256"], name
        assert (RELEASE_DIR / name).stat().st_size == info["size"], name
    for name in ("RELEASE.md", "provenance.json", "verification.md", "test_split.csv", "eval/report.md",
                 "eval/metrics.json"):
        assert (RELEASE_DIR / name).is_file(), name
    provenance = json.loads((RELEASE_DIR / "provenance.json").read_text())
    assert provenance["command"].startswith("cxr release") and len(provenance["commit"]) == 40
    assert "non-commercial" in card["terms"]


def test_the_release_fits_its_size_budget(card):
    total = sum(p.stat().st_size for p in RELEASE_DIR.rglob("*") if p.is_file())
    print(f"\nrelease {RELEASE_DIR.name}: {total / 1e6:.1f} MB in {sum(1 for _ in RELEASE_DIR.rglob('*'))} files")
    assert total <= MAX_RELEASE_BYTES


@pytest.mark.slow
def test_the_release_reproduces_its_test_metrics(card, shared_cxr):
    with open(RELEASE_DIR / "test_split.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == card["files"][card["default_model"]]["metrics_test"]["all"]["n"]
    images = [decode(SHARED_DATA / r["file"]) for r in rows]
    labels = np.array([CLASSES.index(r["label"]) for r in rows])
    for name, info in card["files"].items():
        predictor = Predictor(RELEASE_DIR / name)
        probs = np.array([list(predictor.predict(image)["probabilities"].values()) for image in images])
        again = evaluate_predictions(labels, probs, [r["patient_id"] for r in rows], [r["source"] for r in rows],
                                     n_boot=1000)
        _assert_close(again, info["metrics_test"], name)


@pytest.mark.slow
def test_the_release_reproduces_its_unseen_source_scores(card, shared_cxr):
    """model.json `external`: recounted here from the predictor's answers on the held-out films (sklearn's AUC),
    not through export/external.py."""
    from sklearn.metrics import roc_auc_score

    from training.data.readers import read

    external = card.get("external")
    if not external:
        pytest.skip("the release has no unseen-source scores (no held-out data when it was made)")
    held_out = [SHARED_DATA / d for d in external["data"]]
    if not all(p.exists() for p in held_out):
        pytest.skip(f"held-out data not found: {', '.join(map(str, held_out))}")
    predictor = Predictor(RELEASE_DIR / external["model_file"])
    with open(RELEASE_DIR / "test_split.csv", newline="") as f:
        test = [(r, predictor.predict(decode(SHARED_DATA / r["file"]))) for r in csv.DictReader(f)]
    records = [r for d in held_out for r in read(str(d)).records]
    results = [predictor.predict(decode(r.file)) for r in records]
    for key, group in external["groups"].items():
        members = [res for r, res in zip(records, results) if f"{r.source}/{r.label}" == key]
        assert len(members) == group["images"] > 0, key
        shown = [res["class"] or "withheld" for res in members]
        for name, share in group["shown"].items():
            assert abs(shown.count(name) / len(shown) - share) <= 1e-9, (key, name)
        assert group["sensitivity"]["value"] == group["shown"][group["label"]]
        others = [res for r, res in test if r["source"] != group["source"] and r["label"] != group["label"]]
        scores = [res["probabilities"][group["label"]] for res in members + others]
        auc = roc_auc_score([1] * len(members) + [0] * len(others), scores)
        assert abs(auc - group["auc_vs_other_sources"]["auc"]) <= 1e-4, key
    assert any(key.startswith("hannover/") for key in external["groups"])
    assert any("never used in training" in item for item in card["limitations"])


def _assert_close(measured, recorded, where: str) -> None:
    """Every number of `recorded` (model.json, NaN written as null) within 1e-4 of `measured`."""
    if isinstance(recorded, dict):
        for key, value in recorded.items():
            _assert_close(measured[key], value, f"{where}/{key}")
    elif isinstance(recorded, list):
        assert len(measured) == len(recorded), where
        for i, (m, r) in enumerate(zip(measured, recorded)):
            _assert_close(m, r, f"{where}[{i}]")
    elif recorded is None:
        assert measured is None or np.isnan(measured), where
    elif isinstance(recorded, (int, float)):
        assert abs(measured - recorded) <= 1e-4, (where, measured, recorded)
    else:
        assert measured == recorded, where
