"""`cxr release` (`make release`): retrain the released model from the shared data with pinned seeds and rewrite
models/<name>/, the folder `cxr build` makes the site from.

The folder holds what a user needs and what a reviewer needs to trust it: the ONNX file(s) and model.json (every
file's sha256, the verification table, test-split metrics per file), verification.md, the evaluation report with
its plots and metrics.json, test_split.csv (the test images, so the metrics can be reproduced: see
tests/cli/test_release.py), and RELEASE.md: the command, commit, data and machine it was made with.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import shutil
import subprocess
import sys
from argparse import Namespace
from datetime import UTC
from pathlib import Path

from core.jsonio import write_json
from runtime.paths import RELEASE_DIR, REPO

from .pipeline import build

# The released model's recipe: the best the project can honestly make from ../shared/data today (README Results).
RECIPE = {"arch": "efficientnet_lite0", "weights": "imagenet", "epochs": 30, "lr": 3e-4, "batch_size": 32, "seed": 0,
          "size": 224, "lungs": str(REPO / "models" / "lung-segmenter" / "lungs.pt"),
          # The chest gate (docs/gate.md): no diagnosis for what is not a frontal chest film, upright, not inverted.
          "gate": str(REPO / "models" / "chest-gate" / "gate.pt"),
          # Processing-style randomisation: the one candidate that moved the unseen hospitals' Normal films out of
          # the Pneumonia sink beyond the noise (docs/shortcuts.md, "Normal from three hospitals").
          "train_options": {"style": True}}
SHARED_DATA = REPO.parent / "shared" / "data"
# Scored after training, never trained or validated on: the release's unseen-source test (docs/shortcuts.md, "leave-
# one-source-out": Hannover in training did not help on unseen sources, so it is the held-out hospital; the Normal
# films of Montgomery and Shenzhen did not help against the Pneumonia sink, so they are held-out hospitals too).
HELD_OUT = (str(SHARED_DATA / "hannover"), str(SHARED_DATA / "montgomery-shenzhen"))
EVAL_FILES = ("report.md", "metrics.json", "roc.png", "confusion.png", "reliability.png", "training_curves.png")


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def provenance(data: list[str], command: list[str], held_out: list[str] = ()) -> dict:
    from core.checksum import sha256_file
    from training.data.readers import parse_spec

    commit = _git("rev-parse", "HEAD")
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
    manifests = {}
    for spec in [*data, *held_out]:
        path = Path(parse_spec(spec)[1])
        manifest = path / "manifest.csv" if path.is_dir() else path
        if manifest.is_file():
            manifests[spec] = sha256_file(manifest)
    return {"command": " ".join(command), "commit": commit, "uncommitted_changes": dirty, "data": data,
            "held_out": list(held_out), "data_manifest_sha256": manifests, "python": platform.python_version(),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()}"}


def write_test_split(prepared: Path, out: Path, data_root: Path) -> None:
    """The test split's files relative to `data_root` (the folder holding the datasets), with labels, patients
    and sources: enough to re-score the released model on the same images anywhere the data is."""
    from training.data.dataset import load_prepared

    _, rows = load_prepared(prepared)
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, ["file", "label", "patient_id", "source"])
        writer.writeheader()
        for r in rows:
            if r["split"] == "test":
                writer.writerow({"file": Path(r["file"]).resolve().relative_to(data_root.resolve()).as_posix(),
                                 "label": r["label"], "patient_id": r["patient_id"], "source": r["source"]})


def _gate_line(gate: dict) -> str:
    """The chest film check in one row: its file and what it refused in this export (docs/gate.md)."""
    refused = ", ".join(f"{name.replace('_', ' ')} {r['refused']} of {r['n']}"
                        for name, r in gate.get("refused_in_export", {}).items())
    return (f"| chest film check | `{gate.get('file', 'gate.pt')}` (sha256 `{gate.get('sha256', '?')[:12]}`), "
            f"threshold {gate['threshold']}; refused in this export: {refused}; measured: "
            "models/chest-gate/report.md, gate-evaluation.md |")


def _release_notes(card: dict, prov: dict) -> str:
    metrics = card["files"][card["default_model"]]["metrics_test"]["all"]
    ci = metrics["ci95"]["macro_auc"]
    lines = [f"# Release {card['name']} {card['version']}", "",
             f"EfficientNet-Lite0 ({card['weights_origin']} initialisation), trained with `cxr release`.", "",
             "| | |", "|---|---|",
             f"| command | `{prov['command']}` |",
             f"| commit | `{prov['commit'] or 'unknown'}`"
             f"{' (with uncommitted changes)' if prov['uncommitted_changes'] else ''} |",
             *([f"| training | {prov['training']} |"] if "training" in prov else []),
             f"| data | {', '.join(f'`{d}`' for d in prov['data'])} |",
             *([f"| held out (never trained on; scored) | {', '.join(f'`{d}`' for d in prov['held_out'])} |"]
               if prov.get("held_out") else []),
             *([f"| unseen-source scores | {prov['external']} |"] if "external" in prov else [])]
    lines += [f"| manifest sha256 of `{spec}` | `{sha}` |" for spec, sha in prov["data_manifest_sha256"].items()]
    lines += [f"| made on | {prov['machine']}, Python {prov['python']}, {card['created']} |",
              "| files | " + ", ".join(f"{n} ({info['size'] / 1e6:.1f} MB, {info['precision']})"
                                         for n, info in card["files"].items()) + " |",
              f"| default model | {card['default_model']} |",
              f"| int8 | {card['int8']['note']} |",
              f"| internal test split | macro AUC {metrics['macro_auc']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}], accuracy "
              f"{metrics['accuracy']:.3f} on {metrics['n']} images |",
              *[f"| unseen source | {text} |" for text in card.get("external", {}).get("summary", [])],
              *([_gate_line(card["gate"])] if card.get("gate") else []),
             "| leave-one-source-out | the recipe's choice, fold by fold, with the share of unseen hospitals' films "
             "sent to Pneumonia: docs/shortcuts.md, \"Normal from three hospitals\" |", "",
              "## Terms", "", card["terms"], "",
              "## What it is not", "", *[f"- {item}" for item in card["limitations"]],
              f"- {card['intended_use']}", "",
              "Model card: model.json (shown in the app). Evaluation: eval/report.md. Verification: verification.md.",
              ""]
    return "\n".join(lines)


def held_out_rows(specs: list[str]) -> list[dict]:
    """The records of the held-out datasets as rows for export.external (`file` relative to the shared data folder
    where it lies there, so model.json names no machine's paths)."""
    from training.data.readers import read

    rows = []
    for spec in specs:
        reading = read(spec)
        if reading.skipped:
            print(f"held-out {spec}: {len(reading.skipped)} files skipped (first: {reading.skipped[0].file}: "
                  f"{reading.skipped[0].reason})", file=sys.stderr)
        rows += [{"file": _shown(r.file), "path": Path(r.file), "label": r.label, "patient_id": r.patient_id,
                  "source": r.source} for r in reading.records]
    return rows


def score_unseen(folder: Path, held_out: list[str], n_boot: int = 1000) -> dict:
    """Score the release in `folder` (its default model file) on `held_out` datasets, none of whose sources it was
    trained or validated on; write model.json `external` and the limitations that follow. Returns the card."""
    from export.card import limitations
    from export.external import external_metrics, rows_of_test_split
    from runtime.predictor import Predictor

    card = json.loads((folder / "model.json").read_text())
    rows = held_out_rows(held_out)
    seen = set(card["training_data"]["sources"]) & {r["source"] for r in rows}
    if seen:
        raise ValueError(f"held-out data shares sources with the training data ({', '.join(sorted(seen))}): "
                         "an unseen-source score needs sources the model never saw")
    predictor = Predictor(folder / card["default_model"])
    external = external_metrics(predictor, rows, rows_of_test_split(folder / "test_split.csv", SHARED_DATA), n_boot)
    card["external"] = {"model_file": card["default_model"], "data": [_shown(spec) for spec in held_out],
                        **external}
    card["limitations"] = limitations(card["training_data"], card["demo"], card["external"])
    write_json(folder / "model.json", card)  # NaN (an undefined AUC) as null, as every model.json
    return card


def _shown(path) -> str:
    """A path as model.json and RELEASE.md name it: relative to the shared data folder when it lies there."""
    path = Path(path)
    return path.relative_to(SHARED_DATA).as_posix() if path.is_relative_to(SHARED_DATA) else str(path)


def reexport(work: Path, name: str) -> dict:
    """Export WORK's trained and evaluated checkpoint again (after a change to export), without retraining."""
    from export.package import export

    folders = {"prepared": work / "prepared", "run": work / "run", "eval": work / "eval", "model": work / "model"}
    missing = [str(p) for p in (folders["run"] / "best.pt", folders["eval"] / "metrics.json") if not p.exists()]
    if missing:
        raise FileNotFoundError(f"--reexport needs a finished release run: {', '.join(missing)} not found")
    export(folders["run"] / "best.pt", folders["model"], evaluation=folders["eval"] / "metrics.json", name=name,
           lungs=RECIPE["lungs"], gate=RECIPE["gate"])
    return folders


def release(data: list[str], out: Path = RELEASE_DIR, work: Path = REPO / "work" / "release",
            command: list[str] | None = None, reexport_only: bool = False, held_out: list[str] = ()) -> dict:
    """Train, evaluate and export the release recipe on `data`, score it on the `held_out` datasets, then (re)write
    `out`. Returns the model card. `reexport_only`: reuse the trained and evaluated run in `work` (provenance says
    so)."""
    args = Namespace(data=data, demo=False, work=work, dist=work / "dist", force=False, phantoms=0, name=out.name,
                     class_map={}, patient_regex=None, rsna_not_normal=None, **RECIPE)
    # The commit and data as they are when training starts (the run is long: the tree may change meanwhile).
    prov = provenance(data, command or ["cxr", "release", *sum((["--data", d] for d in data), [])], held_out)
    if reexport_only:
        prov["training"] = (f"reused from {work / 'run'} (best.pt of "
                            f"{_mtime(work / 'run' / 'best.pt')}); exported again at this commit")
        folders = reexport(work, out.name)
    else:
        folders = build(args, site=False)
    card = json.loads((folders["model"] / "model.json").read_text())
    staging = out.with_name(f".{out.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "eval").mkdir(parents=True)
    for name in [*card["files"], "model.json", "verification.md"]:
        shutil.copy2(folders["model"] / name, staging / name)
    for name in EVAL_FILES:
        if (folders["eval"] / name).exists():
            shutil.copy2(folders["eval"] / name, staging / "eval" / name)
    write_test_split(folders["prepared"], staging / "test_split.csv", SHARED_DATA)
    if held_out:
        card = score_unseen(staging, held_out)
    write_json(staging / "provenance.json", prov)
    (staging / "RELEASE.md").write_text(_release_notes(card, prov))
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
    return card


def rescore(out: Path, held_out: list[str], command: list[str]) -> dict:
    """Score the committed release on the held-out data again (after a change to the scoring, or new held-out data):
    model.json `external`, RELEASE.md and provenance.json are rewritten; the model files are not touched."""
    if not (out / "model.json").exists():
        raise FileNotFoundError(f"{out / 'model.json'} not found: nothing to rescore")
    if not held_out:
        raise ValueError(f"no held-out data: {HELD_OUT[0]} not found and no --held-out given")
    card = score_unseen(out, held_out)
    prov = json.loads((out / "provenance.json").read_text())
    scoring = provenance(prov["data"], command, held_out)
    prov.update(held_out=held_out, data_manifest_sha256=scoring["data_manifest_sha256"],
                external=f"`{scoring['command']}` at commit {scoring['commit']}"
                         f"{' (with uncommitted changes)' if scoring['uncommitted_changes'] else ''}")
    write_json(out / "provenance.json", prov)
    (out / "RELEASE.md").write_text(_release_notes(card, prov))
    return card


def _mtime(path: Path) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(path.stat().st_mtime, UTC).strftime("%Y-%m-%d %H:%M UTC")
