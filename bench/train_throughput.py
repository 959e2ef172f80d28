"""Training images/s: this pipeline vs a naive torchvision-style baseline, same model, batch size and input size.

Pipeline: uint8 images from the prepare cache held in memory, batched tensor augmentation, channels_last.
Baseline: a Dataset that opens and decodes every PNG on every access (PIL), resizes and augments per image with
torchvision transforms, through a DataLoader; contiguous memory format. Both are measured in the same run, in
alternating rounds, after a warm-up step; the medians are reported.

python -m bench.train_throughput [--arch resnet50] [--batch-size 32] [--steps 4] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms import v2

from core.classes import CLASSES
from training.data import augment
from training.data.dataset import load_split
from training.data.prepare import prepare
from training.graph.preprocess import Normalize
from training.model.classifier import ARCHS, build_model

from .common import machine, print_table, save, shared_or_phantoms


class NaiveDataset(torch.utils.data.Dataset):
    """What a torchvision tutorial would write: decode per access, per-image transforms."""

    def __init__(self, rows, size, mean, std):
        self.rows = rows
        self.transform = v2.Compose([
            v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Resize((size, size), antialias=True),
            v2.RandomAffine(degrees=10, translate=(0.06, 0.06), scale=(0.9, 1.1)),
            v2.ColorJitter(brightness=0.1, contrast=0.15), v2.Lambda(lambda x: x.expand(3, -1, -1)),
            v2.Normalize(mean, std)])

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        image = Image.open(self.rows[i]["file"]).convert("L")
        return self.transform(image), CLASSES.index(self.rows[i]["label"])


def _step(model, optimizer, x, y):
    optimizer.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    optimizer.step()


def pipeline_rounds(model, split, normalize, batch_size, steps):
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    params = augment.draw_params(augment.AugmentConfig(), len(split), generator)
    order = torch.randperm(len(split), generator=generator)
    position = 0

    def run(n):
        nonlocal position
        started = time.perf_counter()
        for _ in range(n):
            idx = order[torch.arange(position, position + batch_size) % len(split)]
            position += batch_size
            x = normalize(augment.apply(split.images[idx], params[idx])).contiguous(memory_format=torch.channels_last)
            _step(model, optimizer, x, split.labels[idx])
        return n * batch_size / (time.perf_counter() - started)

    return run


def baseline_rounds(model, rows, size, mean, std, batch_size, workers):
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    loader = torch.utils.data.DataLoader(NaiveDataset(rows, size, mean, std), batch_size=batch_size, shuffle=True,
                                         num_workers=workers, persistent_workers=workers > 0, drop_last=True)
    batches = iter(())

    def run(n):
        nonlocal batches
        started = time.perf_counter()
        for _ in range(n):
            try:
                x, y = next(batches)
            except StopIteration:
                batches = iter(loader)
                x, y = next(batches)
            _step(model, optimizer, x, y)
        return n * batch_size / (time.perf_counter() - started)

    return run


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet50", choices=sorted(ARCHS))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=4, help="optimiser steps per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        data = shared_or_phantoms(Path(tmp) / "phantoms")
        prepare([str(data)], Path(tmp) / "prepared", size=args.size, progress=False)
        split = load_split(Path(tmp) / "prepared", "train")
        spec = ARCHS[args.arch]
        model, _ = build_model(args.arch, "none")
        contenders = {
            "pipeline (cache, batched aug, channels_last)": pipeline_rounds(
                model.to(memory_format=torch.channels_last), split, Normalize(spec.mean, spec.std),
                args.batch_size, args.steps),
        }
        for workers in (0, 2):
            baseline_model, _ = build_model(args.arch, "none")
            baseline_model.load_state_dict(model.state_dict())
            contenders[f"naive baseline (decode per item, num_workers={workers})"] = baseline_rounds(
                baseline_model, split.rows, args.size, spec.mean, spec.std, args.batch_size, workers)
        for run in contenders.values():
            run(1)  # warm-up: allocator, worker start, first decode
        measured = {name: [] for name in contenders}
        for _ in range(args.rounds):
            for name, run in contenders.items():
                measured[name].append(run(args.steps))
    medians = {name: statistics.median(v) for name, v in measured.items()}
    pipeline = next(iter(medians.values()))
    best_baseline = max(list(medians.values())[1:])
    print(f"training throughput, {args.arch} at {args.size} px, batch {args.batch_size}, on {data} ({machine()})")
    print_table(["variant", "images/s (median)", "rounds"],
                [[name, f"{medians[name]:.2f}", ", ".join(f"{v:.2f}" for v in measured[name])] for name in medians])
    print(f"pipeline / best baseline: {pipeline / best_baseline:.2f}x")
    save("train_throughput", {"arch": args.arch, "batch_size": args.batch_size, "size": args.size,
                              "measured": measured, "medians": medians, "ratio": pipeline / best_baseline})


if __name__ == "__main__":
    main()
