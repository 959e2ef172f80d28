"""Turn a checkpoint into verified model files: model.onnx, model.int8.onnx (when it passes) and model.json.

Everything is written to OUT/.staging first. Only when the fp32 checks pass are the files moved into OUT and
model.json written; otherwise they go to OUT/rejected/ with the verification table, and ExportRejected is raised.
An int8 model that fails its fidelity checks is never shipped: the fp32 model is, and model.json says why.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.checksum import sha256_file
from core.classes import CLASSES
from core.decode import DecodeError, decode
from core.jsonio import dumps, plain
from core.metrics import evaluate_predictions
from runtime import site_shift
from training.data import not_xrays
from training.data.dataset import load_prepared
from training.graph.gate import MESSAGES as GATE_MESSAGES
from training.graph.gate import load_gate

from . import verify
from .card import FP32, INT8, model_card, shortcut_report
from .onnx_export import RECIPES, export_fp32, quantize_int8
from .uncertainty import uncertainty_card
from .wrapper import from_checkpoint


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


@dataclass
class LabelledSplit:
    """A split decoded from the original files, as a user's files would be: the test split is what every model file
    is measured on; the validation split is where the uncertainty rule is chosen."""

    images: list
    labels: np.ndarray
    patients: list
    sources: list

    @classmethod
    def of(cls, prepared: Path, split: str = "test") -> LabelledSplit:
        images, rows = decoded_split(prepared, split)
        return cls(images, np.array([CLASSES.index(r["label"]) for r in rows], int), [r["patient_id"] for r in rows],
                   [r["source"] for r in rows])


def ood_rates(sess, sets: dict, threshold: float, test_scores: np.ndarray) -> dict:
    rates = {}
    for name, images in sets.items():
        scores = [float(verify.outputs(sess, image[None, None])["ood_score"][0]) for image in images.values()]
        flagged = [n for n, s in zip(images, scores) if s > threshold]
        rates[name] = {"n": len(scores), "flagged": len(flagged), "rate": len(flagged) / max(len(scores), 1),
                       "not_flagged": sorted(set(images) - set(flagged))}
    kept = int((test_scores <= threshold).sum())
    rates["test_xrays"] = {"n": len(test_scores), "not_flagged": kept,
                           "rate_not_flagged": kept / max(len(test_scores), 1)}
    return rates


def try_int8(staging: Path, data: Path, test: LabelledSplit, fp32_out: dict, threshold: float, outliers: list,
             fp32_outliers: dict, calibration_images: int) -> tuple[dict, list, dict | None]:
    """Quantise with each recipe in turn until one passes the fidelity checks: (report, its checks, its test-split
    outputs); ([], None) and no int8 file when none passes."""
    report = {"shipped": False, "attempts": []}
    calibration, _ = decoded_split(data, "train", limit=calibration_images)
    extra = not_xrays.calibration_outliers()
    for recipe in RECIPES:
        _log(f"export: int8 ({recipe.name}), calibrated on {len(calibration)} training images and "
             f"{len(extra)} generated non-X-ray images ...")
        try:
            quantize_int8(staging / FP32, staging / INT8, calibration + extra, recipe)
            sess = verify.session(staging / INT8)
            int8_out = verify.predict_all(sess, test.images)
            checks = verify.compare_int8(fp32_out, int8_out, test.labels, threshold, fp32_outliers,
                                         verify.predict_all(sess, outliers))
        except Exception as e:  # a recipe the quantiser cannot apply to this graph is a failed attempt
            _log(f"export: int8 ({recipe.name}) failed: {type(e).__name__}: {e}")
            checks = [verify.Check(f"int8 quantisation ran ({type(e).__name__})", 0, 1, False)]
        report["attempts"].append({"recipe": recipe.name, "checks": verify.as_dicts(checks)})
        if all(c.passed for c in checks):
            report.update(shipped=True, recipe=recipe.name, note=f"static QDQ int8 ({recipe.name}) passed the "
                          "fidelity checks against fp32 on the test split")
            return report, checks, int8_out
    (staging / INT8).unlink(missing_ok=True)
    report["note"] = "no int8 recipe met the fidelity bar on the test split, so only the fp32 model is shipped"
    _log(f"export: {report['note']}")
    return report, [], None


EVIDENCE_PERCENTILE = 5.0  # the warning: less evidence in the lungs than 95% of the validation X-rays


def lung_report(wrapper, lungs_file, val_out: dict, test_out: dict) -> dict:
    """What the lung outputs mean for this model: the segmenter, the rules of its fallback, the warning threshold
    of the evidence share (a percentile of the validation X-rays' shares) and how the test split fared."""
    usable = val_out["lung_fallback"] == 0 if "lung_fallback" in val_out else np.zeros(0, bool)
    shares = val_out["lung_evidence"][usable] if len(usable) else np.zeros(0)
    threshold = float(np.percentile(shares, EVIDENCE_PERCENTILE)) if len(shares) else 0.5
    rules = wrapper.lungs.rules.as_dict()
    segmenter = Path(lungs_file) if lungs_file else Path(wrapper.preprocess.geometry.config.lung_crop)
    evidence, fallback = test_out["lung_evidence"], test_out["lung_fallback"]
    test = {"images": int(len(evidence))}
    if len(evidence):
        test.update(fallback_rate=float(fallback.mean()), evidence_median=float(np.median(evidence)),
                    below_threshold=float((evidence < threshold).mean()))
    return {"crop": wrapper.crops,
            "segmenter": {"file": segmenter.name, "path": str(segmenter.resolve()), "sha256": sha256_file(segmenter)},
            "rules": rules, "evidence_threshold": threshold,
            "evidence_threshold_from": f"{EVIDENCE_PERCENTILE:g}th percentile of {len(shares)} validation X-rays",
            "test": test}


def gate_report(gate_file: Path, sets: dict, sess, test_out: dict) -> dict:
    """What the gate outputs mean (threshold, reasons, what to tell a user) and what it did in this export: the
    share of the test split's X-rays refused and of each non-X-ray set refused, through the exported file; with
    the figures `cxr gate-train` measured (its metrics.json beside the gate file)."""
    _, value = load_gate(gate_file)
    threshold = value["threshold"]
    refused = {name: {"n": len(images), "refused": sum(
        float(verify.outputs(sess, image[None, None])["gate"][0]) < threshold for image in images.values())}
        for name, images in sets.items()}
    refused["test_xrays"] = {"n": int(len(test_out["gate"])), "refused": int((test_out["gate"] < threshold).sum())}
    measured = Path(gate_file).with_name("metrics.json")
    return {"threshold": threshold, "reasons": value["reasons"], "messages": dict(GATE_MESSAGES),
            "file": Path(gate_file).name, "sha256": sha256_file(Path(gate_file)),
            "segmenter_sha256": value["segmenter_sha256"], "refused_in_export": refused,
            "measured": gate_summary(json.loads(measured.read_text())) if measured.is_file() else None}


def gate_summary(metrics: dict) -> dict:
    """The headline figures of `cxr gate-train`'s metrics.json: refused (or withheld) share per kind, with CIs."""
    def brief(rows):
        return {row["kind"]: {"n": row["n"], "share": row["refused"]["value"], "ci95": row["refused"]["ci95"]}
                for row in rows}

    return {key: brief(metrics[key]) for key in ("cross_validated", "held_out_sources", "never_trained")
            if key in metrics}


def site_shift_report(staging: Path, files: dict, val_images: list, fp32_val_out: dict) -> dict:
    """model.json `site_shift`: the site-shift check's rule and, for each model file shipped, the validation split's
    OOD scores and predicted-class counts through that very file (runtime/site_shift.py; docs/site.md)."""
    references = []
    for file in files:
        out = fp32_val_out
        if file != FP32 and val_images:
            out = verify.predict_all(verify.session(staging / file), val_images)
        references.append(site_shift.reference(out["ood_score"], out["logits"], CLASSES, file))
    return site_shift.card_section(references)


def source_probe_of(evaluation: Path | None, checkpoint: Path) -> dict | None:
    """The source probe that `cxr evaluate` measured for this very checkpoint (its metrics.json), or None."""
    if evaluation is None or not Path(evaluation).is_file():
        return None
    metrics = json.loads(Path(evaluation).read_text())
    if metrics.get("checkpoint_sha256") != sha256_file(checkpoint):
        raise ValueError(f"{evaluation} evaluates another checkpoint than {checkpoint}: run `cxr evaluate` again")
    return metrics.get("source_probe")


def _reject(staging: Path, out: Path, checks: list) -> None:
    rejected = out / "rejected"
    shutil.rmtree(rejected, ignore_errors=True)
    (staging / "verification.md").write_text(verify.table(checks) + "\n")
    staging.rename(rejected)
    raise ExportRejected(f"verification failed; nothing was accepted. Files and table in {rejected}\n"
                         + verify.table(checks))


def _accept(staging: Path, out: Path, files: dict, card: dict, checks: list) -> None:
    """Move the verified files into `out`; model.json appears last: its presence means "accepted"."""
    (staging / "model.json").write_text(dumps(card) + "\n")
    (staging / "verification.md").write_text(verify.table(checks) + "\n")
    (out / "model.json").unlink(missing_ok=True)
    if INT8 not in files:
        (out / INT8).unlink(missing_ok=True)  # never leave an older int8 model beside a new fp32 one
    for name in [*files, "verification.md", "model.json"]:
        os.replace(staging / name, out / name)
    shutil.rmtree(staging)


def export(checkpoint: Path, out: Path, data: Path | None = None, int8: bool = True, calibration_images: int = 48,
           n_boot: int = 1000, evaluation: Path | None = None, name: str = "cxr-triage",
           lungs: Path | None = None, gate: Path | None = None) -> dict:
    """Export, verify and describe `checkpoint`. `evaluation`: the metrics.json of `cxr evaluate` for it (its source
    probe goes into the model card; default: CHECKPOINT_DIR/eval/metrics.json when present). `lungs`: a lung
    segmenter (`cxr lungs-train`) for the evidence-in-the-lungs outputs of a model that does not crop to the lungs
    (one that does carries its own). `gate`: a chest gate (`cxr gate-train`) trained on that segmenter."""
    checkpoint, out = Path(checkpoint), Path(out)
    evaluation = evaluation if evaluation is not None else checkpoint.parent / "eval" / "metrics.json"
    staging = out / ".staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    wrapper, ckpt = from_checkpoint(checkpoint, lungs, gate)
    data = Path(data or ckpt.config["data"])
    probe = source_probe_of(evaluation, checkpoint)
    started = time.perf_counter()

    _log(f"export: fp32 ONNX of {ckpt.arch} ...")
    export_fp32(wrapper, staging / FP32)
    checks = verify.check_fp32(staging / FP32, checkpoint, lungs_path=lungs, gate_path=gate)

    _log("export: test split through fp32 ...")
    test = LabelledSplit.of(data, "test")
    fp32_sess = verify.session(staging / FP32)
    outputs = {FP32: verify.predict_all(fp32_sess, test.images)}
    sets = not_xrays.ood_sets()
    outliers = [image for images in sets.values() for image in images.values()]
    fp32_outliers = verify.predict_all(fp32_sess, outliers)

    files = {FP32: {"precision": "fp32"}}
    int8_report = {"shipped": False, "attempts": [], "note": "int8 not requested (--no-int8)"}
    if int8 and len(test.images):
        int8_report, int8_checks, int8_out = try_int8(staging, data, test, outputs[FP32], ckpt.ood_threshold,
                                                      outliers, fp32_outliers, calibration_images)
        if int8_out is not None:
            checks += int8_checks
            files[INT8] = {"precision": "int8", "recipe": int8_report["recipe"]}
            outputs[INT8] = int8_out
    elif int8:
        int8_report["note"] = "int8 not built: the test split is empty, so its fidelity cannot be checked"
    if not all(c.passed for c in checks):
        _reject(staging, out, checks)

    _log("export: OOD rates and test-split metrics ...")
    for file, info in files.items():
        sess = fp32_sess if file == FP32 else verify.session(staging / file)
        info["ood_rates"] = ood_rates(sess, sets, ckpt.ood_threshold, outputs[file]["ood_score"])
        info["metrics_test"] = (evaluate_predictions(test.labels, outputs[file]["probabilities"], test.patients,
                                                     test.sources, n_boot) if len(test.images) else None)
        info["sha256"] = sha256_file(staging / file)
        info["size"] = (staging / file).stat().st_size

    _log("export: uncertainty rule on the validation split (fp32) ...")
    val = LabelledSplit.of(data, "val")
    val_out = verify.predict_all(fp32_sess, val.images) if val.images else {
        "probabilities": np.zeros((0, len(CLASSES)), np.float32), "logits": np.zeros((0, len(CLASSES)), np.float32),
        "ood_score": np.zeros(0, np.float32)}

    card = model_card(ckpt, checkpoint, data, files, checks, int8_report, name, wrapper.output_names)
    card["uncertainty"] = plain(uncertainty_card(
        {**val_out, "labels": val.labels, "patients": val.patients},
        {**outputs[FP32], "labels": test.labels, "patients": test.patients}, ckpt.ood_threshold, n_boot, FP32))
    if wrapper.lungs is not None:
        card["lungs"] = lung_report(wrapper, lungs, val_out, outputs[FP32])
    if wrapper.gate is not None:
        card["gate"] = gate_report(gate, sets, fp32_sess, outputs[FP32])
    card["site_shift"] = plain(site_shift_report(staging, files, val.images, val_out))
    card["shortcuts"] = shortcut_report(ckpt.data_summary, probe, test.labels, outputs[FP32]["probabilities"],
                                        test.patients, test.sources, n_boot)
    _accept(staging, out, files, card, checks)
    _log(f"export: done in {time.perf_counter() - started:.0f} s")
    return card
