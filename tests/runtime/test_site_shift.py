"""The site-shift check (runtime/site_shift.py): its statistics against hand-computed and textbook values (and scipy,
an implementation independent of ours), its refusal below min_films, the reference the export writes, and the line
`cxr predict` ends with."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from scipy.special import kolmogorov

from runtime import site_shift
from tests.conftest import REPO

CLASSES = ["COVID-19", "Normal", "Pneumonia"]


def card(ood_scores, class_counts, min_films=20, alpha=0.05):
    return {"classes": CLASSES, "site_shift": {
        "min_films": min_films, "alpha": alpha, "tests": ["ood_score", "predicted_class"], "correction": "bonferroni",
        "method": "test", "split": "val", "references": {"model.onnx": {
            "model_file": "model.onnx", "films": len(ood_scores), "ood_scores": sorted(ood_scores),
            "class_counts": class_counts}}}}


def test_ks_statistic_by_hand():
    # F_ref - F_batch at 2: 2/4 - 0, at 3: 3/4 - 1/4, at 4: 1 - 2/4: D = 1/2
    assert site_shift.ks_statistic([1, 2, 3, 4], [2.5, 3.5, 5, 6]) == pytest.approx(0.5)
    # ties counted in full: at 1, 2/3 against 1/3; at 2, 1 against 1 (splitting the tie would give 2/3)
    assert site_shift.ks_statistic([1, 1, 2], [1, 2, 2]) == pytest.approx(1 / 3)
    assert site_shift.ks_statistic([1, 2, 3], [10, 11]) == 1.0
    assert site_shift.ks_statistic([5, 1, 3], [3, 1, 5]) == 0.0  # order does not matter


@pytest.mark.parametrize("lam, q", [(1.358, 0.050), (1.628, 0.010), (1.224, 0.100), (1.0, 0.270), (0.5, 0.964)])
def test_kolmogorov_tail_textbook(lam, q):
    # the critical values of the Kolmogorov distribution (e.g. Smirnov's table): 1.358 at 5 %, 1.628 at 1 %, ...
    assert site_shift.kolmogorov_q(lam) == pytest.approx(q, abs=6e-4)
    assert site_shift.kolmogorov_q(lam) == pytest.approx(kolmogorov(lam), rel=1e-10)


def test_kolmogorov_tail_limits():
    assert site_shift.kolmogorov_q(0.0) == 1.0 and site_shift.kolmogorov_q(0.19) == 1.0
    assert site_shift.kolmogorov_q(0.2) == pytest.approx(1.0, abs=1e-12)
    assert site_shift.kolmogorov_q(3.0) == pytest.approx(2 * math.exp(-18), rel=1e-6)  # one term is all that counts


def test_ks_p_value_with_stephens_correction():
    # n = m = 10: N_e = 5, lambda = (sqrt(5) + 0.12 + 0.11 / sqrt(5)) * 0.6 = 1.443157...
    lam = (math.sqrt(5) + 0.12 + 0.11 / math.sqrt(5)) * 0.6
    assert lam == pytest.approx(1.443157, abs=1e-6)
    assert site_shift.ks_p_value(0.6, 10, 10) == pytest.approx(kolmogorov(lam), rel=1e-10)


def test_chi_square_by_hand():
    # reference [10, 10], batch [10, 0]: the 2 x 2 shortcut N (ad - bc)^2 / (R B C1 C2) = 30 * 100^2 / 40000 = 7.5
    assert site_shift.chi_square_homogeneity([10, 10], [10, 0]) == (pytest.approx(7.5), 1)
    # a class absent from both rows takes no part: still one degree of freedom
    assert site_shift.chi_square_homogeneity([10, 10, 0], [10, 0, 0]) == (pytest.approx(7.5), 1)
    assert site_shift.chi_square_homogeneity([30, 30, 30], [10, 10, 10]) == (0.0, 2)
    assert site_shift.chi_square_homogeneity([30, 0, 0], [10, 0, 0]) == (0.0, 0)
    assert site_shift.chi_square_p_value(0.0, 0) == 1.0
    # df 1: P(chi2 > x) = erfc(sqrt(x / 2))
    assert site_shift.chi_square_p_value(7.5, 1) == pytest.approx(math.erfc(math.sqrt(3.75)), rel=1e-6)


@pytest.mark.parametrize("x2, df, p", [(3.841, 1, 0.05), (6.635, 1, 0.01), (5.991, 2, 0.05), (9.210, 2, 0.01),
                                       (7.815, 3, 0.05), (9.488, 4, 0.05), (11.070, 5, 0.05), (15.086, 5, 0.01)])
def test_chi_square_textbook_critical_values(x2, df, p):
    assert site_shift.chi_square_p_value(x2, df) == pytest.approx(p, rel=2e-3)


def test_erfc_fit():
    for x in (-3, -1, -0.2, 0, 0.1, 0.5, 1, 2, 3.5, 6):
        assert site_shift.erfc(x) == pytest.approx(math.erfc(x), rel=1.2e-7)


def test_refused_below_min_films():
    c = card(list(range(40)), {"COVID-19": 20, "Normal": 20, "Pneumonia": 0})
    verdict = site_shift.check([100.0] * 19, ["COVID-19"] * 19, c, "model.onnx")
    assert verdict["judged"] is False and verdict["shifted"] is None and verdict["p_value"] is None
    assert verdict["n"] == 19 and "at least 20 films" in verdict["message"]
    assert site_shift.check([100.0] * 20, ["COVID-19"] * 20, c, "model.onnx")["judged"] is True


def test_no_reference_is_not_judged():
    verdict = site_shift.check([1.0] * 30, ["Normal"] * 30, {"classes": CLASSES}, "model.onnx")
    assert verdict["judged"] is False and "no site_shift reference" in verdict["message"]
    other = site_shift.check([1.0] * 30, ["Normal"] * 30, card([1.0] * 30, {}), "model.int8.onnx")
    assert other["judged"] is False  # a reference belongs to one model file


def test_verdicts_by_hand():
    ref = [float(v) for v in range(1, 41)]
    c = card(ref, {"COVID-19": 20, "Normal": 20, "Pneumonia": 0})
    same = site_shift.check(ref[::2], ["COVID-19", "Normal"] * 10, c, "model.onnx")
    # D = 1/40 (lambda 0.095 < 0.2: p 1); counts [10, 10] against [20, 20]: X2 = 0
    assert same["statistics"]["ks_d"] == pytest.approx(1 / 40)
    assert same["p_values"] == {"ood_score": 1.0, "predicted_class": 1.0}
    assert same["shifted"] is False and same["message"] == site_shift.NOT_SHIFTED
    classes_only = site_shift.check(ref[::2], ["COVID-19"] * 20, c, "model.onnx")
    # [20, 20] against [20, 0]: X2 = 60 * 400^2 / (40 * 20 * 40 * 20) = 15, one df; Bonferroni doubles it
    assert classes_only["statistics"]["chi_square"] == pytest.approx(15.0)
    assert classes_only["p_value"] == pytest.approx(2 * math.erfc(math.sqrt(7.5)), rel=1e-6)
    assert classes_only["shifted"] is True and classes_only["message"] == site_shift.SHIFTED
    assert classes_only["class_counts"] == {"COVID-19": 20, "Normal": 0, "Pneumonia": 0}
    far = site_shift.check([100.0 + i for i in range(20)], ["COVID-19", "Normal"] * 10, c, "model.onnx")
    # D = 1, N_e = 40 * 20 / 60: the OOD test alone flags it
    lam = math.sqrt(40 / 3) + 0.12 + 0.11 / math.sqrt(40 / 3)
    assert far["p_values"]["ood_score"] == pytest.approx(kolmogorov(lam), rel=1e-9)
    assert far["p_values"]["predicted_class"] == 1.0 and far["shifted"] is True
    # alpha decides: [20, 20] against [17, 3]: X2 = 60 (20 * 3 - 20 * 17)^2 / (40 * 20 * 37 * 23) = 6.91, p = 0.0086,
    # doubled 0.017: flagged at 0.05, not at 0.01
    batch = ["COVID-19"] * 17 + ["Normal"] * 3
    assert site_shift.check(ref[::2], batch, c, "model.onnx")["statistics"]["chi_square"] == pytest.approx(
        60 * 280**2 / (40 * 20 * 37 * 23))
    assert site_shift.check(ref[::2], batch, c, "model.onnx")["shifted"] is True
    strict = card(ref, {"COVID-19": 20, "Normal": 20, "Pneumonia": 0}, alpha=0.01)
    assert site_shift.check(ref[::2], batch, strict, "model.onnx")["shifted"] is False


def test_check_results_uses_the_raw_argmax_and_skips_errors():
    c = card([1.0, 2.0, 3.0], {"COVID-19": 1, "Normal": 1, "Pneumonia": 1}, min_films=2)
    results = [{"ood_score": 1.5, "logits": [0.0, 2.0, 1.0], "top_class": "COVID-19"},  # a site profile's class
               {"error": "not an image"}, {"ood_score": 2.5, "logits": [3.0, 2.0, 1.0]}]
    verdict = site_shift.check_results(results, c, "model.onnx")
    assert verdict["n"] == 2 and verdict["class_counts"] == {"COVID-19": 1, "Normal": 1, "Pneumonia": 0}


def test_reference_is_sorted_and_counted():
    ref = site_shift.reference([3.0, 1.0, 2.0], [[0, 1, 0], [1, 0, 0], [0, 1, 0]], CLASSES, "model.onnx")
    assert ref == {"model_file": "model.onnx", "films": 3, "ood_scores": [1.0, 2.0, 3.0],
                   "class_counts": {"COVID-19": 1, "Normal": 2, "Pneumonia": 0}}


def test_export_writes_the_reference(tiny_export):
    import jsonschema

    from runtime.predictor import Predictor
    from training.data.dataset import load_prepared

    model_card = json.loads((tiny_export / "model.json").read_text())
    jsonschema.validate(model_card, json.loads((REPO / "export" / "model.schema.json").read_text()))
    section = model_card["site_shift"]
    assert set(section["references"]) == set(model_card["files"])
    ref = section["references"]["model.onnx"]
    prepared = model_card["source"]["data"]
    val = [r for r in load_prepared(prepared)[1] if r["split"] == "val"]
    predictor = Predictor(tiny_export / "model.onnx")
    results = [predictor.predict_file(r["file"])[0] for r in val]
    assert ref["films"] == len(val)
    np.testing.assert_allclose(ref["ood_scores"], sorted(r["ood_score"] for r in results), rtol=1e-5)
    assert ref["class_counts"] == {c: sum(r["top_class"] == c for r in results) for c in model_card["classes"]}


def test_predict_cli_ends_with_the_site_shift_line(tiny_export, shared_cxr):
    images = sorted((shared_cxr / "images").glob("*.png"))[:21]

    def predict(files):
        return subprocess.run([sys.executable, "-m", "cxr", "predict", *map(str, files), "--model",
                               str(tiny_export / "model.onnx")], cwd=REPO, capture_output=True, text=True)

    run = predict(images[:20] + [REPO / "pyproject.toml"])  # 20 films and a file that is no image
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert len(lines) == 21 and "error" in lines[-1]  # stdout: one JSON line per file, nothing else
    shift = [line for line in run.stderr.splitlines() if line.startswith("site shift")]
    assert len(shift) == 1 and shift[0].startswith("site shift (20 films): ")
    assert site_shift.SHIFTED in shift[0] or site_shift.NOT_SHIFTED in shift[0]
    assert "KS D = " in shift[0] and "chi-square = " in shift[0]
    few = predict(images[:19])
    assert few.returncode == 0 and "site shift" not in few.stderr
