"""`cxr train`: train a classifier on a prepared folder (resumable), calibrate, fit OOD."""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

from training.loop import distributed
from training.loop.config import SELECTIONS, TrainConfig
from training.loop.train import train
from training.model.classifier import ARCHS, WeightsUnavailable

# Options with their own flag spelling or help; every other field becomes --field-name with its default.
_SPECIAL = ("data", "out", "arch", "weights", "augment", "hflip", "harmonize", "style", "balance_sources", "device",
            "amp",
            "dist_timeout", "holdout", "select")
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


def run(args) -> int:
    """`cxr train`."""
    rank, world_size, _ = distributed.launched_ranks()
    where = f"rank {rank} of {world_size}: " if world_size > 1 else ""
    try:
        summary = train(config_from_args(args), resume=args.resume)
    except (FileNotFoundError, ValueError, KeyError, WeightsUnavailable) as e:
        raise SystemExit(f"train: {where}{e}") from None
    except RuntimeError as e:
        if world_size <= 1 or not distributed.is_collective_failure(e):
            raise
        first_line = next((line for line in str(e).splitlines() if line.strip()), type(e).__name__)
        raise SystemExit(
            f"train: {where}lost the other processes ({type(e).__name__}: {first_line.strip()})\n"
            f"train: another rank died or stopped answering; a collective waits at most --dist-timeout "
            f"{args.dist_timeout:g} s. Fix the cause, then rerun the same torchrun command with --resume: it "
            f"continues from {Path(args.out) / 'last.pt'}.") from None
    if summary is None:  # not rank 0: rank 0 reports
        return 0
    cal = summary["calibration"]
    print(f"{summary['arch']} ({summary['weights_origin']}): {summary['epochs']} epochs, best validation score "
          f"({summary['selection']}) {summary['best_val_score']:.3f} at epoch {summary['best_epoch']} "
          f"({summary['stopped']}); "
          f"{summary['images_per_s'] or 0:.1f} images/s")
    if "nll_before" in cal:
        print(f"temperature {cal['temperature']:.3f}: "
              f"validation NLL {cal['nll_before']:.3f} -> {cal['nll_after']:.3f}, "
              f"ECE {cal['ece_before']:.3f} -> {cal['ece_after']:.3f}")
    print(f"wrote {Path(args.out) / 'best.pt'} (use it with `cxr evaluate` and `cxr export`)")
    return 0
