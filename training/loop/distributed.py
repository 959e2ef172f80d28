"""Processes, devices and mixed precision for `python -m training train` (see docs/distributed.md).

Started by `torchrun` (RANK, WORLD_SIZE and LOCAL_RANK in the environment, WORLD_SIZE > 1), training runs as one
process per rank: `setup` joins the process group (NCCL on CUDA, gloo on CPU) with a timeout, the model's batch
norms become synchronised ones (`convert_sync_batchnorm`; on the CPU training/loop/cpu_sync_batchnorm.py) and the
model is wrapped in DistributedDataParallel.
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
    from .cpu_sync_batchnorm import convert_cpu

    return convert_cpu(model)


def wrap(model: nn.Module, ctx: Context) -> nn.Module:
    """DistributedDataParallel in a process group; the model itself otherwise. Gradients are averaged over ranks,
    which the training loss accounts for (see training/loop/train.py `weighted_loss`)."""
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

