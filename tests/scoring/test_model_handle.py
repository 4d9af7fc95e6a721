import copy
import os

import pytest
import torch
import torch.distributed as dist

from smartloader.scoring.model import ModelHandle, default_loss, downsample


class BNDropNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(8)
        self.drop = torch.nn.Dropout(0.5)
        self.head = torch.nn.Linear(8, 5)
        self.frozen = torch.nn.BatchNorm1d(8)

    def forward(self, x):
        h = self.bn(self.conv(x)).relu().mean((2, 3))
        return self.head(self.drop(self.frozen(h)))


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_scoring_leaves_model_bit_identical_and_modes_restored():
    g = torch.Generator().manual_seed(0)
    model = BNDropNet()
    model.train()
    model.frozen.eval()  # a module the user froze on purpose must stay frozen
    with torch.no_grad():  # make running stats non-trivial
        model(torch.randn(16, 3, 8, 8, generator=g))
    before = _state(model)
    handle = ModelHandle(model)
    x, y = torch.randn(32, 3, 8, 8, generator=g), torch.randint(0, 5, (32,), generator=g)
    a = handle.losses(x, y)
    b = handle.losses(x, y)
    after = _state(model)
    assert before.keys() == after.keys()
    for k in before:
        assert torch.equal(before[k], after[k]), k  # bitwise, incl. num_batches_tracked
    assert model.training and model.bn.training and model.drop.training
    assert not model.frozen.training
    assert torch.equal(a, b)  # dropout off: scoring is deterministic
    assert a.shape == (32,) and a.dtype == torch.float32
    assert all(p.grad is None for p in model.parameters())


def test_modes_restored_when_forward_raises():
    model = BNDropNet().train()
    with pytest.raises(RuntimeError):
        ModelHandle(model).losses(torch.randn(4, 2, 8, 8), torch.zeros(4, dtype=torch.long))
    assert model.training and model.bn.training


def test_loss_fn_must_be_per_sample():
    model = BNDropNet()
    x, y = torch.randn(6, 3, 8, 8), torch.zeros(6, dtype=torch.long)
    with pytest.raises(ValueError, match=r"shape \(6,\); it returned \(\)"):
        ModelHandle(model, loss_fn=torch.nn.CrossEntropyLoss()).losses(x, y)
    with pytest.raises(ValueError, match=r"returned \(6, 5\)"):
        ModelHandle(model, loss_fn=lambda o, t: o).losses(x, y)


def test_default_loss_handles_soft_targets():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    hard = default_loss(logits, torch.tensor([0, 1]))
    soft = default_loss(logits, torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    assert torch.allclose(hard, soft)
    mixed = default_loss(logits, torch.tensor([[0.5, 0.5], [0.5, 0.5]]))
    expected = -(0.5 * torch.log_softmax(logits, -1)).sum(-1)
    assert torch.allclose(mixed, expected)


def test_downsample_shorter_side_keeps_dtype_never_upsamples():
    x = torch.randint(0, 256, (2, 3, 30, 40), dtype=torch.uint8)
    y = downsample(x, 15)
    assert y.shape == (2, 3, 15, 20) and y.dtype == torch.uint8
    assert downsample(x, 64) is x and downsample(x, None) is x
    f = torch.ones(1, 1, 8, 8)
    assert torch.allclose(downsample(f, 4), torch.ones(1, 1, 4, 4))
    with pytest.raises(ValueError, match="NCHW"):
        downsample(torch.zeros(4, 10), 2)


def test_autocast_bfloat16_on_cpu():
    model = BNDropNet()
    x, y = torch.randn(8, 3, 8, 8), torch.zeros(8, dtype=torch.long)
    full = ModelHandle(model).losses(x, y)
    half = ModelHandle(model, autocast="bfloat16").losses(x, y)
    assert half.dtype == torch.float32
    assert torch.allclose(full, half, atol=0.1)


def test_torch_compile_model():
    model = BNDropNet()
    compiled = torch.compile(model, backend="eager")
    x, y = torch.randn(8, 3, 8, 8), torch.zeros(8, dtype=torch.long)
    before = _state(model)
    got = ModelHandle(compiled).losses(x, y)
    assert torch.allclose(got, ModelHandle(model).losses(x, y))
    assert all(torch.equal(v, _state(model)[k]) for k, v in before.items())
    assert compiled.training


def test_ddp_scored_through_module_without_collectives(tmp_path):
    """Single-process gloo group: scoring uses .module, so DDP's forward (buffer broadcast,
    reducer preparation) never runs; the DDP wrapper's state is untouched."""
    init = f"file://{tmp_path / 'pg'}"
    dist.init_process_group("gloo", init_method=init, rank=0, world_size=1)
    try:
        model = BNDropNet()
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        calls = []
        ddp.register_forward_pre_hook(lambda m, a: calls.append(1))
        handle = ModelHandle(ddp)
        assert handle.module is model
        before = _state(model)
        losses = handle.losses(torch.randn(8, 3, 8, 8), torch.zeros(8, dtype=torch.long))
        assert losses.shape == (8,) and calls == []
        assert all(torch.equal(v, _state(model)[k]) for k, v in before.items())
    finally:
        dist.destroy_process_group()
