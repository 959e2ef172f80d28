"""Distributed training: torchrun with 2 CPU processes (gloo on 127.0.0.1) against one process, a killed rank, a hung
rank, the CPU sync batch norm, and the device / precision / batch-size checks of the GPU path.

The equality runs use CXR_FLOAT64=1 (training/loop/train.py): in float32 any change in the order of floating-point sums
(2 processes instead of 1, or 2 threads instead of 1) makes Adam runs drift apart within a few steps, so only float64
can show that the distributed mechanics (sharding, loss normalisation, gradient averaging, synchronised batch norm,
gathered validation) compute exactly what one process computes. docs/distributed.md has the numbers.
"""

import csv
import json
import math
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO, tiny_config
from training.loop import distributed
from training.model.checkpoint import load_checkpoint

TORCHRUN = Path(sys.executable).with_name("torchrun")
TRAIN_ARGS = ["--arch", "resnet18", "--weights", "none", "--epochs", "2", "--batch-size", "12", "--lr", "1e-3",
              "--eval-batch-size", "32", "--ood-dims", "16", "--device", "cpu"]  # = tests.conftest.tiny_config, on gloo
STEPS_PER_EPOCH = math.ceil(36 / 12)  # 36 training phantoms


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(prepared, out, *extra, env=None, timeout=300):
    """(CompletedProcess, seconds) of `torchrun --nproc_per_node=2 -m cxr train` on 127.0.0.1, 1 thread each."""
    cmd = [str(TORCHRUN), "--nproc_per_node=2", "--master_addr=127.0.0.1", f"--master_port={_free_port()}",
           "-m", "cxr", "train", "--data", str(prepared), "--out", str(out), *TRAIN_ARGS, *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo", **(env or {})}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    started = time.monotonic()
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, timeout=timeout)
    return result, time.monotonic() - started


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() if a[k].numel() else 0.0 for k in a)


def _model(path: Path) -> dict:
    return load_checkpoint(path).model


@pytest.fixture(scope="module")
def distributed_run(tiny_prepared, tmp_path_factory):
    """An uninterrupted 2-process run in float64 (2 epochs, 6 steps): the reference of the tests below."""
    out = tmp_path_factory.mktemp("ddp") / "run"
    result, seconds = _torchrun(tiny_prepared, out, env={"CXR_FLOAT64": "1"})
    assert result.returncode == 0, result.stderr[-4000:]
    print(f"torchrun, 2 processes, 6 steps: {seconds:.1f} s")
    return out


@pytest.mark.slow
def test_torchrun_equals_single_process(tiny_prepared, tmp_path, monkeypatch, distributed_run):
    from training.loop.train import train

    monkeypatch.setenv("CXR_FLOAT64", "1")
    single = tmp_path / "single"
    threads = torch.get_num_threads()
    try:  # one thread, like each rank: 2 cores are shared with whatever else runs
        train(tiny_config(tiny_prepared, single, threads=1, device="cpu"), progress=False)
    finally:
        torch.set_num_threads(threads)
    a, b = _model(single / "last.pt"), _model(distributed_run / "last.pt")
    assert any("running_var" in k for k in a)  # BN running statistics are compared too
    diff = _max_diff(a, b)
    print(f"max abs difference, 1 process vs 2 processes, all weights and BN buffers after 6 steps: {diff:.3g}")
    assert diff <= 1e-5
    with open(single / "log.csv", newline="") as f1, open(distributed_run / "log.csv", newline="") as f2:
        rows1, rows2 = list(csv.DictReader(f1)), list(csv.DictReader(f2))
    assert [r["epoch"] for r in rows2] == ["1", "2"]  # one row per epoch: rank 0 alone logs
    for r1, r2 in zip(rows1, rows2):
        for key in ("train_loss", "val_loss", "val_macro_auc", "val_accuracy"):
            assert float(r1[key]) == pytest.approx(float(r2[key]), rel=1e-9, abs=1e-12), key

    # One set of outputs, written by rank 0 only.
    assert sorted(p.name for p in distributed_run.iterdir()) == ["best.pt", "last.pt", "log.csv", "summary.json", "tb"]
    assert len(list((distributed_run / "tb").iterdir())) == 1
    summary = json.loads((distributed_run / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["steps"] == 2 * STEPS_PER_EPOCH
    best = load_checkpoint(distributed_run / "best.pt")
    assert best.calibration is not None and best.ood is not None  # rank 0 ran the final step
    best.classifier().load_state_dict(b)  # plain BatchNorm2d keys: loadable by the single-process model


@pytest.mark.slow
def test_killed_rank_ends_the_job_and_resume_completes_it(tiny_prepared, tmp_path, distributed_run):
    out = tmp_path / "run"
    kill_at = STEPS_PER_EPOCH + 2  # inside epoch 2
    killed, seconds = _torchrun(tiny_prepared, out, "--checkpoint-every", "1", "--dist-timeout", "10",
                                env={"CXR_FLOAT64": "1", "CXR_KILL_AT_STEP": str(kill_at), "CXR_KILL_RANK": "1"},
                                timeout=120)
    print(f"killed run: exit {killed.returncode} after {seconds:.1f} s in all")
    assert killed.returncode != 0
    assert "SIGKILL" in killed.stderr or "Signal 9" in killed.stderr, killed.stderr[-3000:]
    last = load_checkpoint(out / "last.pt")
    # Rank 0 finished step kill_at too (its all-reduce completed) and may have saved it before it was stopped.
    assert last.resume["train_state"]["step"] in (kill_at - 1, kill_at)

    resumed, seconds = _torchrun(tiny_prepared, out, "--resume", env={"CXR_FLOAT64": "1"})
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert "resuming" in resumed.stderr
    diff = _max_diff(_model(distributed_run / "last.pt"), _model(out / "last.pt"))
    print(f"resumed vs uninterrupted 2-process run: max abs difference {diff:.3g}")
    assert diff <= 1e-6
    with open(out / "log.csv", newline="") as f:
        assert [r["epoch"] for r in csv.DictReader(f)] == ["1", "2"]


@pytest.mark.slow
def test_hung_rank_times_out_with_a_clear_error(tiny_prepared, tmp_path):
    # Float32, the default: the distributed path as users run it. Rank 1 stays alive but stops after step 2; rank 0
    # waits in the next all-reduce until --dist-timeout, then fails with the message; torchrun stops rank 1.
    hung, seconds = _torchrun(tiny_prepared, tmp_path / "run", "--epochs", "1", "--dist-timeout", "5",
                              env={"CXR_HANG_AT_STEP": "2", "CXR_KILL_RANK": "1"}, timeout=120)
    print(f"hung rank: exit {hung.returncode} after {seconds:.1f} s in all (--dist-timeout 5)")
    assert hung.returncode != 0
    assert "train: rank 0 of 2: lost the other processes" in hung.stderr, hung.stderr[-3000:]
    assert "--dist-timeout 5 s" in hung.stderr and "--resume" in hung.stderr


def test_device_amp_and_batch_checks():
    if not torch.cuda.is_available():
        assert distributed.resolve_device("auto") == torch.device("cpu")
        with pytest.raises(ValueError, match="no CUDA device"):
            distributed.resolve_device("cuda")
    assert distributed.resolve_device("cpu", local_rank=3) == torch.device("cpu")
    with pytest.raises(ValueError, match="choose one of"):
        distributed.resolve_device("tpu")
    cpu = torch.device("cpu")
    assert distributed.amp_dtype("none", cpu) is None and distributed.amp_dtype("bf16", cpu) is torch.bfloat16
    assert distributed.amp_dtype("fp16", torch.device("cuda", 0)) is torch.float16
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        distributed.amp_dtype("fp16", cpu)
    assert distributed.check_batch_size(12, 2) == 6 and distributed.check_batch_size(32, 1) == 32
    with pytest.raises(ValueError, match="divisible by the number of processes \\(2\\): use 14 or 12"):
        distributed.check_batch_size(13, 2)
    images = torch.arange(24, dtype=torch.uint8).view(6, 1, 2, 2)
    assert torch.equal(distributed.DeviceBatches(images, cpu)(torch.tensor([4, 1])), images[[4, 1]])


def test_shards_cover_the_batch_in_order():
    for world in (1, 2, 3, 4):
        for n in range(0, 10):
            ctx = [distributed.Context(rank=r, world_size=world) for r in range(world)]
            shards = [distributed.shard(torch.arange(n), c) for c in ctx]
            assert torch.equal(torch.cat(shards), torch.arange(n))
            assert [distributed.shard_bounds(n, c) for c in ctx] == [
                (int(s[0]), int(s[-1]) + 1) if len(s) else (sum(map(len, shards[:i])),) * 2
                for i, s in enumerate(shards)]


@pytest.mark.slow
def test_bf16_autocast_trains_on_cpu(tiny_prepared, tmp_path):
    from training.loop.train import train

    summary = train(tiny_config(tiny_prepared, tmp_path, epochs=1, max_steps=2, amp="bf16", device="cpu"),
                    progress=False)
    assert summary["steps"] == 2 and summary["amp"] == "bf16" and summary["device"] == "cpu"
    with open(tmp_path / "log.csv", newline="") as f:
        assert math.isfinite(float(next(csv.DictReader(f))["train_loss"]))
