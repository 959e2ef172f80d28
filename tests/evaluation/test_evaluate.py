from tests.conftest import tiny_config
from training.evaluation.evaluate import evaluate
from training.loop.train import train


def test_evaluate_writes_report(tiny_prepared, tmp_path):
    train(tiny_config(tiny_prepared, tmp_path / "run", epochs=1), progress=False)
    r = evaluate(tmp_path / "run" / "best.pt", tiny_prepared, tmp_path / "eval", n_boot=50, gradcam_samples=2,
                 progress=False)
    assert r["images"] == 12 and set(r["by_source"]) == {"phantom"}
    assert len(r["all"]["ci95"]["macro_auc"]) == 2
    for name in ("metrics.json", "report.md", "roc.png", "confusion.png", "reliability.png", "training_curves.png"):
        assert (tmp_path / "eval" / name).exists(), name
    assert len(list((tmp_path / "eval" / "gradcam").glob("*.png"))) == 2
    assert r["pointing_game"] is None or 0 <= r["pointing_game"]["point_rate"] <= r["pointing_game"]["cell_rate"] <= 1
