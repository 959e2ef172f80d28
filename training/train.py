"""`python -m training train`: fine-tune a classifier on a `prepare` output, resumably, then calibrate and fit OOD.

Defaults (see docs/training.md for the reasoning):
- Adam, lr 3e-4, weight decay 1e-4, batch 32; linear warm-up over the first epoch, then cosine decay to 0 at the
  last epoch; early stopping when validation macro ROC AUC has not improved for 6 epochs.
- Class imbalance: class-weighted cross-entropy (inverse frequency). Every image is seen exactly once per epoch;
  a balanced sampler would instead repeat the few images of a rare class many times, which overfits small data.
- Augmentation: training/augment.py (no horizontal flip by default; harmonisation on by default).
Outputs in --out: last.pt (every epoch, resumable), best.pt (best validation AUC, with calibration and OOD
statistics: the input of export), log.csv and TensorBoard events (tb/), summary.json.
Under torchrun (several processes, GPUs or machines) the same command trains with DistributedDataParallel; --batch-size
stays the global batch, and the result equals the single-process run (docs/distributed.md).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import signal
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import augment, distributed, ood
from .progress import bar
from .calibration import expected_calibration_error, fit_temperature, nll
from .data import class_weights, data_summary, load_prepared, load_split, sample_weights
from .metrics import macro_auc
from .model import ARCHS, WeightsUnavailable, build_model
from .preprocess import PREPROCESS_VERSION, GeometryConfig, Normalize
from .records import CLASSES


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
    harmonize: bool = True  # resolution/compression/noise harmonisation (training/augment.py; docs/shortcuts.md)
    balance_sources: bool = False  # equal weight to every source within a class (training/data.py)
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


LOG_FIELDS = ["epoch", "step", "lr", "train_loss", "val_loss", "val_macro_auc", "val_accuracy", "images_per_s",
              "seconds"]


def save_atomic(obj, path: Path) -> None:
    """torch.save to a temporary file, then rename: a kill mid-write never leaves a torn checkpoint."""
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


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


@torch.no_grad()
def predict(model, normalize, images: torch.Tensor, batch_size: int = 64, progress: str | None = None,
            device: torch.device | str = "cpu"):
    """(logits [N,K], pooled features [N,C]) on the CPU for uint8 images [N,1,S,S], in eval mode on `device`."""
    model.eval()
    logits, pooled = [], []
    for i in bar(range(0, len(images), batch_size), desc=progress, enabled=progress is not None, leave=False):
        batch = images[i : i + batch_size].to(device, non_blocking=True)
        x = normalize(batch.float()).contiguous(memory_format=torch.channels_last)
        _, p = model.forward_features(x)
        pooled.append(p.float().cpu())
        logits.append(model.fc(p).float().cpu())
    if not logits:  # an empty split (or an empty shard of one)
        return torch.zeros(0, model.fc.out_features), torch.zeros(0, model.fc.in_features)
    return torch.cat(logits), torch.cat(pooled)


def weighted_loss(logits, labels, weights, normaliser):
    """Cross-entropy weighted per image (`weights` [B]: class and, optionally, source balance), summed over the
    batch and divided by `normaliser`, the batch's total weight (passed in so that distributed ranks can divide by
    the global batch's weight)."""
    return (F.cross_entropy(logits, labels, reduction="none") * weights).sum() / normaliser


def _crash_for_tests(step: int, rank: int = 0) -> None:
    """Fault injection: CXR_KILL_AT_STEP=N kills this process with SIGKILL right after optimiser step N, the way
    a crash or an out-of-memory kill would (no cleanup). The resume tests use it to kill at an exact point.
    CXR_HANG_AT_STEP=N instead leaves the process alive but stuck there forever (a hung peer: only --dist-timeout
    ends the job). CXR_KILL_RANK=R restricts either to rank R of a torchrun job (default: every rank)."""
    if os.environ.get("CXR_KILL_RANK", str(rank)) != str(rank):
        return
    if os.environ.get("CXR_KILL_AT_STEP") == str(step):
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get("CXR_HANG_AT_STEP") == str(step):
        while True:
            time.sleep(3600)


def _verification_dtype() -> torch.dtype:
    """CXR_FLOAT64=1 trains in float64: a verification mode for tests. In float32, runs that differ only in the
    order of floating-point sums (2 processes instead of 1, or 2 threads instead of 1) drift apart within a few
    Adam steps, because Adam turns any near-zero gradient into a step of about lr whose sign is decided by rounding;
    in float64 they agree to ~1e-12, so the distributed mechanics can be checked exactly (docs/distributed.md)."""
    return torch.float64 if os.environ.get("CXR_FLOAT64") == "1" else torch.float32


def _rng_state():
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def _set_rng_state(state):
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


class Logger:
    """The same scalars to TensorBoard and to log.csv (rows past a resumed epoch are dropped first)."""

    def __init__(self, out: Path, resume_epoch: int):
        from torch.utils.tensorboard import SummaryWriter

        self.path = out / "log.csv"
        rows = []
        if resume_epoch and self.path.exists():
            with open(self.path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["epoch"]) <= resume_epoch]
        with open(self.path, "w", newline="") as f:
            writer = csv.DictWriter(f, LOG_FIELDS)
            writer.writeheader()
            writer.writerows(rows)
        self.tb = SummaryWriter(str(out / "tb"), purge_step=None)

    def log(self, row: dict):
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, LOG_FIELDS).writerow(row)
        for key, value in row.items():
            if key not in ("epoch", "step") and value is not None and not (isinstance(value, float) and math.isnan(value)):
                self.tb.add_scalar(key, value, row["step"])
        self.tb.flush()

    def close(self):
        self.tb.close()


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
    checkpoint = None
    if resume:
        if not last_path.exists():
            raise FileNotFoundError(f"--resume: {last_path} does not exist (nothing to resume)")
        checkpoint = torch.load(last_path, map_location="cpu", weights_only=False)
        # The run's own settings, not today's flags (except how it runs: device, threads, timeout).
        cfg = TrainConfig(**{**checkpoint["config"], **{k: getattr(cfg, k) for k in RUNTIME_FIELDS}})
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    distributed.check_batch_size(cfg.batch_size, ctx.world_size)
    autocast_dtype = distributed.amp_dtype(cfg.amp, ctx.device)
    device, dtype = ctx.device, _verification_dtype()
    if device.type == "cuda":  # deterministic convolutions: a resumed run still ends with the uninterrupted weights
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = False, True
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    random.seed(cfg.seed)

    train_split, val_split = load_split(cfg.data, "train"), load_split(cfg.data, "val")
    if len(train_split) == 0:
        raise ValueError(f"{cfg.data}: the train split is empty")
    spec = ARCHS[cfg.arch]
    normalize = Normalize(spec.mean, spec.std).to(device, dtype)
    model, origin = build_model(cfg.arch, "none" if resume else cfg.weights)
    if ctx.distributed:  # batch statistics over the global batch, as one process computes them
        model = distributed.convert_sync_batchnorm(model, device)
    model = model.to(device, dtype, memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(train_split) / cfg.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_lambda(s, steps_per_epoch, cfg))
    scaler = torch.amp.GradScaler("cuda") if cfg.amp == "fp16" else None
    state = {"epoch": 0, "step": 0, "best_auc": -math.inf, "best_epoch": -1, "bad_epochs": 0, "stopped": "",
             "seconds": 0.0, "images": 0}
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        if scaler is not None and checkpoint.get("scaler"):
            scaler.load_state_dict(checkpoint["scaler"])
        state = checkpoint["train_state"]
        origin = checkpoint["weights_origin"]
        _set_rng_state(checkpoint["rng"])
        if ctx.is_main:
            print(f"resuming {last_path} at epoch {state['epoch']}, step {state['step']}", file=sys.stderr)
    net = distributed.wrap(model, ctx)  # DistributedDataParallel under torchrun, the model itself otherwise

    aug_config = augment.AugmentConfig(hflip=cfg.hflip, harmonize=cfg.harmonize)
    weights = sample_weights(train_split.labels, [r["source"] for r in train_split.rows], cfg.balance_sources)
    weights_on_device = weights.to(device, dtype)
    train_batches = distributed.DeviceBatches(train_split.images, device)
    val_start, val_stop = distributed.shard_bounds(len(val_split), ctx)
    meta = {"config": asdict(cfg), "classes": list(CLASSES), "arch": cfg.arch, "weights_origin": origin,
            "preprocess": {**GeometryConfig.of(load_prepared(cfg.data)[0]).as_dict(), "mean": list(spec.mean),
                           "std": list(spec.std), "version": PREPROCESS_VERSION},
            "data_summary": data_summary(cfg.data), "class_weights": class_weights(train_split.labels).tolist()}

    def checkpoint_dict():
        return {**meta, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "epoch": state["epoch"], "step": state["step"],
                "train_state": dict(state), "rng": _rng_state(),
                **({"scaler": scaler.state_dict()} if scaler is not None else {})}

    logger = Logger(out, state["epoch"]) if ctx.is_main else None
    epochs_bar = bar(total=cfg.epochs, initial=state["epoch"], desc="epochs", unit="ep", enabled=progress)
    while state["epoch"] < cfg.epochs and not state["stopped"]:
        epoch = state["epoch"]
        order, params = epoch_plan(cfg.seed, epoch, len(train_split), aug_config)
        first_batch = state["step"] - epoch * steps_per_epoch
        model.train()
        losses, seen, started = [], 0, time.perf_counter()
        steps_bar = bar(range(first_batch, steps_per_epoch), desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False,
                        unit="step", enabled=progress)
        for b in steps_bar:
            idx = order[b * cfg.batch_size : (b + 1) * cfg.batch_size]  # the global batch
            local = distributed.shard(idx, ctx)  # this rank's slice of it (all of it in one process)
            images = train_batches(local)
            x = augment.apply(images, params[local].to(device)) if cfg.augment else images.float()
            x = normalize(x.to(dtype)).contiguous(memory_format=torch.channels_last)
            labels = train_split.labels[local].to(device, non_blocking=True)
            # Divide by the global batch's weight on every rank; DDP averages gradients over ranks, so the
            # world_size factor makes the gradient equal to the single-process one.
            normaliser = weights[idx].sum().to(device, dtype)
            with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                logits = net(x)
            loss = weighted_loss(logits.to(dtype), labels, weights_on_device[local.to(device)], normaliser)
            if ctx.distributed:
                loss = loss * ctx.world_size
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()
            scheduler.step()
            state["step"] += 1
            if ctx.distributed:  # the single-process batch loss: the sum of the ranks' shares
                losses.append(distributed.all_reduce_sum(loss.detach() / ctx.world_size, ctx).item())
            else:
                losses.append(loss.item())
            seen += len(idx)
            steps_bar.set_postfix(loss=f"{losses[-1]:.3f}", img_s=f"{seen / (time.perf_counter() - started):.1f}",
                                  refresh=False)
            _crash_for_tests(state["step"], ctx.rank)
            if (ctx.is_main and cfg.checkpoint_every and state["step"] % cfg.checkpoint_every == 0
                    and b + 1 < steps_per_epoch):
                save_atomic(checkpoint_dict(), last_path)
            if cfg.max_steps and state["step"] >= cfg.max_steps:
                state["stopped"] = f"max_steps {cfg.max_steps} reached"
                break
        seconds = time.perf_counter() - started
        state["seconds"] += seconds
        state["images"] += seen

        # Each rank predicts its share of validation; all-gathered, every rank holds the same logits and so takes
        # the same best-epoch and early-stopping decisions.
        local_logits, _ = predict(model, normalize, val_split.images[val_start:val_stop], cfg.eval_batch_size,
                                  device=device)
        logits = distributed.all_gather_rows(local_logits, ctx)
        val_loss = nll(logits, val_split.labels) if len(val_split) else float("nan")
        probs = torch.softmax(logits, 1).numpy()
        val_auc = macro_auc(val_split.labels.numpy(), probs) if len(val_split) else float("nan")
        val_acc = float((probs.argmax(1) == val_split.labels.numpy()).mean()) if len(val_split) else float("nan")

        state["epoch"] = epoch + 1
        improved = not math.isnan(val_auc) and val_auc > state["best_auc"]
        if improved or state["best_epoch"] < 0:  # (not a file check: ranks on other machines see no best.pt)
            state["best_auc"] = val_auc if improved else state["best_auc"]
            state["best_epoch"], state["bad_epochs"] = epoch + 1, 0
            if ctx.is_main:
                save_atomic(checkpoint_dict(), best_path)
        else:
            state["bad_epochs"] += 1
            if state["bad_epochs"] >= cfg.patience:
                state["stopped"] = state["stopped"] or f"early stop: no better validation AUC for {cfg.patience} epochs"
        if ctx.is_main:
            save_atomic(checkpoint_dict(), last_path)
            logger.log({"epoch": epoch + 1, "step": state["step"], "lr": scheduler.get_last_lr()[0],
                        "train_loss": float(np.mean(losses)) if losses else float("nan"), "val_loss": val_loss,
                        "val_macro_auc": val_auc, "val_accuracy": val_acc,
                        "images_per_s": seen / seconds if seconds else float("nan"), "seconds": seconds})
        epochs_bar.update(1)
        epochs_bar.set_postfix(val_auc=f"{val_auc:.3f}", best=f"{state['best_auc']:.3f}")
    epochs_bar.close()
    if not ctx.is_main:
        return None  # rank 0 alone calibrates, fits OOD and writes the summary; no collective follows
    logger.close()

    summary = finalize(best_path, train_split, val_split, cfg, progress, device)
    summary.update({"epochs": state["epoch"], "steps": state["step"], "best_epoch": state["best_epoch"],
                    "best_val_macro_auc": state["best_auc"], "stopped": state["stopped"] or "max epochs reached",
                    "train_seconds": state["seconds"],
                    "images_per_s": state["images"] / state["seconds"] if state["seconds"] else None,
                    "weights_origin": origin, "arch": cfg.arch, "processes": ctx.world_size,
                    "device": str(device), "amp": cfg.amp})
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def finalize(best_path: Path, train_split, val_split, cfg: TrainConfig, progress: bool,
             device: torch.device | str = "cpu") -> dict:
    """Calibrate the best model on validation and fit the OOD statistics; store both in best.pt."""
    best = torch.load(best_path, map_location="cpu", weights_only=False)
    spec = ARCHS[best["arch"]]
    model, _ = build_model(best["arch"], "none")
    model.load_state_dict(best["model"])
    model = model.to(device, memory_format=torch.channels_last)
    normalize = Normalize(spec.mean, spec.std).to(device)
    val_logits, val_features = predict(model, normalize, val_split.images, cfg.eval_batch_size,
                                       "validation" if progress else None, device)
    _, train_features = predict(model, normalize, train_split.images, cfg.eval_batch_size,
                                "train features" if progress else None, device)

    labels = val_split.labels
    if len(val_split):
        temperature = fit_temperature(val_logits, labels)
        before = torch.softmax(val_logits.double(), 1).numpy()
        after = torch.softmax(val_logits.double() / temperature, 1).numpy()
        calibration = {"temperature": temperature, "fitted_on": "val", "n": len(val_split),
                       "nll_before": nll(val_logits, labels), "nll_after": nll(val_logits, labels, temperature),
                       "ece_before": expected_calibration_error(before, labels.numpy()),
                       "ece_after": expected_calibration_error(after, labels.numpy())}
    else:
        calibration = {"temperature": 1.0, "fitted_on": "nothing (empty validation split)", "n": 0}

    scorer = ood.fit(train_features.numpy(), train_split.labels.numpy(), len(CLASSES), cfg.ood_dims)
    with torch.no_grad():
        val_scores = scorer(val_features).numpy() if len(val_split) else scorer(train_features).numpy()
    ood_state = {**{k: v for k, v in scorer.state().items()}, "percentile": cfg.ood_percentile,
                 "threshold": ood.threshold(val_scores, cfg.ood_percentile),
                 "threshold_from": "val" if len(val_split) else "train"}
    best["calibration"] = calibration
    best["ood"] = ood_state
    save_atomic(best, best_path)
    return {"calibration": calibration, "ood_threshold": ood_state["threshold"]}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = TrainConfig(data="", out="")
    parser.add_argument("--data", required=True, help="a `python -m training prepare` output folder")
    parser.add_argument("--out", required=True, help="run folder (checkpoints, logs)")
    parser.add_argument("--arch", default=defaults.arch, choices=sorted(ARCHS), help="default resnet50")
    parser.add_argument("--weights", default=defaults.weights,
                        help="imagenet | none | auto (ImageNet if available, else none with a warning) | PATH")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from last.pt")
    parser.add_argument("--no-augment", dest="augment", action="store_false")
    parser.add_argument("--hflip", action="store_true", help="add horizontal flips (off: anatomy is not symmetric)")
    parser.add_argument("--balance-sources", action="store_true",
                        help="weight every data source equally within each class (see training/data.py)")
    parser.add_argument("--no-harmonize", dest="harmonize", action="store_false",
                        help="leave out the down-up sampling, blur, noise and JPEG re-compression augmentation "
                             "(on by default: docs/shortcuts.md)")
    parser.add_argument("--device", default=defaults.device, choices=distributed.DEVICES,
                        help="auto: CUDA if available (each torchrun rank takes GPU LOCAL_RANK), else CPU")
    parser.add_argument("--amp", default=defaults.amp, choices=sorted(distributed.AMP),
                        help="mixed precision of the training forward pass: bf16 (CUDA or CPU) or fp16 (CUDA, "
                             "with a gradient scaler); default none")
    parser.add_argument("--dist-timeout", type=float, default=defaults.dist_timeout,
                        help=f"under torchrun: seconds a collective waits for a dead or hung peer before the job "
                             f"fails with an error (default {defaults.dist_timeout:g})")
    for f in fields(TrainConfig):
        if f.name in ("data", "out", "arch", "weights", "augment", "hflip", "harmonize", "balance_sources", "device",
                      "amp", "dist_timeout"):
            continue
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default,
                            help=f"default {f.default}")


def config_from_args(args) -> TrainConfig:
    return TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m training train", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
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
        return
    cal = summary["calibration"]
    print(f"{summary['arch']} ({summary['weights_origin']}): {summary['epochs']} epochs, best validation macro AUC "
          f"{summary['best_val_macro_auc']:.3f} at epoch {summary['best_epoch']} ({summary['stopped']}); "
          f"{summary['images_per_s'] or 0:.1f} images/s")
    if "nll_before" in cal:
        print(f"temperature {cal['temperature']:.3f}: validation NLL {cal['nll_before']:.3f} -> {cal['nll_after']:.3f}, "
              f"ECE {cal['ece_before']:.3f} -> {cal['ece_after']:.3f}")
    print(f"wrote {Path(args.out) / 'best.pt'} (use it with `python -m training evaluate` and `python -m export`)")
