import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_CXR = Path(os.environ.get("CXR_SHARED_DATA", REPO.parent / "shared" / "data" / "cxr"))


@pytest.fixture(scope="session")
def shared_cxr() -> Path:
    """The shared real chest X-ray set; tests that need it skip cleanly where it is absent."""
    if not (SHARED_CXR / "manifest.csv").exists():
        pytest.skip(f"shared chest X-ray set not found at {SHARED_CXR} (set CXR_SHARED_DATA)")
    return SHARED_CXR


def chromium_path() -> str | None:
    return os.environ.get("CHROMIUM") or shutil.which("chromium")


def pytest_sessionfinish(session, exitstatus):
    # A run in which nothing passed must not look green (e.g. everything skipped on a machine missing a dependency).
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and exitstatus == 0 and not reporter.stats.get("passed"):
        reporter.write_line("error: no test passed (all skipped or deselected)", red=True)
        session.exitstatus = 1


@pytest.fixture(scope="session")
def tiny_prepared(tmp_path_factory) -> Path:
    """60 phantoms prepared at 64 px: the tiny configuration for training, evaluation and export tests."""
    from training.data.phantoms import write_phantoms
    from training.data.prepare import prepare

    root = tmp_path_factory.mktemp("tiny")
    manifest = write_phantoms(root / "phantoms", 60, size=96, seed=0)
    prepare([str(manifest)], root / "prepared", size=64, progress=False, fractions=(0.6, 0.2, 0.2))
    return root / "prepared"


def tiny_config(prepared: Path, out: Path, **overrides):
    from training.loop.config import TrainConfig

    settings = dict(data=str(prepared), out=str(out), arch="resnet18", weights="none", epochs=2, batch_size=12,
                    lr=1e-3, eval_batch_size=32, ood_dims=16)
    settings.update(overrides)
    return TrainConfig(**settings)


def make_tiny_export(prepared: Path, folder: Path, lungs: Path | None = None, gate: Path | None = None,
                     **train_overrides) -> Path:
    """Train a tiny model (4 epochs, a few seconds) and export it: folder/export holds model.onnx, model.int8.onnx,
    model.json; folder/run the checkpoint. `lungs`: a segmenter for the evidence-in-the-lungs outputs; `gate`: a
    chest gate trained on it."""
    from export.package import export
    from training.loop.train import train

    # Without harmonisation: with it, this tiny model's int8 misses the fidelity bar (AUC drop 0.01-0.04 on 12 test
    # images) and the export ships fp32 only, which would leave the browser's int8 path untested.
    settings = {"epochs": 4, "harmonize": False, **train_overrides}
    train(tiny_config(prepared, folder / "run", **settings), progress=False)
    export(folder / "run" / "best.pt", folder / "export", n_boot=50, calibration_images=8, lungs=lungs, gate=gate)
    return folder / "export"


def with_int8(export_dir: Path, prepared: Path, folder: Path) -> Path:
    """A copy of an export that ships an int8 file. The browser's int8 path must be tested whatever the tiny model's
    int8 scores: on 12 test images one rank decides the fidelity bar (AUC drop <= 0.01), and thread counts move it.
    Where export shipped fp32 only, the copy gets the first recipe's int8 file in its model.json, marked as a test
    fixture; the export itself is left as it was (its own tests see what export decided)."""
    import json
    import shutil

    shutil.copytree(export_dir, folder)
    export_dir = folder

    from core.checksum import sha256_file
    from export.onnx_export import RECIPES, quantize_int8
    from export.package import decoded_split

    card = json.loads((export_dir / "model.json").read_text())
    if "model.int8.onnx" in card["files"]:
        return folder
    calibration, _ = decoded_split(prepared, "train", limit=8)
    quantize_int8(export_dir / "model.onnx", export_dir / "model.int8.onnx", calibration, RECIPES[0])
    card["files"]["model.int8.onnx"] = {
        "precision": "int8", "recipe": RECIPES[0].name, "note": "test fixture: added whatever its fidelity",
        "sha256": sha256_file(export_dir / "model.int8.onnx"), "size": (export_dir / "model.int8.onnx").stat().st_size}
    (export_dir / "model.json").write_text(json.dumps(card, indent=2))
    return folder


# The released lung segmenter (models/, a build input of the released model; `cxr lungs-train` made it).
LUNG_SEGMENTER = REPO / "models" / "lung-segmenter" / "lungs.pt"


@pytest.fixture(scope="session")
def tiny_export_lungs(tiny_prepared, tmp_path_factory) -> Path:
    """The tiny model exported with the released lung segmenter: the evidence-in-the-lungs outputs."""
    assert LUNG_SEGMENTER.exists(), f"{LUNG_SEGMENTER} is missing: it is committed with the released model"
    return make_tiny_export(tiny_prepared, tmp_path_factory.mktemp("tiny_lungs"), lungs=LUNG_SEGMENTER)


@pytest.fixture(scope="session")
def tiny_export_gate(tiny_prepared, tmp_path_factory) -> Path:
    """The tiny model exported with the released lung segmenter and the released chest gate."""
    assert CHEST_GATE.exists(), f"{CHEST_GATE} is missing: it is committed with the released model"
    return make_tiny_export(tiny_prepared, tmp_path_factory.mktemp("tiny_gate"), lungs=LUNG_SEGMENTER, gate=CHEST_GATE)


@pytest.fixture(scope="session")
def tiny_export_lung_crop(tmp_path_factory) -> Path:
    """Like tiny_export, but prepared with the released segmenter's lung crop: the graph segments, crops the image to
    the lung box and classifies the crop (the whole pipeline: prepare, train, export and its verification)."""
    from training.data.phantoms import write_phantoms
    from training.data.prepare import prepare

    root = tmp_path_factory.mktemp("tiny_lung_crop")
    manifest = write_phantoms(root / "phantoms", 60, size=96, seed=0)
    prepare([str(manifest)], root / "prepared", size=64, progress=False, fractions=(0.6, 0.2, 0.2),
            lung_crop=str(LUNG_SEGMENTER))
    return make_tiny_export(root / "prepared", root)


@pytest.fixture(scope="session")
def tiny_export_geometry(tmp_path_factory) -> Path:
    """Like tiny_export, but prepared with the optional in-graph border crop and text suppression."""
    from training.data.phantoms import write_phantoms
    from training.data.prepare import prepare

    root = tmp_path_factory.mktemp("tiny_geometry")
    manifest = write_phantoms(root / "phantoms", 60, size=96, seed=0)
    prepare([str(manifest)], root / "prepared", size=64, progress=False, fractions=(0.6, 0.2, 0.2),
            crop_borders=True, suppress_text=True)
    return make_tiny_export(root / "prepared", root)


@pytest.fixture(scope="session")
def tiny_export(tiny_prepared, tmp_path_factory) -> Path:
    """A tiny exported model (phantoms, 64 px, resnet18, 4 epochs): for export, predict and browser tests."""
    return make_tiny_export(tiny_prepared, tmp_path_factory.mktemp("tiny_export"))


# Sources as in the shared data: COVID-19 from ieee8023 and hannover, Normal from nih, Pneumonia from nih and
# ieee8023. One ieee8023 patient has a COVID-19 and a Pneumonia image (as patients of the real set do).
SOURCES_BY_LABEL = {"COVID-19": ("ieee8023", "hannover"), "Normal": ("nih",), "Pneumonia": ("nih", "ieee8023")}


@pytest.fixture(scope="session")
def tiny_sources_prepared(tmp_path_factory) -> Path:
    """90 phantoms at 64 px with the shared data's sources (names and label mix): for the remedies and LOSO."""
    import csv

    from training.data.phantoms import write_phantoms
    from training.data.prepare import prepare

    root = tmp_path_factory.mktemp("tiny_sources")
    manifest = write_phantoms(root / "phantoms", 90, size=96, seed=3)
    with open(manifest, newline="") as f:
        rows = list(csv.DictReader(f))
    seen = {}
    for row in rows:
        sources = SOURCES_BY_LABEL[row["label"]]
        n = seen.setdefault(row["label"], 0)
        seen[row["label"]] += 1
        row["source"] = sources[n % len(sources)]
        row["patient_id"] = f"{row['source']}_{row['patient_id']}"
    pneumonia = next(r for r in rows if r["label"] == "Pneumonia" and r["source"] == "ieee8023")
    covid = next(r for r in rows if r["label"] == "COVID-19" and r["source"] == "ieee8023")
    pneumonia["patient_id"] = covid["patient_id"]
    with open(manifest, "w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    prepare([str(manifest)], root / "prepared", size=64, progress=False, fractions=(0.6, 0.2, 0.2))
    return root / "prepared"


SHARED_DATA = SHARED_CXR.parent
CHEST_GATE = REPO / "models" / "chest-gate" / "gate.pt"


@pytest.fixture(scope="session")
def gate_kind_files(tmp_path_factory) -> dict:
    """One PNG of each kind the chest gate tells apart, all of patients the shipped gate never saw (its test fold):
    a film of ../cxr and of Hannover, that ../cxr film inverted, upside down and rotated by 90 degrees, a lateral
    view and a CT slice of not-frontal, and a photograph the gate never trained on."""
    import numpy as np
    from PIL import Image

    from training.data import gate_sets as sets
    from training.data.not_xrays import photographs
    from training.evaluation.gate import TEST_FOLD

    needed = [SHARED_DATA / name / "manifest.csv" for name in ("cxr", "hannover", "not-frontal")]
    if not all(path.exists() for path in needed):
        pytest.skip(f"the shared chest, Hannover and not-frontal sets are not all under {SHARED_DATA}")
    folder = tmp_path_factory.mktemp("gate_kinds")

    def first(items, kind=None):
        return next(i for i in sorted(items, key=lambda i: i.name)
                    if sets.patient_fold(i.patient) == TEST_FOLD and kind in (None, i.kind))

    skipped: list = []
    cxr = first(sets.chest_films([SHARED_DATA / "cxr"], skipped))
    images = {"film": cxr.image, "hannover": first(sets.chest_films([SHARED_DATA / "hannover"], skipped)).image}
    for kind in ("inverted", "upside_down", "rotated_90_cw"):
        images[kind] = sets.transform(cxr, kind).image
    others = sets.not_frontal(SHARED_DATA / "not-frontal", skipped)
    images["lateral"], images["ct"] = first(others, "lateral").image, first(others, "ct").image
    images["photograph"] = photographs()["astronaut"]
    files = {}
    for kind, image in images.items():
        files[kind] = folder / f"{kind}.png"
        Image.fromarray(np.asarray(image, np.uint8)).save(files[kind])
    return files
