"""Training settings (`TrainConfig`) and their command-line options."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields

from ..model import ood
from ..model.classifier import ARCHS
from . import distributed


@dataclass
class TrainConfig:
    data: str  # a `prepare` output folder
    out: str
    arch: str = "resnet50"
    weights: str = "auto"  # imagenet | none | auto | PATH
    epochs: int = 30
    batch_size: int = 32
    lr: float = 3e-4
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    patience: int = 6
    seed: int = 0
    augment: bool = True
    hflip: bool = False
    harmonize: bool = True  # resolution/compression/noise harmonisation (training/data/augment.py; docs/shortcuts.md)
    style: bool = False  # processing-style randomisation: edges, local contrast, burned-in text, field (augment.py)
    mixstyle: float = 0.0  # probability of mixing feature statistics between films (training/loop/mixstyle.py); 0: off
    balance_sources: bool = False  # equal weight to every source within a class (training/data/dataset.py)
    holdout: str = ""  # source groups left out of training and validation: "hannover", "ieee8023:COVID-19", ...
    select: str = "pooled"  # model selection and early stopping: pooled | within_source validation AUC
    adversary: float = 0.0  # weight of the class-conditional source adversary (training/loop/adversary.py); 0: off
    max_steps: int = 0  # stop after this many optimiser steps (smoke tests); 0: no limit
    checkpoint_every: int = 0  # also write last.pt every N steps inside an epoch; 0: at epoch ends only
    eval_batch_size: int = 64
    ood_dims: int = ood.DEFAULT_DIMS
    ood_percentile: float = ood.DEFAULT_PERCENTILE
    threads: int = 0  # torch CPU threads; 0: torch's default
    device: str = "auto"  # auto (CUDA if available) | cpu | cuda
    amp: str = "none"  # none | bf16 | fp16: autocast precision of the training forward pass (fp16: CUDA only)
    dist_timeout: float = 300.0  # seconds a collective waits for a peer before the job fails (torchrun only)


# Settings of how a run executes, not of what it computes: --resume takes these from today's flags.
RUNTIME_FIELDS = ("out", "threads", "device", "dist_timeout")

# Options with their own flag spelling or help; every other field becomes --field-name with its default.
_SPECIAL = ("data", "out", "arch", "weights", "augment", "hflip", "harmonize", "style", "balance_sources", "device", "amp",
            "dist_timeout", "holdout", "select")
SELECTIONS = ("pooled", "within_source")
_HELP = {
    "batch_size": "global batch (split over torchrun processes)",
    "lr": "Adam learning rate (peak, after warm-up)",
    "weight_decay": "Adam weight decay",
    "warmup_epochs": "linear warm-up, then cosine decay",
    "seed": "training seed (order, augmentation, initialisation)",
    "eval_batch_size": "batch for validation and feature passes",
    "epochs": "at most this many epochs (early stopping may end sooner)",
    "patience": "early stopping: epochs without a better validation score",
    "max_steps": "stop after this many optimiser steps (0: no limit)",
    "checkpoint_every": "also write last.pt every N steps inside an epoch (0: at epoch ends only)",
    "threads": "torch CPU threads (0: torch's default)",
    "ood_dims": "principal directions kept by the OOD score",
    "ood_percentile": "OOD threshold: this percentile of validation scores",
    "mixstyle": "MixStyle: probability, per batch, of mixing the early layers' feature statistics between films "
                "(domain generalisation across hospitals; training/loop/mixstyle.py; 0: off)",
    "adversary": "weight of the class-conditional source adversary through gradient reversal (0: off; "
                 "training/loop/adversary.py)",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = TrainConfig(data="", out="")
    parser.add_argument("--data", required=True, help="a `cxr prepare` output folder")
    parser.add_argument("--out", required=True, help="run folder (checkpoints, logs)")
    parser.add_argument("--arch", default=defaults.arch, choices=sorted(ARCHS), help="backbone")
    parser.add_argument("--weights", default=defaults.weights,
                        help="imagenet | none | auto (ImageNet if available, else none with a warning) | PATH")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from last.pt")
    parser.add_argument("--no-augment", dest="augment", action="store_false", help="no augmentation at all")
    parser.add_argument("--hflip", action="store_true", help="add horizontal flips (off: anatomy is not symmetric)")
    parser.add_argument("--balance-sources", action="store_true",
                        help="weight every data source equally within each class (training/data/dataset.py)")
    parser.add_argument("--no-harmonize", dest="harmonize", action="store_false",
                        help="leave out the down-up sampling, blur, noise and JPEG re-compression augmentation "
                             "(on by default: docs/shortcuts.md)")
    parser.add_argument("--style", action="store_true",
                        help="randomise the processing style: edge enhancement, local contrast, burned-in text and "
                             "markers, wider or tighter fields (training/data/augment.py; docs/shortcuts.md)")
    parser.add_argument("--holdout", default="", metavar="SOURCE[:LABEL],...",
                        help="leave these source groups (all their patients) out of training and validation, e.g. "
                             "hannover or ieee8023:COVID-19: the leave-one-source-out protocol (cxr loso)")
    parser.add_argument("--select", default=defaults.select, choices=SELECTIONS,
                        help="model selection and early stopping on the pooled validation macro AUC, or on the mean "
                             "AUC between labels within each source (which recognising the source cannot raise)")
    parser.add_argument("--device", default=defaults.device, choices=distributed.DEVICES,
                        help="auto: CUDA if available (each torchrun rank takes GPU LOCAL_RANK), else CPU")
    parser.add_argument("--amp", default=defaults.amp, choices=sorted(distributed.AMP),
                        help="mixed precision of the training forward pass: bf16 (CUDA or CPU) or fp16 (CUDA, "
                             "with a gradient scaler)")
    parser.add_argument("--dist-timeout", type=float, default=defaults.dist_timeout,
                        help="under torchrun: seconds a collective waits for a dead or hung peer before the job "
                             "fails with an error")
    for f in fields(TrainConfig):
        if f.name not in _SPECIAL:
            parser.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default,
                                help=_HELP[f.name])


def config_from_args(args) -> TrainConfig:
    return TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})
