"""`cxr predict IMAGE... --model FILE`: classify files with onnxruntime alone (no torch).

Prints one JSON line per image: probabilities, predicted class, the gate, the OOD flag and timings;
`--heatmap-dir` also writes an overlay PNG of the model's top class's heatmap. An image the chest gate refuses (not
a frontal chest radiograph, or one inverted, upside down or rotated) gets `"class": null` and `"class_withheld"`
saying why: the probabilities are still there, but no diagnosis is given for it. A film unlike the training films
(the OOD distance) keeps its diagnosis, marked uncertain, with `"unlike_training": true` (runtime/gate.py; a model
without a gate withholds on the distance instead). A file that cannot be read gives one JSON line with its error, and
the run goes on; the exit status is 1 if any file failed.

`Predictor` is the one predictor: this command and the REST API use it, on the same ONNX file and outputs.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from core.decode import MAX_PIXELS, DecodeError, decode
from core.heatmap import colorize, heat_values, hottest_point

from .bands import band
from .gate import UNLIKE_TRAINING, decide
from .session import open_session
from .site_profile import apply_profile, load_profile_for_model, profile_summary


class Predictor:
    """An exported model (model.onnx or model.int8.onnx beside its model.json) in onnxruntime."""

    def __init__(self, model: Path, threads: int = 0, site_profile: dict | None = None):
        """`site_profile`: a profile loaded and checked by runtime.site_profile.load_profile for this model file;
        every result is then calibrated for that site, and says so."""
        model = Path(model)
        card_path = model.parent / "model.json"
        if not card_path.exists():
            raise FileNotFoundError(f"{card_path} not found: the model file must sit beside its model.json")
        self.card = json.loads(card_path.read_text())
        self.session = open_session(model, threads)
        self.input_name = self.card["input"]["name"]
        self.output_names = list(self.card["output_names"])  # model.json is the one source of the graph's names
        self.site_profile = site_profile
        self.uncertainty = site_profile["band"] if site_profile else self.card.get("uncertainty")

    def predict(self, gray: np.ndarray) -> dict:
        started = time.perf_counter()
        out = dict(zip(self.output_names, self.session.run(self.output_names,
                                                           {self.input_name: gray[None, None].astype(np.float32)})))
        probabilities = out["probabilities"][0]
        if self.site_profile:  # the site's calibration of the raw logits (runtime/site_calibration.py)
            probabilities = apply_profile(out["logits"][0], self.site_profile, self.card)
        k = int(probabilities.argmax())
        cam = out["cam"][0]
        ood = bool(out["ood_score"][0] > self.card["ood_threshold"])
        gate = float(out["gate"][0]) if "gate" in out else None
        decision = decide(self.card, gate, out["gate_reason"][0] if "gate" in out else None, ood)
        withheld = decision["withheld"]
        return {
            "probabilities": {c: float(p) for c, p in zip(self.card["classes"], probabilities)},
            "logits": [float(v) for v in out["logits"][0]],
            "class": None if withheld else self.card["classes"][k],  # no diagnosis for what is not a chest film
            **({"class_withheld": withheld} if withheld else {}),
            "top_class": self.card["classes"][k],  # the model's raw argmax, whatever the image is
            "band": band(probabilities, bool(withheld), self.uncertainty, decision["unlike_training"]),
            **({"gate": gate, "gate_reason": decision["gate_reason"]} if gate is not None else {}),
            "unlike_training": decision["unlike_training"],
            **({"unlike_training_note": UNLIKE_TRAINING} if decision["unlike_training"] else {}),
            "ood_score": float(out["ood_score"][0]),
            "ood": ood,
            "hottest_cell": [int(v) for v in np.unravel_index(int(cam[k].argmax()), cam[k].shape)],
            **self._lungs(out),
            **({"site_profile": profile_summary(self.site_profile)} if self.site_profile else {}),
            "cam": cam,
            "inference_ms": (time.perf_counter() - started) * 1000,
        }

    def _lungs(self, out: dict) -> dict:
        """The lung outputs, where the model has them (docs/lungs.md): where the map lies on the image (crop_box,
        pixels), whether the lung mask was usable, and the share of the evidence inside the lungs."""
        if "lung_evidence" not in out:
            return {}
        threshold = self.card.get("lungs", {}).get("evidence_threshold", 0.0)
        fallback = bool(out["lung_fallback"][0] > 0.5)
        evidence = float(out["lung_evidence"][0])
        return {"crop_box": [float(v) for v in out["crop_box"][0]], "lung_fallback": fallback,
                "lung_evidence": evidence, "lung_evidence_low": bool(not fallback and evidence < threshold)}

    def predict_file(self, src, *, name=None, max_pixels=MAX_PIXELS) -> tuple[dict, np.ndarray, np.ndarray]:
        """Decode a file (path or bytes) and predict: (the result without the cams, the decoded gray image, every
        class's cam [K, h, w]). Raises DecodeError. `cxr predict` and the REST API both go through here."""
        started = time.perf_counter()
        gray = decode(src, name=name, max_pixels=max_pixels)
        decoded = time.perf_counter()
        result = self.predict(gray)
        cams = result.pop("cam")
        result.update(height=gray.shape[0], width=gray.shape[1], decode_ms=(decoded - started) * 1000)
        return result, gray, cams


def heatmap(gray: np.ndarray, cams: np.ndarray, result: dict) -> tuple[np.ndarray, list[int]]:
    """The top class's heatmap over the image (RGB uint8), on the default scale (weighted by its probability on
    the image's common scale, as the app draws it) and at its place (`crop_box` for a lung-cropping model), and
    its hottest point [row, col] in image pixels."""
    probabilities = list(result["probabilities"].values())
    k = int(np.argmax(probabilities))
    box = result.get("crop_box")
    values = heat_values(cams, k, *gray.shape, probabilities, box)
    return colorize(gray, values), list(hottest_point(cams[k], *gray.shape, box))


def each_file(predictor: Predictor, files, *, progress: bool = False, desc: str = "predict"):
    """(file, result, None) for each file that decodes, (file, None, the decoder's reason) for one that does not, in
    order: the one loop that scores a list of files, where one unreadable file is reported and never stops the rest
    (site validation, the site-shift and unseen-source measurements)."""
    from core.progress import bar

    for file in bar(files, enabled=progress, desc=desc, unit="film"):
        try:
            result, _, _ = predictor.predict_file(file)
        except DecodeError as e:
            yield file, None, e.reason
            continue
        yield file, result, None


def predict_files(files: list[str], model: Path, heatmap_dir: Path | None = None, threads: int = 0,
                  site_profile: Path | None = None):
    """Yield one result dict per file, in order; errors are results too. `site_profile`: a profile file, checked
    against the model before anything is predicted (ValueError when refused) and applied to every result."""
    profile = load_profile_for_model(site_profile, model) if site_profile else None
    predictor = Predictor(model, threads, profile)
    if heatmap_dir:
        heatmap_dir.mkdir(parents=True, exist_ok=True)
    for file in files:
        started = time.perf_counter()
        try:
            result, gray, cams = predictor.predict_file(file)
        except DecodeError as e:
            yield {"file": file, "error": e.reason}
            continue
        result = {"file": file, **result}
        if heatmap_dir:
            from PIL import Image

            target = heatmap_dir / f"{Path(file).stem}.heatmap.png"
            image, result["hottest_point"] = heatmap(gray, cams, result)
            Image.fromarray(image).save(target)
            result["heatmap"] = str(target)
        result["total_ms"] = (time.perf_counter() - started) * 1000
        yield result
