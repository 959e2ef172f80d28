"""Distributed training images/s on this machine's CPUs: 1 process vs 2 torchrun processes, same global batch.

Each configuration runs under `torchrun --nproc_per_node=P` (gloo on 127.0.0.1) and shares the machine's cores:
P processes with cores/P threads each (OMP_NUM_THREADS). Every process does what `cxr train` does
per step: its shard of the global batch from the in-memory uint8 cache, batched augmentation, channels_last,
class-weighted loss over the global batch, backward with DistributedDataParallel's all-reduce and the
synchronised batch norm (2 processes), Adam. One warm-up step, then `--rounds` rounds of `--steps` steps; the
configurations are launched in alternating order `--repeats` times (other work on the machine affects them alike)
and the median round is reported, with the load average before and after. On one machine's CPUs more processes
only split the same cores (plus communication), so expect no gain: the point of distributed training is more
machines or GPUs, and of this benchmark its overhead.

python -m bench.ddp_throughput [--arch resnet18] [--size 224] [--batch-size 32] [--steps 3] [--rounds 2] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .common import REPO, machine, print_table, save, shared_or_phantoms


def _worker(args) -> None:
    """One rank (started by torchrun): timed training steps; rank 0 writes the measurements to --result."""
    import torch

    from training.data import augment
    from training.data.dataset import load_split, sample_weights
    from training.graph.preprocess import Normalize
    from training.loop import distributed
    from training.loop.train import epoch_plan, weighted_loss
    from training.model.classifier import ARCHS, build_model

    ctx = distributed.setup("cpu", timeout_s=300)
    try:
        torch.manual_seed(0)
        split = load_split(Path(args.prepared), "train")
        spec = ARCHS[args.arch]
        normalize = Normalize(spec.mean, spec.std)
        model, _ = build_model(args.arch, "none")
        if ctx.distributed:
            model = distributed.convert_sync_batchnorm(model, ctx.device)
        model = model.to(memory_format=torch.channels_last)
        net = distributed.wrap(model, ctx)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
        weights = sample_weights(split.labels, [r["source"] for r in split.rows])
        order, params = epoch_plan(0, 0, len(split), augment.AugmentConfig())
        distributed.check_batch_size(args.batch_size, ctx.world_size)
        position = 0
        model.train()

        def run(steps: int) -> float:
            nonlocal position
            if ctx.distributed:
                torch.distributed.barrier()
            started = time.perf_counter()
            for _ in range(steps):
                idx = order[torch.arange(position, position + args.batch_size) % len(split)]
                position += args.batch_size
                local = distributed.shard(idx, ctx)
                x = normalize(augment.apply(split.images[local], params[local]))
                x = x.contiguous(memory_format=torch.channels_last)
                loss = weighted_loss(net(x), split.labels[local], weights[local], weights[idx].sum())
                optimizer.zero_grad(set_to_none=True)
                (loss * ctx.world_size).backward()
                optimizer.step()
            return steps * args.batch_size / (time.perf_counter() - started)

        run(1)  # warm-up: allocator, DDP buckets
        measured = [run(args.steps) for _ in range(args.rounds)]
        if ctx.is_main:
            Path(args.result).write_text(json.dumps({"measured": measured, "threads": torch.get_num_threads()}))
    finally:
        distributed.teardown(ctx)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(processes: int, threads: int, prepared: Path, result: Path, args) -> dict:
    cmd = [str(Path(sys.executable).with_name("torchrun")), f"--nproc_per_node={processes}",
           "--master_addr=127.0.0.1", f"--master_port={_free_port()}", "-m", "bench.ddp_throughput", "--worker",
           "--prepared", str(prepared), "--result", str(result), "--arch", args.arch, "--batch-size",
           str(args.batch_size), "--steps", str(args.steps), "--rounds", str(args.rounds)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "GLOO_SOCKET_IFNAME": "lo"}
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"torchrun with {processes} processes failed:\n{done.stderr[-3000:]}")
    return json.loads(result.read_text())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet18", help="default resnet18 (resnet50 works, about 3x slower)")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32, help="the global batch, the same for every configuration")
    parser.add_argument("--steps", type=int, default=3, help="optimiser steps per round")
    parser.add_argument("--rounds", type=int, default=2, help="timed rounds per launch")
    parser.add_argument("--repeats", type=int, default=2, help="launches of each configuration, alternating")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--prepared", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return _worker(args)

    from training.data.prepare import prepare

    cores = os.cpu_count() or 1
    # 1 process on every core vs 2 processes on half each; 1 process on 1 core shows what one core does alone.
    configurations = [(1, cores), (2, max(1, cores // 2))] + ([(1, 1)] if cores > 1 else [])
    rows = [{"processes": p, "threads_per_process": t, "global_batch": args.batch_size,
             "batch_per_process": args.batch_size // p, "measured": []} for p, t in configurations]
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        data = shared_or_phantoms(Path(tmp) / "phantoms")
        prepare([str(data)], Path(tmp) / "prepared", size=args.size, progress=False)
        for repeat in range(args.repeats):
            for row in rows if repeat % 2 == 0 else rows[::-1]:
                result = _launch(row["processes"], row["threads_per_process"], Path(tmp) / "prepared",
                                 Path(tmp) / "result.json", args)
                row["measured"] += result["measured"]
    load_after = os.getloadavg()
    for row in rows:
        row["median"] = statistics.median(row["measured"])
    base = rows[0]["median"]
    print(f"distributed training throughput, {args.arch} at {args.size} px, global batch {args.batch_size}, "
          f"CPU (gloo), {machine()}")
    print_table(["processes", "threads each", "batch each", "images/s (median)", "rounds", f"vs 1 process x {cores}"],
                [[r["processes"], r["threads_per_process"], r["batch_per_process"], f"{r['median']:.2f}",
                  ", ".join(f"{v:.2f}" for v in r["measured"]), f"{r['median'] / base:.2f}x"] for r in rows])
    print(f"load average (1, 5, 15 min) before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
          f"after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f} on {cores} cores: above {cores}, other "
          f"work competed for the cores")
    print("(the processes share the same cores: no gain is expected here; see docs/distributed.md)")
    save("ddp_throughput", {"arch": args.arch, "size": args.size, "global_batch": args.batch_size,
                            "steps": args.steps, "rounds": args.rounds, "repeats": args.repeats, "data": str(data),
                            "runs": rows, "ratio_2_vs_1": rows[1]["median"] / base,
                            "load_average_before": load_before, "load_average_after": load_after})


if __name__ == "__main__":
    main()
