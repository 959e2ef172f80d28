"""`cxr lungs-train`: train the lung segmenter (training/graph/lungs.py) on lung-mask folders.

The masks of ../shared/data/lungmasks (207, COVID-19 films of ieee8023 and Hannover) and of
../shared/data/montgomery-shenzhen (340, Normal films of two hospitals), split by patient (70/15/15, seeded, as
`prepare` splits: a patient's split does not change when another folder is added).
Images and masks are decoded once and resized to 160 x 160; training augments both with the same random affine
(rotation, scale, translation) and the image alone with exposure changes, noise and blur. Loss: binary
cross-entropy plus soft Dice; Adam with cosine decay; the epoch with the best validation Dice is kept. The
implausible-mask rules are fitted on the training masks. Writes OUT/lungs.pt (tensors and plain values:
loadable with weights_only=True), OUT/log.csv and OUT/summary.json; `cxr lungs-evaluate` measures it.
"""

from __future__ import annotations

import csv
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from core.decode import decode
from core.jsonio import write_json
from core.progress import bar

from ..data.splits import assign_splits
from ..graph.lungs import LUNG_SIZE, LungRules, LungSegmenter, save_segmenter
from ..graph.preprocess import resize
from ..model.efficientnet import imagenet_features_state


def mask_table(root: Path) -> Path:
    """A mask folder's table: masks.csv where the folder's manifest lists images (montgomery-shenzhen), else the
    manifest.csv of a folder of masks (lungmasks). Columns: mask, image, label, source, patient_id."""
    root = Path(root)
    return root / "masks.csv" if (root / "masks.csv").exists() else root / "manifest.csv"


def read_masks(roots: Path | list[Path], seed: int = 0) -> list[dict]:
    """The rows of one or more mask folders with absolute paths and a split by patient."""
    rows = []
    for root in [roots] if isinstance(roots, (str, Path)) else roots:
        root = Path(root)
        with open(mask_table(root), newline="") as f:
            found = list(csv.DictReader(f))
        for row in found:
            row["mask"] = str((root / row["mask"]).resolve())
            row["image"] = str((root / row["image"]).resolve())
        rows += found
    split_of = assign_splits(rows, seed=seed)
    for row in rows:
        row["split"] = split_of[row["patient_id"]]
    return rows


def load_pairs(rows: list[dict], size: int = LUNG_SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """(images [N,1,s,s] float 0..255 as the segmenter's own resize makes them, masks [N,1,s,s] in {0, 1})."""
    images, masks = [], []
    for row in bar(rows, desc="masks", unit="img"):
        gray = torch.as_tensor(decode(row["image"]))[None, None]
        mask = torch.as_tensor(np.asarray(Image.open(row["mask"]).convert("L"), np.float32) / 255)[None, None]
        if mask.shape[-2:] != gray.shape[-2:]:
            raise ValueError(f"{row['mask']}: {tuple(mask.shape[-2:])} is not the size of its image "
                             f"{tuple(gray.shape[-2:])}")
        images.append(resize(gray, size))
        masks.append((F.interpolate(mask, size=(size, size), mode="area") > 0.5).float())
    return torch.cat(images), torch.cat(masks)


def augment(images: torch.Tensor, masks: torch.Tensor, generator: torch.Generator):
    """The same random affine for image and mask; exposure, noise and blur for the image only."""
    n = images.shape[0]

    def uniform(lo, hi):
        return lo + (hi - lo) * torch.rand(n, generator=generator)

    angle, scale = uniform(-10, 10) * math.pi / 180, uniform(0.9, 1.1)
    tx, ty = uniform(-0.06, 0.06) * 2, uniform(-0.06, 0.06) * 2
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, images.shape, align_corners=False)
    images = F.grid_sample(images, grid, padding_mode="border", align_corners=False)
    masks = (F.grid_sample(masks, grid, align_corners=False) > 0.5).float()
    gamma = torch.exp(uniform(-0.25, 0.25))[:, None, None, None]
    contrast = uniform(0.8, 1.2)[:, None, None, None]
    x = (images / 255).clamp(0, 1) ** gamma
    x = ((x - 0.5) * contrast + 0.5) * 255
    x = x + torch.randn(x.shape, generator=generator) * uniform(0, 4)[:, None, None, None]
    blur = uniform(0, 1) < 0.3
    if blur.any():
        x[blur] = F.avg_pool2d(x[blur], 3, stride=1, padding=1, count_include_pad=False)
    return x.clamp(0, 255), masks


def dice(prob: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Per image soft Dice, [N]."""
    inter = (prob * target).sum((1, 2, 3))
    return (2 * inter + eps) / (prob.sum((1, 2, 3)) + target.sum((1, 2, 3)) + eps)


@torch.no_grad()
def predict_masks(model: LungSegmenter, images: torch.Tensor, batch: int = 32) -> torch.Tensor:
    model.eval()
    return torch.cat([torch.sigmoid(model(images[i : i + batch])) for i in range(0, len(images), batch)])


def new_segmenter(weights: str = "imagenet") -> LungSegmenter:
    model = LungSegmenter()
    if weights == "imagenet":  # the encoder's modules carry timm's names: Lite0's ImageNet weights fit them
        own = model.state_dict()
        state = {k: v for k, v in imagenet_features_state().items() if k in own}
        missing = [k for k in own if k.startswith(("conv_stem", "bn1", "blocks")) and k not in state]
        if missing:
            raise ValueError(f"ImageNet weights miss encoder tensors, e.g. {missing[:3]}")
        model.load_state_dict(state, strict=False)
    return model


def train_segmenter(masks_roots: Path | list[Path], out: Path, epochs: int = 60, batch_size: int = 16, lr: float = 1e-3,
                    seed: int = 0, patience: int = 15, weights: str = "imagenet", progress: bool = True) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    rows = read_masks(masks_roots, seed)
    split = {name: [r for r in rows if r["split"] == name] for name in ("train", "val", "test")}
    data = {name: load_pairs(split[name]) for name in ("train", "val")}
    model = new_segmenter(weights)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = math.ceil(len(split["train"]) / batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs * steps)
    rules = LungRules.fit(data["train"][1])
    best, best_epoch, log = -1.0, 0, []
    started = time.perf_counter()
    for epoch in bar(range(epochs), desc="epochs", unit="ep", enabled=progress):
        generator = torch.Generator().manual_seed(seed * 1000 + epoch)
        order = torch.randperm(len(split["train"]), generator=generator)
        model.train()
        losses = []
        for b in range(steps):
            idx = order[b * batch_size : (b + 1) * batch_size]
            x, y = augment(*(t[idx] for t in data["train"]), generator)
            logits = model(x)
            loss = F.binary_cross_entropy_with_logits(logits, y) + (1 - dice(torch.sigmoid(logits), y)).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
        val_dice = float(dice((predict_masks(model, data["val"][0]) > 0.5).float(), data["val"][1], 0).mean())
        log.append({"epoch": epoch + 1, "train_loss": float(np.mean(losses)), "val_dice": val_dice})
        if val_dice > best:
            best, best_epoch = val_dice, epoch + 1
            save_segmenter(model, rules, out / "lungs.pt",
                           {"split": {k: [r["mask"].rsplit("/", 1)[1] for r in v] for k, v in split.items()},
                            "val_dice": val_dice, "epoch": epoch + 1, "seed": seed})
        elif epoch + 1 - best_epoch >= patience:
            break
    with open(out / "log.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, ["epoch", "train_loss", "val_dice"])
        writer.writeheader()
        writer.writerows(log)
    summary = {"best_val_dice": best, "best_epoch": best_epoch, "epochs": len(log),
               "train_seconds": time.perf_counter() - started, "rules": rules.as_dict(),
               "images": {k: len(v) for k, v in split.items()}}
    write_json(out / "summary.json", summary)
    return summary
