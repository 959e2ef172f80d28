"""Processes, devices and mixed precision for `python -m training train` (see docs/distributed.md).

Started by `torchrun` (RANK, WORLD_SIZE and LOCAL_RANK in the environment, WORLD_SIZE > 1), training runs as one
process per rank: `setup` joins the process group (NCCL on CUDA, gloo on CPU) with a timeout, the model's batch
norms become synchronised ones (`convert_sync_batchnorm`) and the model is wrapped in DistributedDataParallel.
Every rank draws the same epoch plan (order and augmentation, training/augment.py) and takes its contiguous slice
of each global batch (`shard`), so the ranks together see exactly the batches one process would see.
Started plainly, `setup` returns a single-process context and none of this is involved.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

DEVICES = ("auto", "cpu", "cuda")
AMP = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Context:
    """Where this process stands: its rank among `world_size` processes and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: str | None = None  # None: no process group (single process)
    timeout_s: float = 0.0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_ranks() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) when started plainly."""
    try:
        env = os.environ
        return int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0))
    except ValueError as e:
        raise ValueError(f"RANK / WORLD_SIZE / LOCAL_RANK must be integers (as torchrun sets them): {e}") from None


def resolve_device(choice: str, local_rank: int = 0) -> torch.device:
    """auto: this rank's GPU if CUDA is available, else the CPU; cuda: fail clearly if there is none."""
    if choice not in DEVICES:
        raise ValueError(f"--device {choice!r}: choose one of {', '.join(DEVICES)}")
    if choice == "cpu" or (choice == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available here (use --device cpu or auto)")
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise ValueError(f"LOCAL_RANK {local_rank} but only {count} CUDA device(s) on this machine: start at most "
                         f"{count} processes per node (torchrun --nproc_per_node={count})")
    return torch.device("cuda", local_rank)


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for --amp, or None for full precision. fp16 needs CUDA (and a GradScaler, which the
    training loop adds); bf16 runs on CUDA and on CPUs."""
    if amp not in AMP:
        raise ValueError(f"--amp {amp!r}: choose one of {', '.join(AMP)}")
    if amp == "fp16" and device.type != "cuda":
        raise ValueError("--amp fp16 needs a CUDA device; on the CPU use --amp bf16 (or none)")
    return AMP[amp]


def check_batch_size(batch_size: int, world_size: int) -> int:
    """--batch-size is the global batch; each rank gets batch_size / world_size of it. Returns the per-rank size."""
    if batch_size < 1:
        raise ValueError(f"--batch-size {batch_size}: must be at least 1")
    if batch_size % world_size:
        lower, upper = batch_size // world_size * world_size, -(-batch_size // world_size) * world_size
        raise ValueError(f"--batch-size {batch_size} is the global batch and must be divisible by the number of "
                         f"processes ({world_size}): use {upper}" + (f" or {lower}" if lower else ""))
    return batch_size // world_size


def setup(device: str = "auto", timeout_s: float = 300.0) -> Context:
    """Join torchrun's process group when started by it with more than one process; otherwise a plain context.
    Collectives that wait longer than `timeout_s` for a peer (a dead or hung process) raise instead of hanging."""
    rank, world_size, local_rank = launched_ranks()
    resolved = resolve_device(device, local_rank)
    if world_size <= 1:
        return Context(device=resolved)
    if timeout_s <= 0:
        raise ValueError(f"--dist-timeout {timeout_s}: must be positive (seconds)")
    backend = "nccl" if resolved.type == "cuda" else "gloo"
    if resolved.type == "cuda":
        torch.cuda.set_device(resolved)
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s), rank=rank, world_size=world_size,
                                **({"device_id": resolved} if resolved.type == "cuda" else {}))
    return Context(rank, world_size, local_rank, resolved, backend, timeout_s)


def teardown(ctx: Context) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def shard_bounds(n: int, ctx: Context) -> tuple[int, int]:
    """[start, stop) of this rank's contiguous share of n rows, the same split as `shard` (torch.tensor_split)."""
    if not ctx.distributed:
        return 0, n
    base, extra = divmod(n, ctx.world_size)
    start = ctx.rank * base + min(ctx.rank, extra)
    return start, start + base + (ctx.rank < extra)


def shard(global_idx: torch.Tensor, ctx: Context) -> torch.Tensor:
    """This rank's contiguous slice of a global batch (or of the validation set). Full batches split evenly; a
    short last batch splits as evenly as it can (a rank may get nothing, which the loss and sync BN allow)."""
    if not ctx.distributed:
        return global_idx
    return torch.tensor_split(global_idx, ctx.world_size)[ctx.rank]


def all_gather_rows(local: torch.Tensor, ctx: Context) -> torch.Tensor:
    """Concatenate every rank's rows in rank order (shards may differ in length by one row, or be empty)."""
    if not ctx.distributed:
        return local
    comm_device = ctx.device if ctx.backend == "nccl" else torch.device("cpu")
    counts = torch.tensor([local.shape[0]], device=comm_device)
    all_counts = [torch.zeros_like(counts) for _ in range(ctx.world_size)]
    dist.all_gather(all_counts, counts)
    all_counts = [int(c.item()) for c in all_counts]
    longest = max(all_counts)
    if longest == 0:
        return local
    padded = torch.zeros((longest, *local.shape[1:]), dtype=local.dtype, device=comm_device)
    padded[: local.shape[0]] = local.to(comm_device)
    gathered = [torch.empty_like(padded) for _ in range(ctx.world_size)]
    dist.all_gather(gathered, padded)
    return torch.cat([g[:n] for g, n in zip(gathered, all_counts)]).to(local.device)


def all_reduce_sum(value: torch.Tensor, ctx: Context) -> torch.Tensor:
    """Sum over ranks, without autograd (for logging)."""
    if not ctx.distributed:
        return value
    value = value.detach().clone()
    comm_device = ctx.device if ctx.backend == "nccl" else torch.device("cpu")
    moved = value.to(comm_device)
    dist.all_reduce(moved)
    return moved.to(value.device)


def _in_process_group() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _all_reduce(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over ranks in place (nothing to do in one process)."""
    if _in_process_group():
        tensor = tensor.contiguous()
        dist.all_reduce(tensor)
    return tensor


def _channel_sum(x: torch.Tensor) -> torch.Tensor:
    return x.sum(dim=(0, 2, 3), dtype=torch.float64)


class _SyncBatchNormFunction(torch.autograd.Function):
    """y = xhat * weight + bias, xhat = (x - mean) * invstd, with mean and var of the global batch, and BatchNorm's
    analytic backward: dx = invstd * w * (dy - sum(dy)/n - xhat * sum(dy * xhat)/n), the two sums taken over every
    rank (one all-reduce) because every rank's output depends on this rank's x through the statistics. The weight
    and bias gradients stay local sums: DDP reduces them like every other parameter's. Sums are float64: they are
    where float32 loses the most (differences of nearly equal sums when dy is nearly a function of xhat)."""

    @staticmethod
    def forward(ctx, x, weight, bias, mean, var, eps: float, count: float):
        ctx.save_for_backward(x, weight, mean, var)
        ctx.eps, ctx.count = eps, count
        # The eval-mode kernel applies given statistics in one fused pass (channels_last kept).
        return torch.batch_norm(x, weight, bias, mean, var, False, 0.0, eps, True)

    @staticmethod
    def backward(ctx, dy):
        x, weight, mean, var = ctx.saved_tensors
        shape = (1, -1, 1, 1)
        invstd = torch.rsqrt(var.double() + ctx.eps)
        xhat = torch.batch_norm(x, None, None, mean, var, False, 0.0, ctx.eps, True)
        local = torch.cat([_channel_sum(dy), _channel_sum(dy * xhat)])
        sum_dy, sum_dy_xhat = _all_reduce(local.clone()).chunk(2)
        a = invstd * weight.double() if weight is not None else invstd
        # dx = a * dy - a * sum(dy)/n - a * sum(dy xhat)/n * xhat, in place on xhat
        dx = xhat.mul_((-a * sum_dy_xhat / ctx.count).to(dy.dtype).view(shape))
        dx.add_((-a * sum_dy / ctx.count).to(dy.dtype).view(shape)).addcmul_(dy, a.to(dy.dtype).view(shape))
        local_dy, local_dy_xhat = local.chunk(2)
        dw = local_dy_xhat.to(weight.dtype) if weight is not None else None
        db = local_dy.to(weight.dtype) if weight is not None else None
        return dx, dw, db, None, None, None, None


class CpuSyncBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose training-mode statistics cover the whole global batch, for gloo (torch.nn.SyncBatchNorm
    only runs on GPUs). One all-reduce per layer and step brings each rank's count, sum and sum of squares per
    channel (float64, rebuilt from the rank's own mean and variance so nothing cancels) to every rank; the running
    statistics are updated exactly as BatchNorm2d does (momentum or cumulative average; unbiased running
    variance), and the backward pass is BatchNorm's with one more all-reduce (`_SyncBatchNormFunction`).
    Parameters and buffers are BatchNorm2d's, so state-dict keys and checkpoints are interchangeable. In eval
    mode it is plain BatchNorm2d; outside a process group it computes the same as one rank holding everything."""

    def _normalize(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return nn.BatchNorm2d.forward(self, x)
        self._check_input_dim(x)
        with torch.no_grad():
            n_local = x.numel() // x.shape[1]
            if n_local:  # (bf16/fp16 activations: statistics in float32)
                precise = x if x.dtype in (torch.float32, torch.float64) else x.float()
                var_local, mean_local = torch.var_mean(precise, dim=(0, 2, 3), correction=0)
                mean_local, var_local = mean_local.double(), var_local.double()
            else:  # an empty shard contributes nothing
                mean_local = var_local = x.new_zeros(x.shape[1], dtype=torch.float64)
            # count, sum and sum of squares (sum x^2 = n * (var + mean^2)), exact enough in float64 to subtract
            local = torch.cat([x.new_full((1,), n_local, dtype=torch.float64), n_local * mean_local,
                               n_local * (var_local + mean_local * mean_local)])
            total = _all_reduce(local)
            count, sums, squares = total[0], *total[1:].chunk(2)
            count = float(count)
            if count <= 1:
                raise ValueError(f"batch norm needs more than one value per channel over the global batch "
                                 f"(got {int(count)})")
            mean = sums / count
            var = (squares / count - mean * mean).clamp(min=0)
            if self.track_running_stats:
                self.num_batches_tracked.add_(1)
                factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.mul_(1 - factor).add_(mean.to(self.running_mean.dtype), alpha=factor)
                unbiased = var * (count / (count - 1))
                self.running_var.mul_(1 - factor).add_(unbiased.to(self.running_var.dtype), alpha=factor)
        stats_dtype = self.weight.dtype if self.weight is not None else x.dtype  # the kernel's parameter dtype
        return _SyncBatchNormFunction.apply(x, self.weight, self.bias, mean.to(stats_dtype), var.to(stats_dtype),
                                            self.eps, count)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._normalize(x)


def _copy_bn_state(source: nn.BatchNorm2d, target: nn.BatchNorm2d) -> nn.BatchNorm2d:
    """Share parameters and buffers (the same tensors: an optimiser built before still holds them)."""
    if source.affine:
        target.weight, target.bias = source.weight, source.bias
    target.running_mean, target.running_var = source.running_mean, source.running_var
    target.num_batches_tracked = source.num_batches_tracked
    target.training = source.training
    return target


def _timm_bn_act():
    try:
        from timm.layers.norm_act import BatchNormAct2d
    except ImportError:
        return None
    return BatchNormAct2d


class CpuSyncBatchNormAct(CpuSyncBatchNorm):
    """timm's BatchNormAct2d (batch norm, then its dropout and activation) with synchronised statistics."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.drop(self._normalize(x)))


def _convert_cpu(module: nn.Module) -> nn.Module:
    bn_act = _timm_bn_act()
    converted = module
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, CpuSyncBatchNorm):
        kind = type(module)
        args = (module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
        if kind is nn.BatchNorm2d:
            converted = _copy_bn_state(module, CpuSyncBatchNorm(*args))
        elif bn_act is not None and kind is bn_act:
            converted = _copy_bn_state(module, CpuSyncBatchNormAct(*args))
            converted.drop, converted.act = module.drop, module.act
        else:
            raise ValueError(f"cannot synchronise {kind.__name__} across CPU processes (only BatchNorm2d and timm's "
                             f"BatchNormAct2d): train this architecture in one process or on GPUs")
    for name, child in module.named_children():
        converted.add_module(name, _convert_cpu(child))
    return converted


def convert_sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Batch norms with statistics over the global batch: torch's SyncBatchNorm on CUDA (timm's converter when timm
    is installed, which keeps BatchNormAct2d's activation), CpuSyncBatchNorm on the CPU. Parameters are shared, not
    copied; state-dict keys do not change."""
    if device.type == "cuda":
        try:
            from timm.layers import convert_sync_batchnorm as convert
        except ImportError:
            convert = nn.SyncBatchNorm.convert_sync_batchnorm
        return convert(model)
    return _convert_cpu(model)


def wrap(model: nn.Module, ctx: Context) -> nn.Module:
    """DistributedDataParallel in a process group; the model itself otherwise. Gradients are averaged over ranks,
    which the training loss accounts for (see train.weighted_loss)."""
    if not ctx.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


class DeviceBatches:
    """uint8 images held in host memory -> batches on the training device.

    On the CPU this is plain indexing. On CUDA each batch is gathered into page-locked (pinned) memory from torch's
    caching host allocator and copied with non_blocking=True, so the copy overlaps the previous step's GPU work; the
    allocator records the copy's stream and does not reuse the block before the copy ends. Only the batch is pinned,
    not the whole data set: gathering a batch is a host copy in either case, and pinning tens of gigabytes per
    process would take page-locked memory from the system for nothing."""

    def __init__(self, images: torch.Tensor, device: torch.device):
        self.images, self.device = images, device

    def __call__(self, idx: torch.Tensor) -> torch.Tensor:
        if self.device.type != "cuda":
            return self.images[idx]
        staged = torch.empty((len(idx), *self.images.shape[1:]), dtype=self.images.dtype, pin_memory=True)
        torch.index_select(self.images, 0, idx, out=staged)
        return staged.to(self.device, non_blocking=True)


def is_collective_failure(error: BaseException) -> bool:
    """Whether an exception comes from a collective that lost its peers (closed connection, timeout)."""
    if isinstance(error, getattr(dist, "DistError", ())):
        return True
    text = str(error).lower()
    return any(word in text for word in ("gloo", "nccl", "timed out", "timeout", "connection closed",
                                         "connection reset", "broken pipe", "peer"))

