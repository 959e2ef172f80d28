"""Training the chest gate's head on the frozen lung segmenter (training/graph/gate.py).

The segmenter is frozen, so its outputs are computed once per image (`encode`): the clean image, exactly as the
exported graph sees it (the antialiased resize of the whole image to 160 x 160), and a few augmented copies
(exposure, geometry, degradation and processing style: training/data/augment.py, applied to positives and negatives
alike, so that no style tells them apart). Heads then train in seconds on those features (`fit_head`), which is
what makes cross-validation by patient and leaving each hospital out affordable on two CPU cores.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from core.progress import bar

from ..data.augment import AugmentConfig, apply, draw_params
from ..graph.gate import REASONS, GateHead, gate_outputs, lungs_on_grid
from ..graph.lungs import LUNG_SIZE
from ..graph.resample import resize

AUGMENT = AugmentConfig(rotation=10.0, harmonize=True, style=True)
AUGMENT_SIDE = 192


def _square(image: np.ndarray, side: int) -> torch.Tensor:
    """The whole image squashed to side x side with the graph's own resize, [1,1,side,side] float 0..255."""
    return resize(torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None], side)


@torch.no_grad()
def encode(segmenter, images: list[np.ndarray], *, augment_seed: int | None = None, batch: int = 64,
           progress: bool = True, desc: str = "gate features") -> tuple[torch.Tensor, torch.Tensor]:
    """The segmenter's bottom [N,112,10,10] and lung probabilities on its grid [N,1,10,10] (float16) of each image:
    clean (augment_seed None) or augmented with parameters drawn from `augment_seed`."""
    bottoms, lungs = [], []
    generator = torch.Generator().manual_seed(augment_seed or 0)
    for start in bar(range(0, len(images), batch), enabled=progress, desc=desc, unit="batch"):
        chunk = images[start:start + batch]
        if augment_seed is None:
            x = torch.cat([_square(image, LUNG_SIZE) for image in chunk])
        else:
            x = torch.cat([_square(image, AUGMENT_SIDE) for image in chunk])
            x = apply(x, draw_params(AUGMENT, len(chunk), generator), AUGMENT)
        logits, bottom = segmenter.with_bottom(x)
        bottoms.append(bottom.half())
        lungs.append(lungs_on_grid(torch.sigmoid(logits)).half())
    return torch.cat(bottoms), torch.cat(lungs)


def fit_head(bottom: torch.Tensor, lungs: torch.Tensor, labels: np.ndarray, *, epochs: int = 25, seed: int = 0,
             lr: float = 2e-3, batch: int = 128) -> GateHead:
    """A head trained on precomputed features with class-balanced cross-entropy (every reason weighs the same in
    total, so the many transformed films do not drown the few real lateral and CT images)."""
    torch.manual_seed(seed)
    head = GateHead()
    labels_t = torch.as_tensor(labels, dtype=torch.long)
    counts = torch.bincount(labels_t, minlength=len(REASONS)).float()
    weights = torch.where(counts > 0, counts.sum() / (counts.clamp(min=1) * (counts > 0).sum()), torch.zeros(()))
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=1e-3)
    steps = epochs * ((len(labels_t) + batch - 1) // batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps)
    generator = torch.Generator().manual_seed(seed)
    head.train()
    for _ in range(epochs):
        order = torch.randperm(len(labels_t), generator=generator)
        for start in range(0, len(order), batch):
            i = order[start:start + batch]
            if len(i) < 2:
                continue  # batch norm needs two
            loss = F.cross_entropy(head(bottom[i].float(), lungs[i].float()), labels_t[i], weight=weights)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    return head.eval()


@torch.no_grad()
def score(head: GateHead, bottom: torch.Tensor, lungs: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(probability of a frontal chest film [N], likeliest refusal reason index [N]) as the graph computes them."""
    gate, reason = gate_outputs(head(bottom.float(), lungs.float()))
    return gate.numpy(), reason.numpy().astype(int)
