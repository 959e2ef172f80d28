"""`cxr build`: the site, from the released model (default), from a phantom demo trained here (`--demo`), or from
your datasets (`--data`): prepare -> train -> evaluate -> export (verified) -> pwa, skipping stages whose inputs did
not change.

Each stage records a hash of its inputs (settings, input files, and the code that runs it) in WORK/stamps/; a
stage whose inputs did not change is skipped, so a re-run with nothing changed takes seconds. An interrupted
training run is resumed rather than restarted.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

from runtime.paths import REPO

# The phantom demo (`--demo`): small and fast on 2 CPU cores (a few minutes), clearly a demo (model.json demo: true).
DEMO = {"phantoms": 600, "phantom_size": 256, "arch": "resnet18", "weights": "none", "epochs": 15, "lr": 1e-3}

# The code each stage runs (folders or files below the repository): its hash is part of the stage's key.
STAGE_CODE = {
    "phantoms": ("core", "training/data"),
    "prepare": ("core", "training/graph", "training/data"),
    "train": ("core", "training/graph", "training/data", "training/model", "training/loop"),
    "evaluate": ("core", "training/graph", "training/data", "training/model", "training/evaluation"),
    "export": ("core", "runtime", "training/graph", "training/data", "training/model", "export"),
    "pwa": ("pwa", "core/decode.py", "core/heatmap.py"),  # app/contract.js is generated from the decoder
}


def _hash_files(paths) -> str:
    digest = hashlib.sha256()
    for path in sorted(Path(p) for p in paths):
        digest.update(str(path.relative_to(REPO) if path.is_relative_to(REPO) else path).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def code_hash(stage: str) -> str:
    files = []
    for part in STAGE_CODE[stage]:
        path = REPO / part
        if path.is_file():
            files.append(path)
        else:
            files += [f for f in path.rglob("*") if f.is_file() and "__pycache__" not in f.parts]
    return _hash_files(files)


def data_listing_hash(spec: str) -> str:
    """Cheap fingerprint of a dataset: every file's path, size and mtime (content is hashed later by the cache)."""
    from training.data.readers import parse_spec

    path = Path(parse_spec(spec)[1])
    digest = hashlib.sha256(spec.encode())
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        stat = f.stat()
        digest.update(f"{f}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


class Stages:
    """Runs stages in order, skipping those whose input key matches the stamp of their last successful run."""

    def __init__(self, work: Path, force: bool):
        self.stamps = work / "stamps"
        self.stamps.mkdir(parents=True, exist_ok=True)
        self.force = force

    def run(self, name: str, key_parts: dict, outputs: list[Path], action) -> bool:
        key = hashlib.sha256(json.dumps(key_parts, sort_keys=True, default=str).encode()).hexdigest()
        stamp = self.stamps / f"{name}.json"
        previous = json.loads(stamp.read_text()) if stamp.exists() else {}
        if not self.force and previous.get("key") == key and all(p.exists() for p in outputs):
            print(f"[{name}] up to date, skipped")
            return False
        print(f"[{name}] running ...", flush=True)
        started = time.perf_counter()
        stamp.unlink(missing_ok=True)
        action(resume=previous.get("key") == key)
        stamp.write_text(json.dumps({"key": key, "seconds": round(time.perf_counter() - started, 1)}) + "\n")
        print(f"[{name}] done in {time.perf_counter() - started:.0f} s", flush=True)
        return True


def build(args, site: bool = True) -> dict:
    """Run the stages for `args` (a dataset, or the phantom demo); returns the folders they wrote."""
    from export.package import export
    from training.data.phantoms import write_phantoms
    from training.data.prepare import prepare
    from training.evaluation.evaluate import evaluate
    from training.loop.config import TrainConfig
    from training.loop.train import train

    work, dist = args.work.resolve(), args.dist.resolve()
    stages = Stages(work, args.force)
    prepared, run_dir, eval_dir, model_dir = work / "prepared", work / "run", work / "eval", work / "model"

    data = list(args.data or [])
    demo = not data
    if demo and not args.demo:
        raise ValueError("no dataset given: pass --data, or --demo for the phantom demo")
    if demo:
        phantoms = work / "phantoms"
        settings = {"n": args.phantoms, "size": DEMO["phantom_size"], "seed": 0}
        stages.run("phantoms", {**settings, "code": code_hash("phantoms")}, [phantoms / "manifest.csv"],
                   lambda resume: write_phantoms(phantoms, settings["n"], settings["size"], settings["seed"]))
        data = [f"manifest:{phantoms / 'manifest.csv'}"]

    prepare_options = {"size": args.size, "seed": args.seed, "class_map": args.class_map,
                       "patient_regex": args.patient_regex, "rsna_not_normal": args.rsna_not_normal}
    stages.run("prepare", {"data": {s: data_listing_hash(s) for s in data}, **prepare_options,
                           "code": code_hash("prepare")}, [prepared / "manifest.csv"],
               lambda resume: prepare(data, prepared, cache_dir=work / "cache", **prepare_options))

    config = TrainConfig(data=str(prepared), out=str(run_dir),
                         arch=args.arch or (DEMO["arch"] if demo else "resnet50"),
                         weights=args.weights or (DEMO["weights"] if demo else "auto"),
                         epochs=args.epochs or (DEMO["epochs"] if demo else 30),
                         lr=args.lr or (DEMO["lr"] if demo else 3e-4), batch_size=args.batch_size, seed=args.seed,
                         **getattr(args, "train_options", {}))  # e.g. the release recipe's remedies

    def train_stage(resume):
        if not (resume and (run_dir / "last.pt").exists()):
            shutil.rmtree(run_dir, ignore_errors=True)
        train(config, resume=resume and (run_dir / "last.pt").exists())

    stages.run("train", {"config": config.__dict__, "data": _hash_files([prepared / "manifest.csv"]),
                         "code": code_hash("train")}, [run_dir / "best.pt"], train_stage)
    checkpoint_hash = _hash_files([run_dir / "best.pt"])
    stages.run("evaluate", {"checkpoint": checkpoint_hash, "code": code_hash("evaluate")},
               [eval_dir / "metrics.json"], lambda resume: evaluate(run_dir / "best.pt", prepared, eval_dir))
    lungs, gate = getattr(args, "lungs", None), getattr(args, "gate", None)
    stages.run("export", {"checkpoint": checkpoint_hash, "evaluation": _hash_files([eval_dir / "metrics.json"]),
                          "name": getattr(args, "name", "cxr-triage"),
                          "lungs": _hash_files([Path(lungs)]) if lungs else None,
                          "gate": _hash_files([Path(gate)]) if gate else None,
                          "code": code_hash("export")}, [model_dir / "model.json"],
               lambda resume: export(run_dir / "best.pt", model_dir, evaluation=eval_dir / "metrics.json",
                                     name=getattr(args, "name", "cxr-triage"), lungs=lungs, gate=gate))
    if site:
        build_pwa(model_dir, dist, stages)
        print(f"\nDone. Evaluation report: {eval_dir / 'report.md'}\nSite: {dist}\n{OPEN_HINT}")
    return {"prepared": prepared, "run": run_dir, "eval": eval_dir, "model": model_dir}


OPEN_HINT = "Open it with:  cxr serve   (then http://127.0.0.1:8000/)"


def build_pwa(model_dir: Path, dist: Path, stages: Stages | None = None) -> None:
    from pwa.site import build_site

    model_files = [p for p in model_dir.iterdir() if p.is_file()]
    key = {"model": _hash_files(model_files), "code": code_hash("pwa"),
           "node_modules": _hash_files([REPO / "package-lock.json"]), "dist": str(dist)}
    action = lambda resume: build_site(model_dir, dist, REPO / "node_modules")  # noqa: E731
    if stages is None:
        action(False)
    else:
        stages.run("pwa", key, [dist / "index.html"], action)


# --- commands ---------------------------------------------------------------------------------------------------
