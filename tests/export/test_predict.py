import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from runtime.predictor import predict_files
from tests.conftest import REPO
from tests.corpus import write_bad_corpus, write_good_images


def test_predict_cli_on_good_and_bad_files(tiny_export, tmp_path):
    good = write_good_images(tmp_path / "good")
    bad = write_bad_corpus(tmp_path / "bad")
    files = [str(p) for p in good.values()] + [str(p) for p in bad]
    result = subprocess.run([sys.executable, "-m", "cxr", "predict", *files, "--model",
                             str(tiny_export / "model.onnx"), "--heatmap-dir", str(tmp_path / "heat")],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 1  # some files failed, the run went on
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["file"] for line in lines] == files
    for line in lines[: len(good)]:
        assert "error" not in line, line
        assert abs(sum(line["probabilities"].values()) - 1) < 1e-5
        assert Path(line["heatmap"]).exists()
        assert line["band"] in (("confident", "uncertain") if line["class"] else (None,)), line
    for line in lines[len(good):]:
        assert line["error"]
    # `cxr predict` needs onnxruntime and numpy only: torch is never imported on its way.
    code = "import sys; from cxr import cli; cli.parser_for('predict'); import runtime.predictor; print(*sys.modules)"
    assert "torch" not in subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                                         text=True).stdout.split()


def test_predict_matches_pytorch(tiny_export):
    from core.decode import decode
    from export.verify import reference
    from training.model.checkpoint import load_checkpoint

    ckpt = load_checkpoint(tiny_export.parent / "run" / "best.pt")
    classifier = ckpt.classifier()
    image = str(next((tiny_export.parent.parent).rglob("phantom_00003.png"), None) or "")
    if not image:
        pytest.skip("phantom image not found")
    [result] = list(predict_files([image], tiny_export / "model.onnx"))
    expected = reference(classifier, ckpt, decode(image)[None, None])["probabilities"][0]
    np.testing.assert_allclose(list(result["probabilities"].values()), expected, atol=1e-4)
