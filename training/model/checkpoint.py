"""The typed checkpoint: one file format for every stage, loaded with `torch.load(weights_only=True)`.

A checkpoint is a plain dict of tensors and plain Python values (numbers, strings, lists, dicts), so loading one
can never run code, whoever made the file. `load_checkpoint(path)` returns a `Checkpoint` that knows its
architecture, its input contract (`PreprocessConfig`), its temperature and OOD statistics, and builds the
classifier, the preprocessing modules and the OOD scorer from them: every stage reads checkpoints through it.

Layout (format 2):
  format, arch, classes, weights_origin, preprocess (PreprocessConfig.as_dict), config (the training settings),
  data_summary, class_weights, model (state dict), calibration and ood (written by training's finalisation;
  absent in last.pt), resume (optimizer, scheduler, scaler, run state, RNG states: what `--resume` needs).
Checkpoints of format 1 (before 2026-12) pickled numpy arrays and needed full unpickling: they are refused, and
`cxr upgrade-checkpoint` converts them while allowing only numpy's array types.
"""

from __future__ import annotations

import os
import pickle
import random
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..graph.preprocess import PreprocessConfig
from .classifier import Classifier, new_classifier
from .ood import MahalanobisScore

FORMAT = 2


class CheckpointError(ValueError):
    """A file that is not a usable checkpoint; the message names the file and says what to do."""


@dataclass
class Checkpoint:
    arch: str
    classes: tuple
    weights_origin: str
    preprocess: PreprocessConfig
    model: dict  # the classifier's state dict
    config: dict = field(default_factory=dict)  # training settings (TrainConfig as a dict)
    data_summary: dict = field(default_factory=dict)
    class_weights: list = field(default_factory=list)
    calibration: dict | None = None  # {"temperature", "fitted_on", ...}
    ood: dict | None = None  # MahalanobisScore.state() + threshold, percentile
    resume: dict | None = None  # optimizer, scheduler, scaler, run state, RNG: only what --resume needs
    path: Path | None = None

    # --- what it builds -------------------------------------------------------------------------------------

    def classifier(self) -> Classifier:
        """The classifier with these weights, in eval mode, on the CPU."""
        model = new_classifier(self.arch, len(self.classes))
        model.load_state_dict(self.model)
        return model.eval()

    def normalize(self):
        return self.preprocess.normalize()

    def preprocessing(self):
        """Decoded gray image -> network input, as the exported graph does it (training.graph.preprocess)."""
        return self.preprocess.module()

    def ood_scorer(self) -> MahalanobisScore:
        return MahalanobisScore.from_state(self.finished().ood)

    @property
    def temperature(self) -> float:
        return float(self.finished().calibration["temperature"])

    @property
    def ood_threshold(self) -> float:
        return float(self.finished().ood["threshold"])

    def finished(self) -> Checkpoint:
        """self, if training's finalisation (temperature and OOD statistics) has run; else CheckpointError."""
        missing = [k for k in ("calibration", "ood") if getattr(self, k) is None]
        if missing:
            raise CheckpointError(f"{self.path or 'checkpoint'} has no {' and no '.join(missing)} statistics: it is "
                                  "not a finished training run's best.pt (training writes them after the last epoch)")
        return self

    # --- the file ---------------------------------------------------------------------------------------------

    def to_dict(self) -> dict:
        out = {"format": FORMAT, "arch": self.arch, "classes": list(self.classes),
               "weights_origin": self.weights_origin, "preprocess": self.preprocess.as_dict(), "config": self.config,
               "data_summary": self.data_summary, "class_weights": list(self.class_weights), "model": self.model}
        for key in ("calibration", "ood", "resume"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out

    def save(self, path: Path) -> None:
        """Write atomically (a temporary file, then rename): a kill mid-write never leaves a torn checkpoint."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        torch.save(self.to_dict(), tmp)
        os.replace(tmp, path)

    @classmethod
    def from_dict(cls, value: dict, path: Path | None = None) -> Checkpoint:
        where = path or "checkpoint"
        if not isinstance(value, dict) or "model" not in value or "arch" not in value:
            raise CheckpointError(f"{where} is not a checkpoint written by `cxr train`")
        if value.get("format") != FORMAT:
            raise CheckpointError(f"{where} has checkpoint format {value.get('format', 1)}, this code reads format "
                                  f"{FORMAT}: convert it with `cxr upgrade-checkpoint {where}` or train again")
        return cls(arch=value["arch"], classes=tuple(value["classes"]), weights_origin=value["weights_origin"],
                   preprocess=PreprocessConfig.from_dict(value["preprocess"]), model=value["model"],
                   config=value.get("config", {}), data_summary=value.get("data_summary", {}),
                   class_weights=value.get("class_weights", []), calibration=value.get("calibration"),
                   ood=value.get("ood"), resume=value.get("resume"), path=Path(path) if path else None)


def load_checkpoint(path) -> Checkpoint:
    """The checkpoint in `path`, loaded without unpickling arbitrary objects. CheckpointError for anything else
    (FileNotFoundError when there is no such file)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    try:
        value = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(_refusal(path)) from None
    except Exception as e:  # not a torch file at all, or a torn one (the unpickler raises many kinds)
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(e).__name__}: {str(e)[:200]})") from None
    return Checkpoint.from_dict(value, path)


def rng_state() -> dict:
    """The torch, numpy and Python RNG states as tensors and plain values (loadable with weights_only=True)."""
    import numpy as np

    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"torch": torch.get_rng_state(), "python": random.getstate(),
            "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}}


def set_rng_state(state: dict) -> None:
    import numpy as np

    n = state["numpy"]
    torch.set_rng_state(state["torch"])
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    random.setstate(state["python"])


# Pickled globals a format-1 checkpoint of this project holds (numpy's RNG state and metric values): nothing that
# runs code when allowed one by one.
def _numpy_globals() -> list:
    import numpy as np

    core = getattr(np, "_core", None) or np.core
    return [core.multiarray._reconstruct, core.multiarray.scalar, np.ndarray, np.dtype,
            *(type(np.dtype(t)) for t in ("uint32", "int64", "float64", "float32", "bool"))]


def _refusal(path: Path) -> str:
    found = sorted(set(torch.serialization.get_unsafe_globals_in_checkpoint(str(path))))
    allowed = {f"{g.__module__}.{g.__qualname__}" for g in _numpy_globals()}
    text = (f"{path} holds pickled Python objects ({', '.join(found[:5])}{', ...' if len(found) > 5 else ''}); "
            "checkpoints are loaded with weights_only=True, so a file cannot run code, and this one is refused.")
    if found and all(name in allowed for name in found):
        text += (f" It looks like a checkpoint of an earlier version of this project (format 1): convert it with "
                 f"`cxr upgrade-checkpoint {path}`, which allows numpy arrays only, or train again.")
    return text


def upgrade_checkpoint(path: Path, out: Path | None = None) -> Path:
    """Convert a format-1 checkpoint (numpy RNG state pickled) to format 2, allowing only numpy's array types while
    loading. Writes `out` (default: the same file); returns it."""
    import numpy as np

    path = Path(path)
    with torch.serialization.safe_globals(_numpy_globals()):
        try:
            old = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            raise CheckpointError(f"{path}: not a format-1 checkpoint of this project; it holds other pickled "
                                  f"objects and is not loaded ({str(e).splitlines()[0]})") from None
    if old.get("format") == FORMAT:
        raise CheckpointError(f"{path} is already in format {FORMAT}")

    def plain(value):
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(plain(v) for v in value)
        if isinstance(value, np.ndarray):
            return torch.from_numpy(value.copy())
        if isinstance(value, np.generic):
            return value.item()
        return value

    old = plain(old)
    resume = None
    if "optimizer" in old:
        name, keys, pos, has_gauss, cached = old["rng"]["numpy"]
        rng = {"torch": old["rng"]["torch"], "python": old["rng"]["python"],
               "numpy": {"name": name, "keys": keys.to(torch.int64), "pos": int(pos), "has_gauss": int(has_gauss),
                         "cached_gaussian": float(cached)}}
        resume = {"optimizer": old["optimizer"], "scheduler": old["scheduler"], "train_state": old["train_state"],
                  "rng": rng, **({"scaler": old["scaler"]} if "scaler" in old else {})}
    pre = old["preprocess"]
    checkpoint = Checkpoint(arch=old["arch"], classes=tuple(old["classes"]), weights_origin=old["weights_origin"],
                            preprocess=PreprocessConfig.from_dict(pre), model=old["model"],
                            config=old.get("config", {}), data_summary=old.get("data_summary", {}),
                            class_weights=old.get("class_weights", []), calibration=old.get("calibration"),
                            ood=old.get("ood"), resume=resume)
    out = Path(out or path)
    checkpoint.save(out)
    return out
