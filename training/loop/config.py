"""Training settings (`TrainConfig`) and their command-line options."""

from __future__ import annotations

from dataclasses import dataclass

from ..model import ood


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


SELECTIONS = ("pooled", "within_source")

# Settings of how a run executes, not of what it computes: --resume takes these from today's flags.
RUNTIME_FIELDS = ("out", "threads", "device", "dist_timeout")

