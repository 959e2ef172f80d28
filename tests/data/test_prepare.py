import csv
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO
from tests.corpus import write_bad_corpus, write_good_images
from training.data.cache import Cache
from training.data.phantoms import write_phantoms
from training.data.prepare import prepare
from training.data.records import read_manifest_rows


def _folder_dataset(root: Path) -> tuple[list[Path], list[Path]]:
    good = list(write_good_images(root / "normal").values())
    bad = write_bad_corpus(root / "pneumonia")
    return good, bad


def test_prepare_keeps_every_good_file_and_lists_every_bad_one(tmp_path):
    good, bad = _folder_dataset(tmp_path / "data")
    summary = prepare([f"folders:{tmp_path / 'data'}"], tmp_path / "out", size=32, progress=False)
    rows = read_manifest_rows(tmp_path / "out" / "manifest.csv")
    assert sorted(Path(r["file"]) for r in rows) == sorted(p.resolve() for p in good)
    skipped = {Path(s["file"]).name: s["reason"] for s in summary["skipped"]}
    assert set(skipped) == {p.name for p in bad}
    assert all(reason for reason in skipped.values())
    report = (tmp_path / "out" / "report.md").read_text()
    assert all(p.name in report for p in bad)
    assert "leakage between splits cannot be excluded" in report  # folder data without a patient pattern


def test_second_run_decodes_nothing_and_a_changed_file_is_redone(tmp_path):
    manifest = write_phantoms(tmp_path / "ph", 9, size=64)
    first = prepare([str(manifest)], tmp_path / "out", size=32, progress=False)
    assert (first["decoded"], first["from_cache"]) == (9, 0)
    second = prepare([str(manifest)], tmp_path / "out", size=32, progress=False)
    assert (second["decoded"], second["from_cache"]) == (0, 9)
    image = tmp_path / "ph" / "images" / "phantom_00004.png"
    Image.fromarray(255 - np.asarray(Image.open(image))).save(image)
    third = prepare([str(manifest)], tmp_path / "out", size=32, progress=False)
    assert (third["decoded"], third["from_cache"]) == (1, 8)
    # The cache holds the resized image of the new content.
    row = next(r for r in read_manifest_rows(tmp_path / "out" / "manifest.csv") if r["file"].endswith("00004.png"))
    cached = Cache(tmp_path / "out" / "cache", 32).load_images([row["sha256"]])[0, 0]
    expected = np.asarray(Image.open(image).resize((32, 32), Image.BILINEAR), dtype=float)
    assert np.abs(cached - expected).mean() < 8


def test_duplicate_pixels_are_reported(tmp_path):
    manifest = write_phantoms(tmp_path / "ph", 3, size=64)
    # Same pixels, different file bytes (PNG re-encoded with other settings): caught by the pixel hash.
    src = tmp_path / "ph" / "images" / "phantom_00000.png"
    Image.open(src).save(tmp_path / "ph" / "images" / "copy.png", compress_level=1)
    with open(manifest, "a", newline="") as f:
        csv.writer(f).writerow(["images/copy.png", "Normal", "phantom_x", "phantom", "PA", ""])
    summary = prepare([str(manifest)], tmp_path / "out", size=32, progress=False)
    assert summary["images"] == 3
    [dup] = summary["skipped"]
    assert dup["file"].endswith("copy.png") and "same pixels as" in dup["reason"] and "phantom_00000" in dup["reason"]
    assert "labelled COVID-19 there and Normal here" in dup["reason"]


def test_cli(tmp_path):
    manifest = write_phantoms(tmp_path / "ph", 12, size=48)
    result = subprocess.run([sys.executable, "-m", "cxr", "prepare", "--data", f"manifest:{manifest}",
                             "--out", str(tmp_path / "out"), "--size", "32"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "12 images" in result.stdout
    prepared = json.loads((tmp_path / "out" / "prepared.json").read_text())
    assert prepared["size"] == 32 and prepared["images_per_split"]["train"] > 0
    bad = subprocess.run([sys.executable, "-m", "cxr", "prepare", "--data", str(tmp_path / "nowhere"),
                          "--out", str(tmp_path / "o2")], cwd=REPO, capture_output=True, text=True)
    assert bad.returncode != 0 and "nowhere" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.slow
def test_prepare_shared_set(shared_cxr, tmp_path_factory):
    out = tmp_path_factory.mktemp("shared")
    summary = prepare([str(shared_cxr)], out, size=224, progress=False)
    assert summary["skipped"] == [] and summary["images"] == 611
    rows = read_manifest_rows(out / "manifest.csv")
    splits_of = {}
    for r in rows:
        splits_of.setdefault(r["patient_id"], set()).add(r["split"])
    assert all(len(s) == 1 for s in splits_of.values())  # zero patients shared between splits
    with open(shared_cxr / "manifest.csv", newline="") as f:
        original = list(csv.DictReader(f))
    assert Counter((r["label"], r["source"]) for r in rows) == Counter((r["label"], r["source"]) for r in original)
    assert len(splits_of) == 515


def test_the_report_says_when_every_child_has_one_label(tmp_path):
    manifest = write_phantoms(tmp_path / "ph", 12, size=64)
    with open(manifest, newline="") as f:
        rows = list(csv.DictReader(f))
    for i, row in enumerate(rows):  # children (age 9) only among Pneumonia; one Normal without an age
        row["age"] = "9" if row["label"] == "Pneumonia" and i % 2 == 0 else ("" if i == 1 else "40")
    with open(manifest, "w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    children = sum(r["age"] == "9" for r in rows)
    summary = prepare([str(manifest)], tmp_path / "out", size=32, progress=False)
    ages = summary["ages"]
    assert ages["images_with_age"] == sum(r["age"] != "" for r in rows)
    assert ages["children_by_label"] == {"Pneumonia": children} and children >= 1
    assert "children" in ages["warning"] and "Pneumonia" in ages["warning"]
    assert "**Warning:** all" in (tmp_path / "out" / "report.md").read_text()

    for row in rows:  # a child in another class too: no warning
        if row["label"] == "Normal" and row["age"] == "40":
            row["age"] = "12"
            break
    with open(manifest, "w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    assert prepare([str(manifest)], tmp_path / "out2", size=32, progress=False)["ages"]["warning"] is None
