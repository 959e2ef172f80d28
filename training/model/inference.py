"""Batched forward passes of a classifier over cached images: logits and pooled features, on any device."""

from __future__ import annotations

import torch

from core.progress import bar


@torch.no_grad()
def logits_and_features(model, normalize, images: torch.Tensor, batch_size: int = 64, progress: str | None = None,
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
