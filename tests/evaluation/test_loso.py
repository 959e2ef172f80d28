import json

from cxr.cli import main
from training.data.dataset import load_prepared
from training.evaluation.loso import VARIANTS, runs_of


def test_runs_of_each_variant():
    old = {"ieee8023", "nih", "hannover"}
    assert runs_of(VARIANTS["baseline"], old) == {"internal": "hannover", "hannover": "hannover",
                                                  "ieee8023-pneumonia": "hannover,ieee8023:Pneumonia"}
    assert runs_of(VARIANTS["hannover"], old) == {"internal": "", "hannover": "hannover",
                                                  "ieee8023-covid": "ieee8023:COVID-19",
                                                  "ieee8023-pneumonia": "ieee8023:Pneumonia"}


def test_runs_of_with_the_new_normals():
    every = {"ieee8023", "nih", "hannover", "montgomery", "shenzhen"}
    # The old default never sees the new hospitals: its one main run scores all three unseen folds.
    assert runs_of(VARIANTS["baseline"], every) == {
        "internal": "hannover,montgomery,shenzhen", "hannover": "hannover,montgomery,shenzhen",
        "ieee8023-pneumonia": "hannover,montgomery,shenzhen,ieee8023:Pneumonia",
        "montgomery": "hannover,montgomery,shenzhen", "shenzhen": "hannover,montgomery,shenzhen"}
    # Trained on both new normals: each is held out in a run of its own, Hannover stays unseen.
    assert runs_of(VARIANTS["normals-balance"], every) == {
        "internal": "hannover", "hannover": "hannover", "ieee8023-pneumonia": "hannover,ieee8023:Pneumonia",
        "montgomery": "hannover,montgomery", "shenzhen": "hannover,shenzhen"}
    assert VARIANTS["normals-balance"].options == {"balance_sources": True}


def test_loso_trains_without_each_source_and_scores_it(tiny_sources_prepared, tmp_path):
    manifest = tiny_sources_prepared / "manifest.csv"
    out = tmp_path / "loso"
    args = ["loso", "--data", f"manifest:{manifest}", "--out", str(out), "--variants", "baseline", "hannover",
            "--arch", "resnet18", "--weights", "none", "--epochs", "1", "--size", "64", "--bootstrap", "20"]
    assert main(args) == 0
    runs, over_seeds = (out / "loso-table.md").read_text().split("Over seeds")
    assert runs.count("\n| baseline | 0 |") == 1 and runs.count("\n| hannover | 0 |") == 1
    assert over_seeds.count("\n| baseline | 1 |") == 1
    hannover = json.loads((out / "hannover" / "results.json").read_text())
    fold = hannover["runs"]["hannover"]
    _, rows = load_prepared(out / "prepared")
    assert fold["held_out"]["images"] == sum(r["source"] == "hannover" for r in rows)  # every split of it
    assert abs(sum(fold["sent_to"].values()) - 1) < 1e-9 and 0 <= fold["sensitivity"]["value"] <= 1
    assert "within_source" in hannover["runs"]["ieee8023-covid"]  # ieee8023 also holds Pneumonia
    assert "within_source" not in fold  # Hannover holds COVID-19 only
    baseline = json.loads((out / "baseline" / "results.json").read_text())
    assert "ieee8023-covid" not in baseline["runs"]  # without Hannover no COVID-19 source would be left
    assert baseline["runs"]["internal"]["folder"] == baseline["runs"]["hannover"]["folder"]  # one run, two uses
    internal = baseline["runs"]["internal"]
    assert set(internal["by_source"]) == {"ieee8023", "nih"} and "jpeg75" in internal["reencoding"]
    stamp = (out / "hannover" / "results.json").stat().st_mtime
    assert main(args) == 0  # already scored: not run again
    assert (out / "hannover" / "results.json").stat().st_mtime == stamp
