"""No host reads in the selection path, checked on the CPU.

On a GPU the check would be ``torch.cuda.set_sync_debug_mode("error")``; it needs CUDA. Here
:func:`smartloader.testing.host_reads.record_host_reads` records every aten op that would read the
device on the host (its docstring says what it cannot see: copies to the host, which the
source check at the end covers). The loader reads its NaN-fallback counter every step only
when ``_host_reads_cheap(device)`` (CPU); the ``gpu_path`` fixture patches it to ``False``,
so these CPU runs take exactly the code path a GPU takes.

What is recorded: only the ``next()`` calls on the SmartLoader iterator; the training step
and ``loader.stats`` are outside. The wrapped loader is a Python list of ready tensor tuples,
so iterating it runs no aten op: every read recorded inside ``next()`` is the loader's own.
"""
from __future__ import annotations

import inspect
import re

import pytest
import torch
import torch.nn.functional as F

import smartloader
from smartloader.pipeline import epoch as epoch_module, step as step_module
from smartloader.scoring import stage as scoring_stage
from smartloader.selection import choose as choose_module
from helpers import trainable_model
from smartloader.common import batch as B
from smartloader.scoring import model as scoring
from smartloader.selection import ranked as selection, rules as selectors
from smartloader.config.schema import Phase
from smartloader.pipeline.loader import SmartLoader
from smartloader.selection.choose import Chooser
from smartloader.testing.host_reads import reads_host, record_host_reads
from sampling_helpers import CHI2_999, chi_square

RULES = {"ranked": {"beta": 1.0}, "topk": {},
         "selective_backprop": {"beta": 1.0, "window": 24}}
BATCH, SIDE, SCORE_SIDE = 8, 8, 4


@pytest.fixture
def gpu_path(monkeypatch):
    monkeypatch.setattr(step_module, "host_reads_cheap", lambda device: False)


def _batches(count: int, nan_in: int | None = None) -> list:
    g = torch.Generator().manual_seed(0)
    out = []
    for i in range(count):
        x = torch.randn(BATCH, 1, SIDE, SIDE, generator=g)
        if i == nan_in:
            x[3, 0, 2, 2] = float("nan")
        out.append((x, torch.randint(0, 2, (BATCH,), generator=g)))
    return out


def _wrap(rule: str, batches: list):
    model, opt = trainable_model(torch.nn.AdaptiveAvgPool2d(SCORE_SIDE))
    cfg = {"seed": 0, "pool_factor": 2, "score_resolution": SCORE_SIDE,
           "phases": [{"name": "select", "selection": rule, **RULES[rule]}]}
    return smartloader.wrap(batches, model, cfg), model, opt


def _epoch(loader, model, opt):
    """One epoch, recording host reads in each ``next()`` only. Returns the reads of each
    yielded batch and those of the final ``next()`` that ends the epoch."""
    it, per_batch = iter(loader), []
    while True:
        with record_host_reads() as reads:
            try:
                x, y = next(it)
            except StopIteration:
                return per_batch, reads
        per_batch.append(reads)
        # the training step, not recorded (nan_to_num: a NaN image must not break the model)
        loss = F.cross_entropy(model(x.nan_to_num()), y)
        opt.zero_grad()
        loss.backward()
        opt.step()


def _fmt(reads) -> str:
    return "\n".join(map(str, reads))


def _is_epoch_end_report(reads) -> bool:
    return (len(reads) == 1 and reads[0].op == "aten._local_scalar_dense.default"
            and reads[0].where.startswith("smartloader/pipeline/emit.py:")
            and reads[0].where.endswith(" in report_fallbacks"))


# -- the recorder itself ------------------------------------------------------------------
def test_recorder_catches_host_reads():
    t = torch.arange(6.0)
    mask = t > 2
    with record_host_reads() as reads:
        t[1].item()
        bool(t[2])
        t[mask]
        torch.nonzero(t)
        t[mask] = 0.0
        torch.repeat_interleave(torch.tensor([1, 2]))
        torch.unique(t)
    assert [r.op.split(".")[1] for r in reads] == [
        "_local_scalar_dense", "_local_scalar_dense", "index", "nonzero", "index_put_",
        "repeat_interleave", "_unique2"], _fmt(reads)
    assert all(r.where.startswith(__file__) for r in reads), _fmt(reads)


def test_recorder_ignores_device_side_work():
    t = torch.arange(6.0)
    with record_host_reads() as reads:
        finite = torch.isfinite(t).all()
        torch.where(finite, t, torch.zeros_like(t)).sort()
        t[torch.tensor([1, 3])] = 1.0          # long index: no read
        t.index_select(0, torch.tensor([0, 2]))
        torch.repeat_interleave(torch.tensor([1, 2]), output_size=3)
    assert reads == [], _fmt(reads)


def test_recorder_flags_copies_between_device_and_host():
    # no accelerator here: a meta tensor stands in for a device tensor
    dev, host, aten = torch.empty(3, device="meta"), torch.empty(3), torch.ops.aten
    assert reads_host(aten._to_copy.default, (dev,), {"device": torch.device("cpu")})
    assert reads_host(aten._to_copy.default, (host,), {"device": torch.device("meta")})
    assert not reads_host(aten._to_copy.default, (host,),
                          {"device": torch.device("meta"), "non_blocking": True})
    assert not reads_host(aten._to_copy.default, (host,), {"dtype": torch.int64})
    assert reads_host(aten.copy_.default, (host, dev), {})


def test_recorder_names_the_smartloader_line():
    """On the CPU path the loader reads its fallback counter every step, on purpose; the
    recorder sees it and says where (so a read in the selection path would fail the tests
    below, pointing at its line)."""
    loader, model, opt = _wrap("ranked", _batches(4))
    per_batch, _ = _epoch(loader, model, opt)
    assert len(per_batch) == 2 and all(_is_epoch_end_report(r) for r in per_batch)


# -- the loader on the GPU code path ----------------------------------------------------------
@pytest.mark.parametrize("rule", list(RULES))
def test_selection_steps_make_no_host_reads(rule, gpu_path):
    # 7 batches: 3 pools of 2, then a lone last batch that is passed through
    loader, model, opt = _wrap(rule, _batches(7))
    for epoch in range(2):  # epoch 1: the Selective-Backprop ring has wrapped around
        per_batch, at_end = _epoch(loader, model, opt)
        assert len(per_batch) == 4
        for step, reads in enumerate(per_batch):
            assert reads == [], f"epoch {epoch} batch {step}:\n{_fmt(reads)}"
        # the end of an epoch reads the fallback counter once, to warn about NaN pools
        assert _is_epoch_end_report(at_end), _fmt(at_end)
    s = loader.stats
    assert (s.selection, s.pool_size, s.batch_size, s.scored_by) == (rule, BATCH, BATCH, None)
    assert s.uniform_fallbacks == 0 and s.scoring_forwards == 6 and s.short_pools == 2


@pytest.mark.parametrize("rule", list(RULES))
@pytest.mark.parametrize("cheap", [True, False], ids=["cpu_path", "gpu_path"])
def test_nan_pool_falls_back_and_is_counted(rule, cheap, monkeypatch):
    monkeypatch.setattr(step_module, "host_reads_cheap", lambda device: cheap)
    loader, model, opt = _wrap(rule, _batches(6, nan_in=2))  # pool 1 holds a NaN image
    with pytest.warns(RuntimeWarning, match="1 step\\(s\\) had NaN"):
        per_batch, _ = _epoch(loader, model, opt)
    assert len(per_batch) == 3
    if not cheap:
        assert all(reads == [] for reads in per_batch), _fmt(sum(per_batch, []))
    assert loader.stats.uniform_fallbacks == 1


@pytest.mark.slow
@pytest.mark.parametrize("rule", ["topk", "selective_backprop"])
def test_choose_draws_a_nan_pool_uniformly(rule):
    phase = Phase("select", 0, None, rule, 1.0)
    chooser = Chooser([phase])
    g = torch.Generator().manual_seed(1)
    scores = torch.arange(10.0)
    scores[7] = float("nan")
    counts = torch.zeros(10)
    with record_host_reads() as reads:
        for _ in range(3000):
            before = chooser.fallbacks
            index = chooser.choose(scores, 4, phase, g)
            counts[index] += 1
            fell_back = chooser.fallbacks - before
            assert fell_back.dtype == torch.int64 and fell_back.dim() == 0
    assert reads == [], _fmt(reads[:5])
    assert int(fell_back) == 1
    assert chi_square(counts, 3000 * 4 / 10) < CHI2_999[9]


def test_choose_on_a_finite_pool_is_the_selector():
    phase = Phase("select", 0, None, "topk", 0.0)
    chooser = Chooser([phase])
    scores = torch.tensor([0.3, 2.0, 1.0, 5.0, 0.1])
    index = chooser.choose(scores, 2, phase, torch.Generator())
    assert index.tolist() == [1, 3] and int(chooser.fallbacks) == 0


# -- copies to the host, which the recorder cannot see on the CPU ------------------------------
#: The modules every selection step runs through (the hot path). A copy to the host in
#: them must say so on its line with a ``# host read: <why>`` comment (docs/strategies.md
#: lists them); any other copy fails the test below, naming its file and line.
HOT_PATH = [epoch_module, step_module, choose_module, selection, selectors, scoring,
            scoring_stage, B]
COPY = re.compile(r"\.(cpu|tolist|numpy|item)\(|\.to\(\s*[\"']cpu")
MARK = "# host read:"


def test_selection_path_source_copies_nothing_to_the_host():
    found, marked = [], []
    for module in HOT_PATH:
        path = inspect.getsourcefile(module)
        for no, line in enumerate(inspect.getsource(module).splitlines(), 1):
            code = line.split("#", 1)[0]
            if MARK in line:
                marked.append(line.split(MARK, 1)[1].strip())
                assert COPY.search(code), f"{path}:{no}: marked as a host read but copies nothing"
            elif COPY.search(code) and not line.lstrip().startswith((">>>", "...")):
                found.append(f"{path}:{no}: {line.strip()}")
    assert found == [], "\n".join(found)
    # the documented copies: list fields subset on the host, join_pool's memory rows, and
    # the Selective-Backprop window when a state is saved (not per step)
    assert sorted(marked) == ["join_pool", "list fields", "state_dict, not per step"], marked
