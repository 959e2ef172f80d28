"""Batch norm with statistics over the global batch for CPU processes (gloo): torch.nn.SyncBatchNorm runs on GPUs only.

Kept apart on purpose: about 130 subtle lines that only multi-process CPU training needs, which on the 2-core
development machine runs at 0.67x of one process (docs/distributed.md says why it is kept: the distributed tests
exercise the whole torchrun path on CPUs, which is the only way to test it where no GPU is lent).
`convert_cpu(model)` replaces every BatchNorm2d (and timm's BatchNormAct2d) in place, sharing parameters.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


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


def convert_cpu(module: nn.Module) -> nn.Module:
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
        converted.add_module(name, convert_cpu(child))
    return converted
