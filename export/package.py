"""Turn a checkpoint into verified model files: model.onnx, model.int8.onnx (when it passes) and model.json.

Everything is written to OUT/.staging first. Only when the fp32 checks pass are the files moved into OUT and
model.json written; otherwise they go to OUT/rejected/ with the verification table, and ExportRejected is raised.
An int8 model that fails its fidelity checks is never shipped: the fp32 model is, and model.json says why.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from training.data import load_prepared
from training.decode import GRAY_WEIGHTS, DecodeError, decode
from training.metrics import evaluate_predictions, within_source_aucs
from training.records import CLASSES

from . import ood_probe, verify
from .checksum import sha256_file
from .onnx_export import RECIPES, export_fp32, quantize_int8
from .wrapper import INPUT_NAME, OUTPUT_NAMES, from_checkpoint

FP32, INT8 = "model.onnx", "model.int8.onnx"
MODEL_JSON_FORMAT = 1


class ExportRejected(RuntimeError):
    pass


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def decoded_split(prepared: Path, split: str, limit: int | None = None, seed: int = 0):
    """(images, rows) of a split, decoded from the original files; a subset of `limit` chosen by seed."""
    _, rows = load_prepared(prepared)
    rows = [r for r in rows if r["split"] == split]
    if limit is not None and len(rows) > limit:
        chosen = np.random.default_rng(seed).choice(len(rows), limit, replace=False)
        rows = [rows[i] for i in sorted(chosen)]
    images, kept = [], []
    for row in rows:
        try:
            images.append(decode(row["file"]))
            kept.append(row)
        except DecodeError as e:  # the file changed since prepare
            _log(f"warning: {e}")
    return images, kept


def ood_rates(sess, sets: dict, threshold: float, test_scores: np.ndarray) -> dict:
    rates = {}
    for name, images in sets.items():
        scores = [float(verify.run(sess, image[None, None])["ood_score"][0]) for image in images.values()]
        flagged = [n for n, s in zip(images, scores) if s > threshold]
        rates[name] = {"n": len(scores), "flagged": len(flagged), "rate": len(flagged) / max(len(scores), 1),
                       "not_flagged": sorted(set(images) - set(flagged))}
    kept = int((test_scores <= threshold).sum())
    rates["test_xrays"] = {"n": len(test_scores), "not_flagged": kept, "rate_not_flagged": kept / max(len(test_scores), 1)}
    return rates


def _created() -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")  # reproducible builds
    moment = datetime.fromtimestamp(int(epoch), timezone.utc) if epoch else datetime.now(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _project_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cxr-triage")
    except PackageNotFoundError:
        return "0.0.0"


def export(checkpoint: Path, out: Path, data: Path | None = None, int8: bool = True, calibration_images: int = 48,
           n_boot: int = 1000) -> dict:
    checkpoint, out = Path(checkpoint), Path(out)
    staging = out / ".staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    wrapper, ckpt = from_checkpoint(checkpoint)
    data = Path(data or ckpt["config"]["data"])
    started = time.perf_counter()

    _log(f"export: fp32 ONNX of {ckpt['arch']} ...")
    export_fp32(wrapper, staging / FP32)
    checks = verify.check_fp32(staging / FP32, checkpoint)

    _log("export: test split through fp32 ...")
    test_images, test_rows = decoded_split(data, "test")
    labels = np.array([CLASSES.index(r["label"]) for r in test_rows])
    patients, sources = [r["patient_id"] for r in test_rows], [r["source"] for r in test_rows]
    fp32_sess = verify.session(staging / FP32)
    fp32_out = verify.predict_all(fp32_sess, test_images)
    threshold = float(ckpt["ood"]["threshold"])

    sets = ood_probe.ood_sets()
    outliers = [image for images in sets.values() for image in images.values()]
    fp32_outliers = verify.predict_all(fp32_sess, outliers)

    files = {FP32: {"precision": "fp32"}}
    outputs = {FP32: fp32_out}
    int8_report = {"shipped": False, "attempts": [], "note": "int8 not requested (--no-int8)"}
    if int8 and len(test_images):
        calibration, _ = decoded_split(data, "train", limit=calibration_images)
        extra = ood_probe.calibration_outliers()
        for recipe in RECIPES:
            _log(f"export: int8 ({recipe.name}), calibrated on {len(calibration)} training images and "
                 f"{len(extra)} generated non-X-ray images ...")
            try:
                quantize_int8(staging / FP32, staging / INT8, calibration + extra, recipe)
                int8_sess = verify.session(staging / INT8)
                int8_out = verify.predict_all(int8_sess, test_images)
                attempt = verify.compare_int8(fp32_out, int8_out, labels, threshold, fp32_outliers,
                                              verify.predict_all(int8_sess, outliers))
            except Exception as e:  # a recipe the quantiser cannot apply to this graph is a failed attempt
                _log(f"export: int8 ({recipe.name}) failed: {type(e).__name__}: {e}")
                attempt = [verify.Check(f"int8 quantisation ran ({type(e).__name__})", 0, 1, False)]
            int8_report["attempts"].append({"recipe": recipe.name, "checks": verify.as_dicts(attempt)})
            if all(c.passed for c in attempt):
                checks += attempt
                files[INT8] = {"precision": "int8", "recipe": recipe.name}
                outputs[INT8] = int8_out
                int8_report.update(shipped=True, recipe=recipe.name, note=f"static QDQ int8 ({recipe.name}) passed "
                                   "the fidelity checks against fp32 on the test split")
                break
        else:
            (staging / INT8).unlink(missing_ok=True)
            int8_report["note"] = ("no int8 recipe met the fidelity bar on the test split, so only the fp32 model is "
                                   "shipped")
            _log(f"export: {int8_report['note']}")
    elif int8:
        int8_report["note"] = "int8 not built: the test split is empty, so its fidelity cannot be checked"

    if not all(c.passed for c in checks):
        rejected = out / "rejected"
        shutil.rmtree(rejected, ignore_errors=True)
        (staging / "verification.md").write_text(verify.table(checks) + "\n")
        staging.rename(rejected)
        raise ExportRejected(f"verification failed; nothing was accepted. Files and table in {rejected}\n"
                             + verify.table(checks))

    _log("export: OOD rates and test-split metrics ...")
    for name, info in files.items():
        sess = fp32_sess if name == FP32 else verify.session(staging / name)
        info["ood_rates"] = ood_rates(sess, sets, threshold, outputs[name]["ood_score"])
        info["metrics_test"] = (evaluate_predictions(labels, outputs[name]["probabilities"], patients, sources, n_boot)
                                if len(test_images) else None)
        info["sha256"] = sha256_file(staging / name)
        info["size"] = (staging / name).stat().st_size

    _log("export: source/label confounding check ...")
    card = model_card(ckpt, checkpoint, data, files, checks, int8_report)
    card["shortcuts"] = shortcut_report(checkpoint, data, ckpt["data_summary"], labels, fp32_out["probabilities"],
                                        patients, sources, n_boot)
    (staging / "model.json").write_text(json.dumps(card, indent=2, default=_json_default) + "\n")
    (staging / "verification.md").write_text(verify.table(checks) + "\n")
    (out / "model.json").unlink(missing_ok=True)  # model.json appears last: its presence means "accepted"
    if INT8 not in files:
        (out / INT8).unlink(missing_ok=True)  # never leave an older int8 model beside a new fp32 one
    for name in [*files, "verification.md", "model.json"]:
        os.replace(staging / name, out / name)
    shutil.rmtree(staging)
    _log(f"export: done in {time.perf_counter() - started:.0f} s")
    return card


CONFOUNDED_SHARE = 0.8  # a class with this share of its images from one source is confounded with it


def shortcut_report(checkpoint: Path, data: Path, summary: dict, labels, probabilities, patients, sources,
                    n_boot: int) -> dict:
    """How far the model could be recognising the source instead of the disease, in plain words and numbers: where
    each class's training images came from, the source probe, and discrimination inside a single source."""
    from training.evaluate import source_probe_all_splits
    from training.model import load_checkpoint
    from training.preprocess import Normalize

    per_class = {}
    for split in summary["counts"].values():
        for source, by_class in split.items():
            for label, n in by_class.items():
                per_class.setdefault(label, {}).setdefault(source, 0)
                per_class[label][source] += n
    shares = {label: {s: n / max(sum(c.values()), 1) for s, n in sorted(c.items(), key=lambda kv: -kv[1]) if n}
              for label, c in per_class.items()}
    report = {"class_sources": shares, "source_probe": None, "within_source": [], "summary": []}
    if len(summary["sources"]) < 2:
        report["summary"] = ["All training images come from one source, so whether the model learned the source "
                             "instead of the disease cannot be measured here."]
        return report
    model, ckpt = load_checkpoint(checkpoint)
    pre = ckpt["preprocess"]
    report["source_probe"] = source_probe_all_splits(model, Normalize(pre["mean"], pre["std"]), data)
    report["within_source"] = within_source_aucs(labels, probabilities, patients, sources, n_boot) if len(labels) else []
    report["summary"] = shortcut_sentences(shares, report["source_probe"], report["within_source"])
    return report


def shortcut_sentences(shares: dict, probe: dict | None, within: list[dict]) -> list[str]:
    where = "; ".join(f"{label}: " + ", ".join(f"{100 * share:.0f}% {source}" for source, share in by.items())
                      for label, by in shares.items())
    sentences = [f"Where each class's training images came from: {where}."]
    if any(max(by.values(), default=0) >= CONFOUNDED_SHARE for by in shares.values()):
        sentences.append("Classes came mostly from different collections, so the model may have learned to "
                         "recognise where a picture came from (hospital, scanner, the look of a journal figure) "
                         "instead of the disease. Treat the overall test results as optimistic.")
    if probe and probe.get("all"):
        p = probe["all"]
        sentences.append(f"From the model's internal features, a simple classifier tells which collection an image "
                         f"came from in {100 * p['accuracy']:.0f}% of cases (always guessing the largest collection: "
                         f"{100 * p['chance_accuracy']:.0f}%).")
    for w in within:
        n = sum(w["n"].values())
        ci = w["ci95"]
        sentences.append(f"Inside {w['source']} alone, where the source gives nothing away, {w['pair']}: AUC "
                         f"{w['auc']:.2f} (95% CI {ci[0]:.2f}-{ci[1]:.2f}; {n} test images; 0.5 is chance, 1.0 "
                         "perfect).")
    return sentences


def _json_default(value):
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    raise TypeError(type(value))


def _nan_to_none(value):
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    return value


def model_card(ckpt: dict, checkpoint: Path, data: Path, files: dict, checks, int8_report: dict) -> dict:
    summary = ckpt["data_summary"]
    demo = summary["sources"] == ["phantom"]
    digest = hashlib.sha256("".join(files[n]["sha256"] for n in sorted(files)).encode()).hexdigest()
    default = INT8 if INT8 in files else FP32
    cam_side = ckpt["preprocess"]["size"] // 32  # all supported backbones have output stride 32
    card = {
        "format": MODEL_JSON_FORMAT,
        "name": "cxr-triage",
        "version": f"{_project_version()}+{digest[:12]}",
        "created": _created(),
        "demo": demo,
        "classes": list(CLASSES),
        "arch": ckpt["arch"],
        "weights_origin": ckpt["weights_origin"],
        "input": {"name": INPUT_NAME, "dtype": "float32", "shape": ["batch", 1, "height", "width"],
                  "range": [0, 255], "gray_weights": list(GRAY_WEIGHTS)},
        "outputs": {"probabilities": ["batch", len(CLASSES)], "logits": ["batch", len(CLASSES)],
                    "cam": ["batch", len(CLASSES), cam_side, cam_side], "ood_score": ["batch"]},
        "output_names": list(OUTPUT_NAMES),
        "preprocess": ckpt["preprocess"],
        "temperature": ckpt["calibration"]["temperature"],
        "calibration": ckpt["calibration"],
        "ood_threshold": float(ckpt["ood"]["threshold"]),
        "ood_percentile": ckpt["ood"]["percentile"],
        "files": files,
        "default_model": default,
        "int8": int8_report,
        "training_data": summary,
        "verification": verify.as_dicts(checks),
        "source": {"checkpoint": str(checkpoint.resolve()), "checkpoint_sha256": sha256_file(checkpoint),
                   "data": str(Path(data).resolve())},
        "intended_use": ("Research and education: a demonstration of in-browser chest X-ray triage. Not a medical "
                         "device; not for diagnosis, treatment or any clinical decision."),
        "limitations": limitations(summary, demo),
    }
    return _nan_to_none(card)


def limitations(summary: dict, demo: bool) -> list[str]:
    if demo:
        return ["DEMO MODEL: trained on synthetic phantoms, not on real radiographs. Its outputs on real X-rays "
                "mean nothing."]
    items = [f"Trained on {summary['images']} images from {summary['patients']} patients "
             f"({', '.join(summary['sources'])}); performance elsewhere is unknown.",
             "Metrics come from a held-out split of the same sources, by patient; external validation has not been "
             "done.",
             "Only frontal chest radiographs of adults are in scope; other images should be flagged as "
             "out-of-distribution, but the flag can miss.",
             "The heatmap shows what drove the score, not where disease is."]
    return items
