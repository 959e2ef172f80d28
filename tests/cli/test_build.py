import filecmp
import json
import subprocess
import sys

import pytest

from runtime.paths import RELEASE_DIR
from tests.conftest import REPO

TINY = ["--demo", "--phantoms", "36", "--size", "64", "--epochs", "2", "--batch-size", "12"]


def _build(*args):
    result = subprocess.run([sys.executable, "build.py", *args], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _same_tree(a, b) -> bool:
    compare = filecmp.dircmp(a, b)
    if compare.left_only or compare.right_only or compare.funny_files:
        return False
    _, mismatch, errors = filecmp.cmpfiles(a, b, compare.common_files, shallow=False)
    return not mismatch and not errors and all(_same_tree(a / d, b / d) for d in compare.common_dirs)


@pytest.mark.slow
def test_build_runs_every_stage_then_skips_them_and_is_deterministic(tmp_path):
    work, dist = tmp_path / "work", tmp_path / "dist"
    out = _build(*TINY, "--work", str(work), "--dist", str(dist))
    for stage in ("phantoms", "prepare", "train", "evaluate", "export", "pwa"):
        assert f"[{stage}] done" in out, stage
    assert "cxr serve" in out  # the command to open the site is printed
    card = json.loads((dist / "model" / "model.json").read_text()) if (dist / "model").exists() else None
    assert (dist / "index.html").exists() and (dist / "sw.js").exists()
    assert card is None or card["demo"] is True

    again = _build(*TINY, "--work", str(work), "--dist", str(dist))
    assert again.count("up to date, skipped") == 6 and "running" not in again

    # Two renders of the same model give byte-identical sites.
    subprocess.run([sys.executable, "build.py", "pwa", "--model", str(work / "model"), "--dist", str(tmp_path / "d2")],
                   cwd=REPO, check=True, capture_output=True)
    assert _same_tree(dist, tmp_path / "d2")

    # A changed training setting re-runs training and everything downstream, not the data stages.
    changed = _build(*TINY[:-4], "--epochs", "1", "--batch-size", "12", "--work", str(work), "--dist", str(dist))
    assert "[phantoms] up to date" in changed and "[prepare] up to date" in changed
    for stage in ("train", "evaluate", "export", "pwa"):
        assert f"[{stage}] done" in changed, stage


def test_build_reports_a_bad_dataset_clearly(tmp_path):
    result = subprocess.run([sys.executable, "build.py", "--data", str(tmp_path / "missing"), "--work",
                             str(tmp_path / "w"), "--dist", str(tmp_path / "d")], cwd=REPO, capture_output=True,
                            text=True)
    assert result.returncode != 0 and "missing" in result.stderr and "Traceback" not in result.stderr


def test_build_without_arguments_makes_the_site_of_the_released_model(tmp_path):
    out = _build("--dist", str(tmp_path / "dist"))
    card = json.loads((tmp_path / "dist" / "model" / "model.json").read_text())
    assert card == json.loads((RELEASE_DIR / "model.json").read_text())
    assert card["demo"] is False and card["name"] in out and "cxr serve" in out
    assert "[train]" not in out  # nothing is trained
    for name, info in card["files"].items():
        assert (tmp_path / "dist" / "model" / name).stat().st_size == info["size"]


def test_build_without_a_released_model_says_what_to_do(tmp_path):
    result = subprocess.run([sys.executable, "build.py", "--model", str(tmp_path / "none"), "--dist",
                             str(tmp_path / "d")], cwd=REPO, capture_output=True, text=True)
    assert result.returncode != 0 and "make release" in result.stderr and "--demo" in result.stderr
