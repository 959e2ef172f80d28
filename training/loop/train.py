"""`cxr train`: fine-tune a classifier on a `prepare` output, resumably, then calibrate and fit OOD.

Defaults (see docs/training.md for the reasoning):
- Adam, lr 3e-4, weight decay 1e-4, batch 32; linear warm-up over the first epoch, then cosine decay to 0 at the
  last epoch; early stopping when validation macro ROC AUC has not improved for 6 epochs.
- Class imbalance: class-weighted cross-entropy (inverse frequency). Every image is seen exactly once per epoch;
  a balanced sampler would instead repeat the few images of a rare class many times, which overfits small data.
- Augmentation: training/data/augment.py (no horizontal flip by default; harmonisation on by default).
- Shortcut remedies (docs/shortcuts.md): --holdout leaves source groups out (leave-one-source-out), --select
  within_source selects on discrimination inside sources, --adversary adds a class-conditional source adversary.
Outputs in --out: last.pt (every epoch, resumable), best.pt (best validation AUC, with calibration and OOD
statistics: the input of export), log.csv and TensorBoard events (tb/), summary.json.
Under torchrun (several processes, GPUs or machines) the same command trains with DistributedDataParallel;
--batch-size stays the global batch, and the result equals the single-process run (docs/distributed.md).

The shape follows torchvision's classification reference: `train` sets up a `TrainingRun` (model, optimiser, schedule,
run state) or restores it from last.pt, then alternates `train_one_epoch` and `validate`; `finalize` (calibration,
OOD statistics) runs once on best.pt.
"""

from __future__ import annotations

import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from core.classes import CLASSES
from core.jsonio import write_json
from core.metrics import macro_auc, mean_within_source_auc
from core.progress import bar

from ..data import augment
from ..data.dataset import class_weights, data_summary, load_prepared, load_split, sample_weights
from ..graph.preprocess import GeometryConfig, PreprocessConfig
from ..model.calibration import nll
from ..model.checkpoint import Checkpoint, load_checkpoint, rng_state, set_rng_state
from ..model.classifier import arch_spec, build_model
from ..model.inference import logits_and_features
from . import distributed
from .adversary import SourceAdversary, ramp
from .config import RUNTIME_FIELDS, SELECTIONS, TrainConfig
from .faults import crash_for_tests
from .finalize import finalize
from .logger import Logger
from .mixstyle import attach as attach_mixstyle


@dataclass
class RunState:
    """Where a run stands; saved in every checkpoint (`resume.train_state`) and restored by --resume."""

    epoch: int = 0  # epochs completed
    step: int = 0  # optimiser steps taken
    best_score: float = -math.inf  # best validation score so far (TrainConfig.select says which)
    best_epoch: int = -1
    bad_epochs: int = 0  # epochs since the best one
    stopped: str = ""  # why the run ended early, if it did
    seconds: float = 0.0  # training time, validation excluded
    images: int = 0  # training images seen


def epoch_plan(seed: int, epoch: int, n: int, config: augment.AugmentConfig):
    """The order of samples and their augmentation parameters for one epoch, a function of (seed, epoch) only."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(n, generator=generator)
    return order, augment.draw_params(config, n, generator)


def lr_lambda(step: int, steps_per_epoch: int, cfg: TrainConfig) -> float:
    warmup = max(1, int(cfg.warmup_epochs * steps_per_epoch))
    total = max(warmup + 1, cfg.epochs * steps_per_epoch)
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))


def weighted_loss(logits, labels, weights, normaliser):
    """Cross-entropy weighted per image (`weights` [B]: class and, optionally, source balance), summed over the
    batch and divided by `normaliser`, the batch's total weight (passed in so that distributed ranks can divide by
    the global batch's weight)."""
    return (F.cross_entropy(logits, labels, reduction="none") * weights).sum() / normaliser


def _verification_dtype() -> torch.dtype:
    """CXR_FLOAT64=1 trains in float64: a verification mode for tests. In float32, runs that differ only in the
    order of floating-point sums (2 processes instead of 1, or 2 threads instead of 1) drift apart within a few
    Adam steps, because Adam turns any near-zero gradient into a step of about lr whose sign is decided by rounding;
    in float64 they agree to ~1e-12, so the distributed mechanics can be checked exactly (docs/distributed.md)."""
    return torch.float64 if os.environ.get("CXR_FLOAT64") == "1" else torch.float32


class TrainingRun:
    """One training run's moving parts: the model (and its DDP wrapper), optimiser, schedule, gradient scaler,
    training data on the device, and the run state. `checkpoint()` is everything needed to resume it."""

    def __init__(self, cfg: TrainConfig, ctx: distributed.Context, resumed: Checkpoint | None):
        self.cfg, self.ctx = cfg, ctx
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        distributed.check_batch_size(cfg.batch_size, ctx.world_size)
        self.autocast_dtype = distributed.amp_dtype(cfg.amp, ctx.device)
        self.device, self.dtype = ctx.device, _verification_dtype()
        if self.device.type == "cuda":  # deterministic convolutions: a resumed run ends with the uninterrupted weights
            torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = False, True
        torch.manual_seed(cfg.seed)  # before the model is built: random initialisation draws from it
        np.random.seed(cfg.seed)
        random.seed(cfg.seed)

        if cfg.select not in SELECTIONS:
            raise ValueError(f"--select {cfg.select!r}: choose one of {', '.join(SELECTIONS)}")
        self.train_split = load_split(cfg.data, "train", cfg.holdout)
        self.val_split = load_split(cfg.data, "val", cfg.holdout)
        if len(self.train_split) == 0:
            raise ValueError(f"{cfg.data}: the train split is empty")
        spec = arch_spec(cfg.arch)
        self.preprocess = PreprocessConfig(GeometryConfig.of(load_prepared(cfg.data)[0]), spec.mean, spec.std)
        self.normalize = self.preprocess.normalize().to(self.device, self.dtype)
        model, self.origin = build_model(cfg.arch, "none" if resumed else cfg.weights)
        if ctx.distributed:  # batch statistics over the global batch, as one process computes them
            model = distributed.convert_sync_batchnorm(model, self.device)
        self.model = model.to(self.device, self.dtype, memory_format=torch.channels_last)
        if cfg.mixstyle > 0:  # training-time hooks only: the checkpoint's weights and the export are unchanged
            attach_mixstyle(self.model.features, cfg.mixstyle)
        self.adversary = None
        if cfg.adversary > 0:
            if ctx.distributed:
                raise ValueError("--adversary is not supported under torchrun yet: train in one process")
            self.adversary = SourceAdversary(self.model.fc.in_features, self.train_split.labels,
                                             [r["source"] for r in self.train_split.rows], len(CLASSES))
            self.adversary.to(self.device, self.dtype)
            if not self.adversary.active:
                raise ValueError("--adversary: no class has images from several sources in the train split")
        params = [*self.model.parameters(), *(self.adversary.parameters() if self.adversary else [])]
        self.optimizer = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.steps_per_epoch = math.ceil(len(self.train_split) / cfg.batch_size)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_lambda(s, self.steps_per_epoch, cfg))
        self.scaler = torch.amp.GradScaler("cuda") if cfg.amp == "fp16" else None
        self.state = RunState()
        if resumed is not None:
            self._restore(resumed)
        self.net = distributed.wrap(self.model, ctx)  # DistributedDataParallel under torchrun, else the model

        self.aug_config = augment.AugmentConfig(hflip=cfg.hflip, harmonize=cfg.harmonize, style=cfg.style)
        self.weights = sample_weights(self.train_split.labels, [r["source"] for r in self.train_split.rows],
                                      cfg.balance_sources)
        self.weights_on_device = self.weights.to(self.device, self.dtype)
        self.train_batches = distributed.DeviceBatches(self.train_split.images, self.device)
        self.data_summary = data_summary(cfg.data, cfg.holdout)

    def _restore(self, resumed: Checkpoint) -> None:
        r = resumed.resume
        self.model.load_state_dict(resumed.model)
        if self.adversary is not None:
            self.adversary.load_state_dict(r["adversary"])
        self.optimizer.load_state_dict(r["optimizer"])
        self.scheduler.load_state_dict(r["scheduler"])
        if self.scaler is not None and r.get("scaler"):
            self.scaler.load_state_dict(r["scaler"])
        state = dict(r["train_state"])
        if "best_auc" in state:  # checkpoints written before the field was named for what it holds
            state["best_score"] = state.pop("best_auc")
        self.state = RunState(**state)
        self.origin = resumed.weights_origin
        set_rng_state(r["rng"])
        if self.ctx.is_main:
            print(f"resuming {resumed.path} at epoch {self.state.epoch}, step {self.state.step}", file=sys.stderr)

    def checkpoint(self) -> Checkpoint:
        resume = {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                  "train_state": asdict(self.state), "rng": rng_state(),
                  **({"scaler": self.scaler.state_dict()} if self.scaler is not None else {}),
                  **({"adversary": self.adversary.state_dict()} if self.adversary is not None else {})}
        return Checkpoint(arch=self.cfg.arch, classes=CLASSES, weights_origin=self.origin,
                          preprocess=self.preprocess, model=self.model.state_dict(), config=asdict(self.cfg),
                          data_summary=self.data_summary,
                          class_weights=class_weights(self.train_split.labels).tolist(), resume=resume)


def train_one_epoch(run: TrainingRun, epoch: int, last_path: Path, progress: bool) -> tuple[list[float], int, float]:
    """One epoch (from where a resumed run stopped inside it): (batch losses, images seen, seconds)."""
    cfg, ctx, state = run.cfg, run.ctx, run.state
    order, params = epoch_plan(cfg.seed, epoch, len(run.train_split), run.aug_config)
    first_batch = state.step - epoch * run.steps_per_epoch
    run.model.train()
    if run.adversary is not None:
        run.adversary.train()
    total_steps = cfg.epochs * run.steps_per_epoch
    losses, seen, started = [], 0, time.perf_counter()
    steps_bar = bar(range(first_batch, run.steps_per_epoch), desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False,
                    unit="step", enabled=progress)
    for b in steps_bar:
        idx = order[b * cfg.batch_size : (b + 1) * cfg.batch_size]  # the global batch
        local = distributed.shard(idx, ctx)  # this rank's slice of it (all of it in one process)
        images = run.train_batches(local)
        x = augment.apply(images, params[local].to(run.device), run.aug_config) if cfg.augment else images.float()
        x = run.normalize(x.to(run.dtype)).contiguous(memory_format=torch.channels_last)
        labels = run.train_split.labels[local].to(run.device, non_blocking=True)
        # Divide by the global batch's weight on every rank; DDP averages gradients over ranks, so the world_size
        # factor makes the gradient equal to the single-process one.
        normaliser = run.weights[idx].sum().to(run.device, run.dtype)
        with torch.autocast(run.device.type, dtype=run.autocast_dtype, enabled=run.autocast_dtype is not None):
            if run.adversary is None:
                logits = run.net(x)
            else:  # one process (checked): the pooled features feed both the classifier and the adversary
                _, pooled = run.model.forward_features(x)
                logits = run.model.fc(pooled)
        loss = weighted_loss(logits.to(run.dtype), labels, run.weights_on_device[local.to(run.device)], normaliser)
        if run.adversary is not None:
            loss = loss + run.adversary.loss(pooled.to(run.dtype), labels, local,
                                             ramp(state.step / total_steps, cfg.adversary))
        if ctx.distributed:
            loss = loss * ctx.world_size
        run.optimizer.zero_grad(set_to_none=True)
        if run.scaler is not None:
            run.scaler.scale(loss).backward()
            run.scaler.step(run.optimizer)
            run.scaler.update()
        else:
            loss.backward()
            run.optimizer.step()
        run.scheduler.step()
        state.step += 1
        if ctx.distributed:  # the single-process batch loss: the sum of the ranks' shares
            losses.append(distributed.all_reduce_sum(loss.detach() / ctx.world_size, ctx).item())
        else:
            losses.append(loss.item())
        seen += len(idx)
        steps_bar.set_postfix(loss=f"{losses[-1]:.3f}", img_s=f"{seen / (time.perf_counter() - started):.1f}",
                              refresh=False)
        crash_for_tests(state.step, ctx.rank)
        inside_epoch = b + 1 < run.steps_per_epoch  # the epoch's end writes last.pt anyway
        if ctx.is_main and cfg.checkpoint_every and state.step % cfg.checkpoint_every == 0 and inside_epoch:
            run.checkpoint().save(last_path)
        if cfg.max_steps and state.step >= cfg.max_steps:
            state.stopped = f"max_steps {cfg.max_steps} reached"
            break
    return losses, seen, time.perf_counter() - started


def validate(run: TrainingRun) -> dict:
    """Validation loss, pooled macro AUC, mean within-source AUC and accuracy. Each rank predicts its share;
    all-gathered, every rank holds the same logits and so takes the same best-epoch and early-stopping decisions."""
    split = run.val_split
    start, stop = distributed.shard_bounds(len(split), run.ctx)
    local_logits, _ = logits_and_features(run.model, run.normalize, split.images[start:stop], run.cfg.eval_batch_size,
                              device=run.device)
    logits = distributed.all_gather_rows(local_logits, run.ctx)
    if not len(split):
        return {"val_loss": float("nan"), "val_macro_auc": float("nan"), "val_within_source_auc": float("nan"),
                "val_accuracy": float("nan")}
    probs, y = torch.softmax(logits, 1).numpy(), split.labels.numpy()
    return {"val_loss": nll(logits, split.labels), "val_macro_auc": macro_auc(y, probs),
            "val_within_source_auc": mean_within_source_auc(y, probs, [r["source"] for r in split.rows]),
            "val_accuracy": float((probs.argmax(1) == y).mean())}


def selection_score(scores: dict, select: str) -> float:
    """The validation score that picks best.pt and drives early stopping. `within_source` falls back to the pooled
    AUC where no validation source holds two labels (phantoms, one-source data)."""
    if select == "within_source" and not math.isnan(scores["val_within_source_auc"]):
        return scores["val_within_source_auc"]
    return scores["val_macro_auc"]


def _select(run: TrainingRun, val_auc: float, best_path: Path) -> None:
    """Keep best.pt at the best validation score; count epochs without improvement for early stopping."""
    state = run.state
    improved = not math.isnan(val_auc) and val_auc > state.best_score
    if improved or state.best_epoch < 0:  # (not a file check: ranks on other machines see no best.pt)
        state.best_score = val_auc if improved else state.best_score
        state.best_epoch, state.bad_epochs = state.epoch, 0
        if run.ctx.is_main:
            run.checkpoint().save(best_path)
    else:
        state.bad_epochs += 1
        if state.bad_epochs >= run.cfg.patience:
            state.stopped = state.stopped or f"early stop: no better validation score for {run.cfg.patience} epochs"


def _resumed_config(cfg: TrainConfig, last_path: Path) -> tuple[TrainConfig, Checkpoint]:
    """The run's own settings from last.pt, not today's flags (except how it runs: device, threads, timeout)."""
    if not last_path.exists():
        raise FileNotFoundError(f"--resume: {last_path} does not exist (nothing to resume)")
    checkpoint = load_checkpoint(last_path)
    return TrainConfig(**{**checkpoint.config, **{k: getattr(cfg, k) for k in RUNTIME_FIELDS}}), checkpoint


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True) -> dict | None:
    """Train (resumably), then calibrate and fit OOD. Under torchrun every rank calls this; rank 0 writes all outputs
    and returns the summary, the other ranks return None once training ends."""
    ctx = distributed.setup(cfg.device, cfg.dist_timeout)
    try:
        return _train(cfg, ctx, resume, progress and ctx.is_main)
    finally:
        distributed.teardown(ctx)


def _train(cfg: TrainConfig, ctx: distributed.Context, resume: bool, progress: bool) -> dict | None:
    out = Path(cfg.out)
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
    last_path, best_path = out / "last.pt", out / "best.pt"
    resumed = None
    if resume:
        cfg, resumed = _resumed_config(cfg, last_path)
    run = TrainingRun(cfg, ctx, resumed)
    state = run.state
    logger = Logger(out, state.epoch) if ctx.is_main else None
    epochs_bar = bar(total=cfg.epochs, initial=state.epoch, desc="epochs", unit="ep", enabled=progress)
    while state.epoch < cfg.epochs and not state.stopped:
        epoch = state.epoch
        losses, seen, seconds = train_one_epoch(run, epoch, last_path, progress)
        state.seconds += seconds
        state.images += seen
        scores = validate(run)
        state.epoch = epoch + 1
        _select(run, selection_score(scores, cfg.select), best_path)
        if ctx.is_main:
            run.checkpoint().save(last_path)
            logger.log({"epoch": epoch + 1, "step": state.step, "lr": run.scheduler.get_last_lr()[0],
                        "train_loss": float(np.mean(losses)) if losses else float("nan"), **scores,
                        "images_per_s": seen / seconds if seconds else float("nan"), "seconds": seconds})
        epochs_bar.update(1)
        epochs_bar.set_postfix(val=f"{selection_score(scores, cfg.select):.3f}", best=f"{state.best_score:.3f}")
    epochs_bar.close()
    if not ctx.is_main:
        return None  # rank 0 alone calibrates, fits OOD and writes the summary; no collective follows
    logger.close()

    summary = finalize(best_path, run.train_split, run.val_split, cfg, progress, run.device)
    summary.update({"epochs": state.epoch, "steps": state.step, "best_epoch": state.best_epoch,
                    "selection": cfg.select, "best_val_score": state.best_score,
                    "stopped": state.stopped or "max epochs reached",
                    "train_seconds": state.seconds,
                    "images_per_s": state.images / state.seconds if state.seconds else None,
                    "weights_origin": run.origin, "arch": cfg.arch, "processes": ctx.world_size,
                    "device": str(run.device), "amp": cfg.amp})
    write_json(out / "summary.json", summary)
    return summary
