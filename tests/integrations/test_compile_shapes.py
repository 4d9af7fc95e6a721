"""torch.compile through SmartLoader: planned shapes, compiled-graph counts, prewarm, bf16.

Real ``torch.compile`` throughout. ``backend="aot_eager"`` (dynamo's guards and AOT
autograd, no code generation) where the point is which graphs dynamo compiles; inductor where
the generated code itself runs (a tiny CNN, few shapes: each inductor compile takes seconds
on a small CPU). Dynamo's cache belongs to the forward's code object, shared by every
instance of a class, so each test starts and ends with ``torch._dynamo.reset()``.
"""
from __future__ import annotations

import logging
import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import smartloader
from smartloader.__main__ import main
from smartloader.config.shapes import planned_shapes
from smartloader.integrations.compile import compiled_graphs, prewarm
from smartloader.scoring.model import ModelHandle

#: progressive 8 -> 16 px in two stages; scoring at half the side (4 and 8 px)
SCHEDULE = {"resolution": {"type": "progressive", "min": 8, "max": 16, "increment": 8},
            "score_scale": 0.5}


class TinyCNN(nn.Module):
    def __init__(self, dropout: float = 0.0):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        x = torch.relu(self.bn(self.conv(x)))
        return self.fc(self.drop(x.mean((2, 3))))


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def data(n: int = 64, side: int = 16, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.utils.data.TensorDataset(torch.randn(n, 3, side, side, generator=g),
                                          torch.randint(0, 3, (n,), generator=g))


def model(seed: int = 0, dropout: float = 0.0) -> TinyCNN:
    torch.manual_seed(seed)
    return TinyCNN(dropout)


def train(loader, net, epochs: int) -> list[int | None]:
    """Plain training loop; the graph count SmartLoader reported at each step."""
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    counts = []
    for _ in range(epochs):
        for x, y in loader:
            loss = F.cross_entropy(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            counts.append(loader.stats.compiled_graphs)
    return counts


# ---------------------------------------------------------------------- the plan itself

def test_planned_shapes_of_a_schedule_with_short_last_batches():
    cfg = smartloader.load_config({"total_steps": 20, **SCHEDULE, "pool_factor": 2})
    # 70 samples in batches of 8: 9 wrapped batches per epoch, the last of 6. Phases:
    # warm-up step 0, selection 1-17, cool-down 18-19; 8 px for steps 0-9, 16 px after.
    # Epoch 0: step 0 (uniform), pools at steps 1-4, the last of 8 + 6 samples; epoch 1:
    # steps 5-9, step 9 the lone 6-sample batch; epoch 2: 10-14 (14 lone); epoch 3: 15-19.
    got = planned_shapes(cfg, 8, image_size=16, batches_per_epoch=9, last_batch=6)
    keys = [s.key for s in got]
    # (role, batch, (h, w), grad, autocast)
    assert keys == [
        ("train", 8, (8, 8), True, None),
        ("train", 6, (8, 8), True, None),      # step 9: lone last batch, passed through
        ("train", 8, (16, 16), True, None),
        ("train", 6, (16, 16), True, None),    # step 14
        ("score", 16, (4, 4), False, None),    # a pool of 2 x 8 at half of 8 px
        ("score", 14, (4, 4), False, None),    # step 4: the short last pool
        ("score", 16, (8, 8), False, None),
    ], keys
    assert got[5].steps == (4, 4) and got[5].note == "short last pool"
    # without the epoch layout every batch and pool is full
    assert len(planned_shapes(cfg, 8, image_size=16)) == 4
    # the scoring dtype is the config's autocast; training keeps the loop's own
    cast = planned_shapes(cfg.replace(autocast="bfloat16"), 8, image_size=16)
    assert {(s.role, s.autocast) for s in cast} == {("train", None), ("score", "bfloat16")}
    with pytest.raises(ValueError, match="last_batch must be in"):
        planned_shapes(cfg, 8, last_batch=9, batches_per_epoch=9)


def test_loader_plans_from_its_dataloader_and_plan_cli_prints_them(tmp_path, capsys):
    dl = torch.utils.data.DataLoader(data(70), batch_size=8)
    loader = smartloader.wrap(dl, model(), {"total_steps": 20, **SCHEDULE})
    cfg = smartloader.load_config({"total_steps": 20, **SCHEDULE})
    assert loader.planned_shapes() == planned_shapes(cfg, 8, image_size=16,
                                                     batches_per_epoch=9, last_batch=6)
    dropped = smartloader.wrap(torch.utils.data.DataLoader(data(70), batch_size=8,
                                                           drop_last=True),
                               model(), {"total_steps": 20, **SCHEDULE})
    assert {s.batch for s in dropped.planned_shapes() if s.role == "train"} == {8}
    path = tmp_path / "c.yaml"
    path.write_text("total_steps: 20\nresolution: {type: progressive, min: 8, max: 16, "
                    "increment: 8}\nscore_scale: 0.5\n")
    assert main(["plan", str(path), "--batch-size", "8", "--samples-per-epoch", "70"]) == 0
    out = capsys.readouterr().out
    assert "planned model input shapes: 7 (4 training, 3 scoring" in out
    assert "score 14 x C x 4x4  no_grad, eval, steps 4-4 (short last pool)" in out
    assert main(["plan", str(path), "--image-size", "0"]) == 1
    assert "--image-size: H or HxW" in capsys.readouterr().err


# -------------------------------------------------------------- counting compiled graphs

def test_uncompiled_model_reports_none():
    loader = smartloader.wrap(torch.utils.data.DataLoader(data(32), batch_size=8), model(),
                              {"total_steps": 4, **SCHEDULE})
    assert set(train(loader, loader._handle.model, 1)) == {None}


def test_graph_count_equals_the_plan_exactly_without_dynamic_shapes():
    """dynamic=False: one graph per signature, so the count is the signatures fed; they
    are exactly the planned ones (short last batch and short pool included), no warning."""
    dl = torch.utils.data.DataLoader(data(70), batch_size=8)
    net = torch.compile(model(), backend="eager", dynamic=False)
    loader = smartloader.wrap(dl, net, {"total_epochs": 3, **SCHEDULE})
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        counts = train(loader, net, 3)
    planned = loader.planned_shapes()
    assert counts[0] == 0   # the first batch's probe ran eagerly: no throwaway graph
    assert compiled_graphs(net) == len(planned), [s.describe() for s in planned]
    assert {s.note for s in planned} >= {"lone last batch, passed through"}


def test_probes_run_eagerly_and_scoring_uses_the_compiled_graph_with_bn_protected():
    net = torch.compile(model(), backend="aot_eager")
    inner = net._orig_mod
    before = {k: v.clone() for k, v in inner.state_dict().items()}
    handle = ModelHandle(net, resolution=8)
    x, y = torch.randn(16, 3, 16, 16), torch.randint(0, 3, (16,))
    handle.losses(x[:2], y[:2], eager=True)
    assert compiled_graphs(net) == 0
    first = handle.losses(x, y)
    assert compiled_graphs(net) == 1         # scored through the compiled module
    for k, v in inner.state_dict().items():   # running stats read, not updated
        assert torch.equal(v, before[k]), k
    assert net.training and inner.bn.training
    with torch.no_grad():                    # the same losses as the eager model in eval
        inner.eval()
        ref = F.cross_entropy(inner(handle.prepare(x)), y, reduction="none")
        inner.train()
    torch.testing.assert_close(first, ref)


def test_exceeding_the_plan_warns_once_naming_the_shape_and_the_fix(caplog):
    """A custom loader whose short last batch the plan cannot know about."""
    class Batches:
        def __init__(self):
            self.ds = data(29)

        def __iter__(self):
            for i in range(0, 29, 8):   # 8, 8, 8, 5
                yield self.ds[i:i + 8]

    net = torch.compile(model(), backend="eager", dynamic=False)
    cfg = {"total_steps": 12, "phases": [{"name": "all", "selection": "uniform"}],
           "resolution": 16}
    loader = smartloader.wrap(Batches(), net, cfg)
    assert [s.batch for s in loader.planned_shapes(batch_size=8)] == [8]
    with caplog.at_level(logging.WARNING, "smartloader"), \
            pytest.warns(RuntimeWarning, match="more than the 1 planned") as record:
        counts = train(loader, net, 3)
    msgs = [str(w.message) for w in record if "planned input shapes" in str(w.message)]
    assert len(msgs) == 1, msgs               # once, though every epoch ends short
    msg = msgs[0]
    assert "unplanned: train [5, 3, 16, 16] (first at step 3)" in msg, msg
    assert "train 8 x C x 16x16" in msg and "drop_last=True" in msg and "mark_dynamic" in msg
    assert counts[4] == 2 and counts[-1] == 2


def test_calls_outside_smartloader_are_named_as_the_cause():
    dl = torch.utils.data.DataLoader(data(32), batch_size=8)
    net = torch.compile(model(), backend="eager", dynamic=False)
    cfg = {"total_steps": 8, "phases": [{"name": "all", "selection": "uniform"}]}
    loader = smartloader.wrap(dl, net, cfg)
    train(loader, net, 1)
    net.eval()
    with torch.no_grad():                     # an evaluation pass: its own graph
        net(torch.randn(8, 3, 16, 16))
    net.train()
    with pytest.warns(RuntimeWarning, match="calls outside SmartLoader"):
        train(loader, net, 1)


# --------------------------------------------------------------------------- prewarm

def test_prewarm_leaves_the_model_exactly_as_it_was():
    net = torch.compile(model(dropout=0.5), backend="aot_eager")
    inner = net._orig_mod
    inner.conv.weight.grad = torch.randn_like(inner.conv.weight)   # a half-done step
    inner.bn.running_mean.add_(0.3)
    inner.bn.num_batches_tracked.fill_(7)
    inner.fc.eval()                                                 # a frozen part
    dl = torch.utils.data.DataLoader(data(70), batch_size=8)
    loader = smartloader.wrap(dl, net, {"total_steps": 20, **SCHEDULE})
    example = next(iter(dl))
    params = {k: v.clone() for k, v in inner.named_parameters()}
    grads = {k: None if v.grad is None else v.grad.clone() for k, v in inner.named_parameters()}
    buffers = {k: v.clone() for k, v in inner.named_buffers()}
    flags = {k: m.training for k, m in inner.named_modules()}
    rng = torch.get_rng_state()
    done = prewarm(loader, net, example)
    assert len(done.shapes) == len(loader.planned_shapes()) == 7
    assert done.graphs_before == 0 and 0 < done.graphs_after <= 7
    assert torch.equal(torch.get_rng_state(), rng)
    for k, v in inner.named_parameters():
        assert torch.equal(v, params[k]), k
        assert (v.grad is None) == (grads[k] is None), k
        assert v.grad is None or torch.equal(v.grad, grads[k]), k
    for k, v in inner.named_buffers():
        assert torch.equal(v, buffers[k]), k
    assert {k: m.training for k, m in inner.named_modules()} == flags


def test_prewarm_from_a_config_and_its_errors():
    net = torch.compile(model(), backend="aot_eager")
    example = next(iter(torch.utils.data.DataLoader(data(16), batch_size=8)))
    done = prewarm({"total_steps": 20, **SCHEDULE}, net, example)
    assert [s.key for s in done.shapes] == [
        ("train", 8, (8, 8), True, None), ("train", 8, (16, 16), True, None),
        ("score", 16, (4, 4), False, None), ("score", 16, (8, 8), False, None)]
    with pytest.raises(TypeError, match="needs example="):
        prewarm({"total_steps": 20}, net)
    loader = smartloader.wrap(torch.utils.data.DataLoader(data(16), batch_size=8), net,
                              {"total_steps": 4})
    with pytest.raises(ValueError, match="not the model this SmartLoader scores"):
        prewarm(loader, torch.compile(model(), backend="aot_eager"), example)


# --------------------------------------------------------------- inductor, end to end

@pytest.mark.slow
def test_inductor_run_stays_within_the_plan():
    dl = torch.utils.data.DataLoader(data(64), batch_size=8)
    net = torch.compile(model())                       # inductor, automatic dynamic shapes
    loader = smartloader.wrap(dl, net, {"total_epochs": 3, **SCHEDULE})
    counts = train(loader, net, 3)
    planned = loader.planned_shapes()
    assert len(planned) == 4                           # 2 training + 2 scoring sides
    assert loader.stats.scoring_forwards > 0
    # scoring ran through the compiled model: more graphs than the 2 training sides alone
    # could need with automatic dynamic shapes (one static, then one dynamic)
    assert 2 < compiled_graphs(net) <= len(planned), counts


@pytest.mark.slow
def test_inductor_prewarmed_run_never_recompiles():
    dl = torch.utils.data.DataLoader(data(64), batch_size=8)
    net = torch.compile(model())
    loader = smartloader.wrap(dl, net, {"total_epochs": 3, **SCHEDULE})
    done = prewarm(loader, net, next(iter(dl)))
    counts = train(loader, net, 3)
    assert done.graphs_after <= len(loader.planned_shapes()) == 4
    assert set(counts) == {done.graphs_after}          # no graph added from step 0 on
    assert compiled_graphs(net) == done.graphs_after   # nor by the last training step


# ------------------------------------------------------------------------ bf16 autocast

@pytest.mark.parametrize("backend", [None, "inductor"])
def test_bf16_autocast_scoring_on_cpu(backend):
    net = model()
    x, y = torch.randn(32, 3, 16, 16), torch.randint(0, 3, (32,))
    fp32 = ModelHandle(net, resolution=8).losses(x, y)
    scored = net if backend is None else torch.compile(net, backend=backend)
    bf16 = ModelHandle(scored, resolution=8, autocast="bfloat16").losses(x, y)
    assert bf16.dtype == torch.float32 and torch.isfinite(bf16).all()
    assert not torch.equal(bf16, fp32)                  # the forward really ran in bf16
    torch.testing.assert_close(bf16, fp32, rtol=2e-2, atol=2e-2)
    if backend is not None:
        assert compiled_graphs(scored) == 1


def test_bf16_autocast_through_the_loader():
    dl = torch.utils.data.DataLoader(data(64), batch_size=8)
    net = torch.compile(model(), backend="aot_eager")
    loader = smartloader.wrap(dl, net, {"total_steps": 6, "autocast": "bfloat16",
                                        "phases": [{"name": "s", "selection": "ranked"}],
                                        **SCHEDULE})
    train(loader, net, 1)
    s = loader.stats
    assert s.scored_by == "forward" and torch.isfinite(torch.tensor(s.pool_loss_mean))
    assert all(p.autocast == "bfloat16" for p in loader.planned_shapes() if p.role == "score")


def test_module_compile_in_place_is_counted_and_probed_eagerly():
    net = model()
    net.compile(backend="eager")               # nn.Module.compile(): no OptimizedModule
    handle = ModelHandle(net, resolution=8)
    x, y = torch.randn(16, 3, 16, 16), torch.randint(0, 3, (16,))
    assert compiled_graphs(net) == 0
    handle.losses(x[:2], y[:2], eager=True)
    assert compiled_graphs(net) == 0
    handle.losses(x, y)
    assert compiled_graphs(net) == 1
    assert compiled_graphs(model()) is None
