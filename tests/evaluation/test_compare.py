import json

from cxr.cli import main
from training.data.phantoms import write_phantoms


def test_compare_runs_variants_under_one_protocol_and_resumes(tmp_path):
    manifest = write_phantoms(tmp_path / "ph", 45, size=96)
    args = ["--data", str(manifest), "--out", str(tmp_path / "cmp"), "--arch", "resnet18", "--weights", "none",
            "--epochs", "1", "--size", "64", "--variants", "baseline", "crop"]
    main(["compare", *args])
    table = (tmp_path / "cmp" / "resnet18-none-table.md").read_text()
    assert table.count("\n| baseline |") == 1 and table.count("\n| crop |") == 1
    crop = json.loads((tmp_path / "cmp" / "prepared-crop_borders" / "prepared.json").read_text())
    assert crop["crop_borders"] is True
    manifests = [(tmp_path / "cmp" / f"prepared-{t}" / "manifest.csv").read_text() for t in ("plain", "crop_borders")]
    assert manifests[0].count(",test,") == manifests[1].count(",test,") > 0  # the same split for every variant
    stamp = (tmp_path / "cmp" / "resnet18-none-baseline" / "eval" / "metrics.json").stat().st_mtime
    main(["compare", *args])  # already evaluated: not run again
    assert (tmp_path / "cmp" / "resnet18-none-baseline" / "eval" / "metrics.json").stat().st_mtime == stamp
