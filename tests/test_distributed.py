"""Distributed training: torchrun with 2 CPU processes (gloo on 127.0.0.1) against one process, a killed rank, a hung
rank, the CPU sync batch norm, and the device / precision / batch-size checks of the GPU path.

The equality runs use CXR_FLOAT64=1 (training/train.py): in float32 any change in the order of floating-point sums
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
from torch import nn

from tests.conftest import REPO, tiny_config
from training import distributed  # (light: the spawned batch-norm ranks import this module)

TORCHRUN = Path(sys.executable).with_name("torchrun")
TRAIN_ARGS = ["--arch", "resnet18", "--weights", "none", "--epochs", "2", "--batch-size", "12", "--lr", "1e-3",
              "--eval-batch-size", "32", "--ood-dims", "16", "--device", "cpu"]  # = tests.conftest.tiny_config, on gloo
STEPS_PER_EPOCH = math.ceil(36 / 12)  # 36 training phantoms


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(prepared, out, *extra, env=None, timeout=300):
    """(CompletedProcess, seconds) of `torchrun --nproc_per_node=2 -m training train` on 127.0.0.1, 1 thread each."""
    cmd = [str(TORCHRUN), "--nproc_per_node=2", "--master_addr=127.0.0.1", f"--master_port={_free_port()}",
           "-m", "training", "train", "--data", str(prepared), "--out", str(out), *TRAIN_ARGS, *extra]
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
    return torch.load(path, map_location="cpu", weights_only=False)["model"]


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
    from training.train import train

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
    best = torch.load(distributed_run / "best.pt", weights_only=False)
    assert "calibration" in best and "ood" in best  # rank 0 ran the final step
    # Checkpoints are interchangeable: plain BatchNorm2d keys, loadable by the single-process model.
    from training.model import build_model

    model, _ = build_model("resnet18", "none")
    model.load_state_dict(b)


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
    last = torch.load(out / "last.pt", weights_only=False)
    # Rank 0 finished step kill_at too (its all-reduce completed) and may have saved it before it was stopped.
    assert last["step"] in (kill_at - 1, kill_at)

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


SPLITS = {"uneven": [7, 5], "empty-shard": [12, 0]}


def _bn_ranks(rank: int, world: int, store: str, result: str) -> None:
    """One rank of test_sync_batchnorm_across_ranks: its share of a fixed float64 batch through CpuSyncBatchNorm,
    for each way of splitting the batch in SPLITS."""
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    x, dy, weight, bias = _bn_data()
    for name, sizes in SPLITS.items():
        start = sum(sizes[:rank])
        bn = _bn(weight, bias, distributed.CpuSyncBatchNorm)
        xs = x[start : start + sizes[rank]].clone().requires_grad_(True)
        y = bn(xs)
        y.backward(dy[start : start + sizes[rank]])
        grads = [bn.weight.grad.clone(), bn.bias.grad.clone()]
        for g in grads:  # what DDP does with parameter gradients (a sum here: the loss is not scaled by world size)
            torch.distributed.all_reduce(g)
        torch.save({"y": y.detach(), "dx": xs.grad, "dw": grads[0], "db": grads[1], "state": bn.state_dict()},
                   f"{result}.{name}.{rank}")
    torch.distributed.destroy_process_group()


def _bn_data():
    g, f64, cl = torch.Generator().manual_seed(0), torch.float64, torch.channels_last
    x = (torch.randn(12, 5, 4, 3, generator=g, dtype=f64) * 2 + 3).contiguous(memory_format=cl)
    dy = torch.randn(12, 5, 4, 3, generator=g, dtype=f64).contiguous(memory_format=cl)
    return x, dy, torch.rand(5, generator=g, dtype=f64) + 0.5, torch.randn(5, generator=g, dtype=f64)


def _bn(weight, bias, kind=nn.BatchNorm2d, momentum=0.1):
    bn = kind(5, momentum=momentum).double()
    with torch.no_grad():
        bn.weight.copy_(weight)
        bn.bias.copy_(bias)
    return bn


@pytest.mark.parametrize("momentum", [0.1, None])
def test_sync_batchnorm_equals_batchnorm_in_one_process(momentum):
    x, dy, weight, bias = _bn_data()
    reference, synced = _bn(weight, bias, momentum=momentum), _bn(weight, bias, distributed.CpuSyncBatchNorm, momentum)
    for _ in range(3):  # running statistics over several steps
        xr, xs = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        yr = reference(xr)
        yr.backward(dy)
        y = synced(xs)
        y.backward(dy)
        assert y.is_contiguous(memory_format=torch.channels_last)
    assert (y - yr).abs().max() < 1e-12
    assert (xs.grad - xr.grad).abs().max() < 1e-12
    assert (synced.weight.grad - reference.weight.grad).abs().max() < 1e-12
    assert (synced.bias.grad - reference.bias.grad).abs().max() < 1e-12
    state, expected = synced.state_dict(), reference.state_dict()
    assert state.keys() == expected.keys()
    for key in expected:
        assert torch.allclose(state[key].double(), expected[key].double(), rtol=0, atol=1e-12), key
    reference.eval(), synced.eval()
    assert (synced(x) - reference(x)).abs().max() < 1e-12  # eval mode is BatchNorm2d with the running statistics


def test_sync_batchnorm_across_ranks(tmp_path):
    """Two gloo processes, each with its share of the batch (unequal shares; or none, as a rank may get in a short
    last batch), compute what one BatchNorm2d computes on the whole batch: outputs, input gradients, summed
    parameter gradients and running statistics."""
    import torch.multiprocessing as mp

    mp.start_processes(_bn_ranks, args=(2, str(tmp_path / "store"), str(tmp_path / "result")), nprocs=2,
                       start_method="spawn")
    x, dy, weight, bias = _bn_data()
    reference = _bn(weight, bias)
    xr = x.clone().requires_grad_(True)
    y = reference(xr)
    y.backward(dy)
    for name in SPLITS:
        parts = [torch.load(f"{tmp_path / 'result'}.{name}.{r}", weights_only=False) for r in range(2)]
        assert (torch.cat([p["y"] for p in parts]) - y.detach()).abs().max() < 1e-12, name
        assert (torch.cat([p["dx"] for p in parts]) - xr.grad).abs().max() < 1e-12, name
        for p in parts:
            assert (p["dw"] - reference.weight.grad).abs().max() < 1e-12, name
            assert (p["db"] - reference.bias.grad).abs().max() < 1e-12, name
            assert _max_diff(p["state"], reference.state_dict()) < 1e-12, name


def test_convert_keeps_parameters_and_state_dict_keys():
    from training.model import build_model

    model, _ = build_model("resnet18", "none")
    keys, params = list(model.state_dict()), [id(p) for p in model.parameters()]
    converted = distributed.convert_sync_batchnorm(model, torch.device("cpu"))
    assert list(converted.state_dict()) == keys
    assert [id(p) for p in converted.parameters()] == params  # shared: an optimiser built before still works
    assert not any(type(m) is nn.BatchNorm2d for m in converted.modules())
    with pytest.raises(ValueError, match="cannot synchronise"):
        distributed.convert_sync_batchnorm(nn.Sequential(nn.BatchNorm1d(3)), torch.device("cpu"))


def test_convert_keeps_timm_batchnorm_activation():
    norm_act = pytest.importorskip("timm.layers.norm_act")
    layer = norm_act.BatchNormAct2d(4, act_layer=nn.ReLU6)
    converted = distributed.convert_sync_batchnorm(nn.Sequential(layer), torch.device("cpu"))[0]
    assert isinstance(converted, distributed.CpuSyncBatchNormAct) and isinstance(converted.act, nn.ReLU6)
    x = torch.randn(6, 4, 3, 3) * 4
    layer.train(), converted.train()
    assert torch.allclose(converted(x), norm_act.BatchNormAct2d(4, act_layer=nn.ReLU6)(x), atol=1e-5)
    assert converted(x).max() <= 6


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
    from training.train import train

    summary = train(tiny_config(tiny_prepared, tmp_path, epochs=1, max_steps=2, amp="bf16", device="cpu"),
                    progress=False)
    assert summary["steps"] == 2 and summary["amp"] == "bf16" and summary["device"] == "cpu"
    with open(tmp_path / "log.csv", newline="") as f:
        assert math.isfinite(float(next(csv.DictReader(f))["train_loss"]))
