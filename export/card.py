"""model.json: what a model is, how it was verified, and what it is not (the app's model card reads it)."""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime
from pathlib import Path

from core.checksum import sha256_file
from core.classes import CLASSES
from core.decode import GRAY_WEIGHTS
from core.jsonio import plain
from core.metrics import within_source_aucs
from training.graph.lungs import LUNG_SIZE
from training.model.checkpoint import Checkpoint

from . import verify
from .wrapper import INPUT_NAME, OUTPUT_NAMES

FP32, INT8 = "model.onnx", "model.int8.onnx"
MODEL_JSON_FORMAT = 1


def _created() -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")  # reproducible builds
    moment = datetime.fromtimestamp(int(epoch), UTC) if epoch else datetime.now(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _project_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cxr-triage")
    except PackageNotFoundError:
        return "0.0.0"


CONFOUNDED_SHARE = 0.8  # a class with this share of its images from one source is confounded with it


def images_per_class_and_source(splits) -> dict[str, dict[str, int]]:
    """{label: {source: images}} summed over `splits` (data_summary `counts` values: {source: {label: n}})."""
    per_class: dict[str, dict[str, int]] = {}
    for split in splits:
        for source, by_class in split.items():
            for label, n in by_class.items():
                per_class.setdefault(label, {}).setdefault(source, 0)
                per_class[label][source] += n
    return per_class


def shortcut_report(summary: dict, source_probe: dict | None, labels, probabilities, patients, sources,
                    n_boot: int) -> dict:
    """How far the model could be recognising the source instead of the disease, in plain words and numbers: where
    each class's training images came from, the source probe (measured by `cxr evaluate`), and discrimination
    inside a single source (on this export's fp32 outputs)."""
    per_class = images_per_class_and_source(summary["counts"].values())
    shares = {label: {s: n / max(sum(c.values()), 1) for s, n in sorted(c.items(), key=lambda kv: -kv[1]) if n}
              for label, c in per_class.items()}
    report = {"class_sources": shares, "source_probe": None, "within_source": [], "summary": []}
    if len(summary["sources"]) < 2:
        report["summary"] = ["All training images come from one source, so whether the model learned the source "
                             "instead of the disease cannot be measured here."]
        return report
    report["source_probe"] = source_probe
    report["within_source"] = (within_source_aucs(labels, probabilities, patients, sources, n_boot)
                               if len(labels) else [])
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


def model_card(ckpt: Checkpoint, checkpoint: Path, data: Path, files: dict, checks, int8_report: dict,
               name: str = "cxr-triage", output_names=OUTPUT_NAMES) -> dict:
    summary = ckpt.data_summary
    demo = summary["sources"] == ["phantom"]
    digest = hashlib.sha256("".join(files[n]["sha256"] for n in sorted(files)).encode()).hexdigest()
    default = INT8 if INT8 in files else FP32
    cam_side = ckpt.preprocess.geometry.size // 32  # all supported backbones have output stride 32
    card = {
        "format": MODEL_JSON_FORMAT,
        "name": name,
        "version": f"{_project_version()}+{digest[:12]}",
        "created": _created(),
        "demo": demo,
        "classes": list(CLASSES),
        "arch": ckpt.arch,
        "weights_origin": ckpt.weights_origin,
        "input": {"name": INPUT_NAME, "dtype": "float32", "shape": ["batch", 1, "height", "width"],
                  "range": [0, 255], "gray_weights": list(GRAY_WEIGHTS)},
        "outputs": {key: shape for key, shape in {
            "probabilities": ["batch", len(CLASSES)], "logits": ["batch", len(CLASSES)],
            "cam": ["batch", len(CLASSES), cam_side, cam_side], "ood_score": ["batch"],
            "lung_mask": ["batch", 1, LUNG_SIZE, LUNG_SIZE], "crop_box": ["batch", 4], "lung_fallback": ["batch"],
            "lung_evidence": ["batch"], "gate": ["batch"], "gate_reason": ["batch"]}.items() if key in output_names},
        "output_names": list(output_names),
        "preprocess": ckpt.preprocess.as_dict(),
        "temperature": ckpt.temperature,
        "calibration": ckpt.calibration,
        "ood_threshold": ckpt.ood_threshold,
        "ood_percentile": ckpt.ood["percentile"],
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
        "terms": terms(summary, demo),
    }
    return plain(card)


def terms(summary: dict, demo: bool) -> str:
    """What the weights may be used for, from the licences of the images they were trained on."""
    if demo:
        return "Trained on synthetic phantoms generated by this project: no data licence applies."
    licenses = summary.get("licenses") or {}
    listed = ", ".join(f"{name} ({n})" for name, n in sorted(licenses.items(), key=lambda kv: -kv[1]))
    text = f"Licences of the training and validation images: {listed or 'not recorded'}."
    if any("NC" in name.replace("-", " ").split() for name in licenses):
        text += (" Some are non-commercial (NC): these weights are for non-commercial research and teaching only. "
                 "Images without a stated licence may carry further restrictions.")
    return text


def split_counts(summary: dict) -> dict[str, int]:
    """Images per split (train, val, test), summed over sources and classes."""
    return {split: sum(sum(by_class.values()) for by_class in summary["counts"].get(split, {}).values())
            for split in ("train", "val", "test")}


def training_sentence(summary: dict) -> str:
    """"N images used for training (M for validation, K for test) from P patients": `images` is the whole prepared
    set, of which only the training split trained the model (the app's model card says the same)."""
    n = split_counts(summary)
    return (f"{n['train']} images used for training ({n['val']} for validation, {n['test']} for test) from "
            f"{summary['patients']} patients")


def one_source_classes(summary: dict, share: float = 0.9) -> list[str]:
    """A sentence for each class whose training images come (almost) all from one source: there the model cannot
    separate the disease from the look of that collection (docs/shortcuts.md)."""
    totals = images_per_class_and_source([summary["counts"].get("train", {})])
    sentences = []
    for label in CLASSES:
        by_source = {k: v for k, v in totals.get(label, {}).items() if v}
        if by_source and max(by_source.values()) >= share * sum(by_source.values()):
            main = max(by_source, key=by_source.get)
            sentences.append(f"Every or nearly every {label} training image comes from one source ({main}, "
                             f"{max(by_source.values())} of {sum(by_source.values())}): for {label} the model may "
                             "have learned that collection's look as much as the disease.")
    return sentences


def limitations(summary: dict, demo: bool, external: dict | None = None) -> list[str]:
    """`external`: the model's scores on sources it never saw (export/external.py), when measured."""
    if demo:
        return ["DEMO MODEL: trained on synthetic phantoms, not on real radiographs. Its outputs on real X-rays "
                "mean nothing.", f"{training_sentence(summary)}, all synthetic."]
    unseen = sorted({g["source"] for g in (external or {}).get("groups", {}).values()})
    items = [f"{training_sentence(summary)} ({', '.join(summary['sources'])}); performance elsewhere is unknown.",
             ("Metrics come from a held-out split of the same sources, by patient, and from "
              f"{', '.join(unseen)} (never used in training; see 'Sources never seen in training'); no other external "
              "validation has been done." if unseen else
              "Metrics come from a held-out split of the same sources, by patient; external validation has not been "
              "done."),
             *one_source_classes(summary),
             "Only frontal chest radiographs of adults are in scope. The chest film check (in a model without it, "
             "the out-of-distribution flag) refuses other images but can miss; it was never tested on abdominal or "
             "limb radiographs.",
             "The heatmap shows what drove the score, not where disease is."]
    return items
