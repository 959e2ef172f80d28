"""CpuSyncBatchNorm (training/loop/cpu_sync_batchnorm.py): batch statistics over the global batch across gloo
processes equal one BatchNorm2d over the whole batch, in float64 to 1e-12."""

import pytest
import torch
from torch import nn

from training.loop import distributed
from training.loop.cpu_sync_batchnorm import CpuSyncBatchNorm, CpuSyncBatchNormAct
from training.model.classifier import build_model


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() if a[k].numel() else 0.0 for k in a)


SPLITS = {"uneven": [7, 5], "empty-shard": [12, 0]}


def _bn_ranks(rank: int, world: int, store: str, result: str) -> None:
    """One rank of test_sync_batchnorm_across_ranks: its share of a fixed float64 batch through CpuSyncBatchNorm,
    for each way of splitting the batch in SPLITS."""
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    x, dy, weight, bias = _bn_data()
    for name, sizes in SPLITS.items():
        start = sum(sizes[:rank])
        bn = _bn(weight, bias, CpuSyncBatchNorm)
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
    reference, synced = _bn(weight, bias, momentum=momentum), _bn(weight, bias, CpuSyncBatchNorm, momentum)
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
        parts = [torch.load(f"{tmp_path / 'result'}.{name}.{r}", weights_only=True) for r in range(2)]
        assert (torch.cat([p["y"] for p in parts]) - y.detach()).abs().max() < 1e-12, name
        assert (torch.cat([p["dx"] for p in parts]) - xr.grad).abs().max() < 1e-12, name
        for p in parts:
            assert (p["dw"] - reference.weight.grad).abs().max() < 1e-12, name
            assert (p["db"] - reference.bias.grad).abs().max() < 1e-12, name
            assert _max_diff(p["state"], reference.state_dict()) < 1e-12, name


def test_convert_keeps_parameters_and_state_dict_keys():
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
    assert isinstance(converted, CpuSyncBatchNormAct) and isinstance(converted.act, nn.ReLU6)
    x = torch.randn(6, 4, 3, 3) * 4
    layer.train(), converted.train()
    assert torch.allclose(converted(x), norm_act.BatchNormAct2d(4, act_layer=nn.ReLU6)(x), atol=1e-5)
    assert converted(x).max() <= 6
