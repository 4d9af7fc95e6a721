"""pool_source: two_resolution: views scored in worker processes, chosen samples at full res.

A tiny map-style dataset whose images are a function of the index: every fifth sample is
*hard* (a negative image, which the mean-reading model below gives a high loss for label
0). ``low_res(i, size)`` is the same image at ``size`` px, so scoring the views ranks exactly
as scoring the full images would.
"""
from __future__ import annotations

import gc
import math
import os
import time

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, IterableDataset, SubsetRandomSampler

import smartloader
from smartloader import ConfigError, StateError
from smartloader.pipeline.workers import WorkerError
from resume_harness import assert_resumes

N, BS, FULL, SMALL = 60, 6, 32, 8
SELECT = [{"name": "select", "selection": "ranked", "beta": 1.0}]
UNIFORM = [{"name": "uniform", "selection": "uniform"}]


def _image(i: int, size: int) -> torch.Tensor:
    sign = -1.0 if i % 5 == 2 else 1.0
    g = torch.Generator().manual_seed(i)
    return sign * (0.5 + torch.rand(3, 1, 1, generator=g)) + 0.01 * torch.rand(
        3, size, size, generator=g)


class Planted(Dataset):
    """``(image 3x32x32, label 0, index)``; every fifth sample is hard."""

    def __init__(self, n: int = N):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        return _image(i, FULL), 0, i

    def low_res(self, i: int, size: int):
        return _image(i, size), 0, i


class Small(Planted):
    """The views as the dataset itself: what the plain path scores the same pools on."""

    def __getitem__(self, i: int):
        return self.low_res(i, SMALL)


class Jitter(Planted):
    """A random transform: noise drawn from the global ``torch`` RNG (seeded per sample)."""

    def __getitem__(self, i: int):
        image, label, index = super().__getitem__(i)
        return image + torch.rand(1), label, index


class NoLowRes(Dataset):
    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int):
        return _image(i, FULL), 0, i


class Broken(Planted):
    def __getitem__(self, i: int):
        if i == 7:
            raise ValueError("corrupt file")
        return super().__getitem__(i)


def mean_model(seed: int = 0) -> torch.nn.Module:
    """Logits (4m, -4m) of the mean m: hard (negative) samples get a high loss for label 0."""
    torch.manual_seed(seed)
    m = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                            torch.nn.Linear(3, 2))
    with torch.no_grad():
        m[2].weight.copy_(torch.tensor([[4 / 3] * 3, [-4 / 3] * 3]))
        m[2].bias.zero_()
    return m


def two_res(phases=SELECT, workers=1, **extra) -> dict:
    return {"phases": phases, "seed": 3,
            "pool_source": {"type": "two_resolution", "size": SMALL, "workers": workers,
                            "timeout_s": 30.0, **extra}}


def wrap(ds=None, cfg=None, model=None, shuffle=True, drop_last=False, **kw):
    dl = DataLoader(Planted() if ds is None else ds, batch_size=BS, shuffle=shuffle,
                    drop_last=drop_last)
    return smartloader.wrap(dl, model or mean_model(), cfg or two_res(), **kw)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_selected_batches_are_the_chosen_samples_at_full_resolution():
    ds = Planted(120)
    sl = wrap(ds, two_res(workers=2))
    batches = list(sl)
    assert len(batches) == len(sl) == 120 // (2 * BS) and sl._pool_source.worker_pids
    hard = 0
    for images, labels, index in batches:
        assert images.shape == (BS, 3, FULL, FULL) and index.shape == (BS,)
        want = torch.stack([ds[i][0] for i in index.tolist()])
        assert torch.equal(images, want)  # each sample is dataset[i], at full resolution
        assert labels.tolist() == [0] * BS
        hard += sum(i % 5 == 2 for i in index.tolist())
    assert sl.stats.pool_size == 2 * BS and sl.stats.batch_size == BS
    assert sl.stats.scored_by == "forward"
    # a pool of 12 holds about 2.4 hard samples: selection yields them far above 20%
    assert hard / (len(batches) * BS) > 0.3
    assert len({i for b in batches for i in b[2].tolist()}) == len(batches) * BS


def test_same_pools_choose_exactly_what_the_plain_path_chooses():
    """The plain path, wrapping a DataLoader over the views in this path's index order,
    draws the same pools and the same generator, so it chooses the same samples."""
    cfg = two_res()
    sl = wrap(Planted(120), cfg)
    src = sl._pool_source
    for epoch in range(3):
        sl.set_epoch(epoch)
        ours = [b[2].tolist() for b in sl]
        order = src.indices(epoch).tolist()
        plain = smartloader.wrap(DataLoader(Small(120), batch_size=BS, sampler=order),
                                 mean_model(), {"phases": SELECT, "seed": 3,
                                                "score_resolution": None})
        plain.set_epoch(epoch)
        theirs = [b[2].tolist() for b in plain]
        assert ours == theirs


def _epochs(sl, epochs=3):
    out = []
    for epoch in range(epochs):
        sl.set_epoch(epoch)
        out += list(sl)
    return out


def _same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert torch.equal(x[0], y[0]) and x[2].tolist() == y[2].tolist()


def test_chunked_loading_keeps_order_and_is_deterministic():
    """A batch is split across the workers and the chunks collated there: one worker or
    three, the batches hold the same samples in the same order, random transforms alike."""
    one = _epochs(wrap(Jitter(), two_res(workers=1)))
    three = _epochs(wrap(Jitter(), two_res(workers=3)))
    _same(one, three)
    _same(three, _epochs(wrap(Jitter(), two_res(workers=3))))
    # once a batch has arrived (step 1 is queued before step 0 arrives), the workers write
    # into a shared buffer shaped as the last batch
    assert not three[0][0].is_shared() and all(b[0].is_shared() for b in three[2:])
    for images, _, index in three:  # each sample is dataset[i] up to its own noise
        want = torch.stack([Planted()[i][0] for i in index.tolist()])
        noise = (images - want).flatten(1)
        assert torch.allclose(noise, noise[:, :1].expand_as(noise), atol=1e-6)
        assert len(set(noise[:, 0].tolist())) == len(index)


class Alternating(Planted):
    """Batches of ``shuffle=False`` alternate between 32 and 40 px: the shared buffer the
    workers write into is shaped as the last batch, so every other batch does not fit."""

    def __getitem__(self, i: int):
        return _image(i, FULL if (i // BS) % 2 == 0 else FULL + 8), 0, i


def test_batches_that_do_not_fit_the_shared_buffer_come_back_whole():
    ds = Alternating(48)
    batches = list(wrap(ds, two_res(UNIFORM, workers=2), shuffle=False))
    assert [b[0].shape[-1] for b in batches] == [FULL, FULL + 8] * 4
    for images, _, index in batches:  # kept batches: no buffer is reused
        assert torch.equal(images, torch.stack([ds[i][0] for i in index.tolist()]))
    assert [i for b in batches for i in b[2].tolist()] == list(range(48))


def test_cache_chooses_what_the_uncached_path_does_and_then_loads_only_chosen_samples():
    sl = wrap(Planted(), two_res(workers=2, cache=True))
    src = sl._pool_source
    sl.set_epoch(0)
    first = list(sl)
    assert bool(src.cache.have.all()) and src.cache.nbytes == N * (3 * SMALL * SMALL * 4 + 16)
    tickets = src._pool._next
    sl.set_epoch(1)
    second = list(sl)
    # the second epoch submits only the chosen samples' chunks (one per worker), no views
    assert src._pool._next - tickets == len(sl) * 2
    sl.set_epoch(2)
    _same(first + second + list(sl), _epochs(wrap(Planted(), two_res(workers=2))))


def test_cache_with_training_and_exact_resume():
    """The resumed run starts with an empty cache and refills it; with training between
    steps it still yields exactly what the uninterrupted (and the uncached) run does."""
    phases = [{"name": "warmup", "steps": 2, "selection": "uniform"},
              {"name": "select", "selection": "ranked", "beta": 1.0}]

    def build(cache=True):
        model = mean_model()
        sl = wrap(Planted(), two_res(phases, workers=2, cache=cache), model=model)
        return sl, model, torch.optim.SGD(model.parameters(), lr=0.5)

    r = assert_resumes(build, steps=12, split=8, step_fn=_train_step)
    u = assert_resumes(lambda: build(False), steps=12, split=8, step_fn=_train_step)
    assert [b[2].tolist() for b, _ in r.full] == [b[2].tolist() for b, _ in u.full]
    assert [loss for _, loss in r.full] == [loss for _, loss in u.full]


def test_cache_above_its_bound_is_refused_naming_the_key():
    sl = wrap(cfg=two_res(workers=2, cache=True, cache_max_gb=1e-5))
    with pytest.raises(ValueError, match=r"pool_source.cache: 60 views of 784 bytes need "
                                         r".*above pool_source.cache_max_gb: 1e-05"):
        next(iter(sl))
    assert sl._pool_source.worker_pids == []  # the failed epoch stopped its workers
    ok = wrap(cfg=two_res(cache=True, cache_max_gb=1e-4))  # 47 KB: within 0.1 MiB
    assert len(list(ok)) == len(ok)


def test_hard_sample_frequency_matches_the_plain_path():
    """Over many shuffled pools (fixed seeds), the share of hard samples chosen agrees with
    the plain path scoring its own shuffled pools at the same small size."""
    n, epochs = 300, 6
    sl = wrap(Planted(n), two_res())
    plain = smartloader.wrap(DataLoader(Small(n), batch_size=BS, shuffle=True),
                             mean_model(), {"phases": SELECT, "seed": 3,
                                            "score_resolution": None})
    torch.manual_seed(0)  # the plain DataLoader's shuffle draws from the global RNG
    shares = []
    for loader in (sl, plain):
        chosen = []
        for epoch in range(epochs):
            loader.set_epoch(epoch)
            chosen += [i for b in loader for i in b[2].tolist()]
        shares.append(sum(i % 5 == 2 for i in chosen) / len(chosen))
    drawn = epochs * n // 2
    se = math.sqrt(2 * 0.3 * 0.7 / drawn)  # two independent shares near 0.3
    assert abs(shares[0] - shares[1]) < 4 * se, shares
    assert min(shares) > 0.2 + 5 * math.sqrt(0.2 * 0.8 / drawn)  # well above uniform's 0.2


@pytest.mark.parametrize("drop_last", [False, True])
def test_uniform_phase_yields_every_sample_once(drop_last):
    n = 50
    sl = wrap(Planted(n), two_res(UNIFORM, workers=2), drop_last=drop_last)
    for epoch in range(2):
        sl.set_epoch(epoch)
        batches = [b[2].tolist() for b in sl]
        seen = [i for b in batches for i in b]
        assert len(batches) == len(sl) == (n // BS if drop_last else -(-n // BS))
        if drop_last:
            assert len(seen) == len(set(seen)) == (n // BS) * BS
        else:
            assert sorted(seen) == list(range(n))
        assert sl.stats.pool_size == len(batches[-1]) and sl.stats.phase == "uniform"
    # shuffle=False: in order
    sl = wrap(Planted(n), two_res(UNIFORM), shuffle=False)
    assert [i for b in sl for i in b[2].tolist()] == list(range(n))


def test_len_matches_the_batches_of_every_epoch_across_phases():
    phases = [{"name": "warmup", "steps": 3, "selection": "uniform"},
              {"name": "select", "steps": 6, "selection": "ranked", "beta": 1.0},
              {"name": "cooldown", "selection": "uniform"}]
    sl = wrap(Planted(), two_res(phases), total_epochs=3)
    names = []
    for epoch in range(3):
        sl.set_epoch(epoch)
        expected = len(sl)
        got = 0
        for _ in sl:
            got += 1
            names.append(sl.stats.phase)
        assert got == expected
    assert sl.step == sl.config.total_steps
    assert names[:3] == ["warmup"] * 3 and names[3:9] == ["select"] * 6
    assert names[-1] == "cooldown"


def _train_step(run, i, batch):
    sl, model, opt = run
    images, labels, _ = batch
    loss = F.cross_entropy(model(images), labels)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return float(loss.detach())


@pytest.mark.parametrize("split", [1, 4, 7])
def test_exact_resume_mid_epoch_with_training(split):
    """The model trains between steps, so the next pool's stale scores matter: the state
    must hold the choice already made for the step after the one it was taken at."""
    phases = [{"name": "warmup", "steps": 2, "selection": "uniform"},
              {"name": "select", "selection": "ranked", "beta": 1.0}]

    def build():
        model = mean_model()
        sl = wrap(Planted(), two_res(phases, workers=2), model=model)
        return sl, model, torch.optim.SGD(model.parameters(), lr=0.5)

    r = assert_resumes(build, steps=9, split=split, step_fn=_train_step)
    pending = r.state["pool_source"]["pending"]
    # after step split - 1, step split was already chosen when it selects (steps >= 2)
    assert (pending is None) == (split < 2)
    if pending is not None:
        assert pending["step"] == split and pending["indices"].numel() == BS
    assert len(r.full) == 9


def test_state_is_checked_strictly():
    sl = wrap()
    it = iter(sl)
    next(it)
    state = sl.state_dict()
    it.close()
    other = wrap()
    bad = {**state, "pool_source": {"pending": {**state["pool_source"]["pending"],
                                                "indices": torch.tensor([0.5])}}}
    with pytest.raises(StateError, match="state.pool_source.pending.indices"):
        other.load_state_dict(bad)
    with pytest.raises(StateError, match="pool_source"):
        other.load_state_dict({k: v for k, v in state.items() if k != "pool_source"})
    other.load_state_dict(state)
    assert [b[2].tolist() for b in other] == [b[2].tolist() for b in _rest(state)]


def _rest(state):
    sl = wrap()
    sl.load_state_dict(state)
    return list(sl)


def _wait_stopped(pids, seconds: float = 10.0) -> None:
    """Collect what was dropped, then assert every process in ``pids`` stops in time."""
    gc.collect()
    deadline = time.monotonic() + seconds
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(p) for p in pids)


def test_break_stops_the_worker_processes():
    sl = wrap(cfg=two_res(workers=2))
    it = iter(sl)
    for _ in range(3):
        next(it)
    pids = sl._pool_source.worker_pids
    assert len(pids) == 2 and all(_alive(p) for p in pids)
    for _ in sl:  # a new iterator supersedes; breaking out of it stops the workers
        break
    del it
    _wait_stopped(pids)
    assert sl._pool_source.worker_pids == []
    assert len(list(sl)) == len(sl)  # the next iter() starts new workers


def test_dropping_the_loader_stops_the_workers():
    sl = wrap(cfg=two_res(UNIFORM, workers=2))
    assert len(list(sl)) == len(sl)  # a finished epoch keeps the workers for the next
    pids = sl._pool_source.worker_pids
    assert pids and all(_alive(p) for p in pids)
    del sl
    _wait_stopped(pids)


def test_a_failing_sample_names_its_index():
    sl = wrap(Broken(), two_res(UNIFORM), shuffle=False)
    with pytest.raises(WorkerError, match=r"(?s)Broken\[7\] failed.*corrupt file"):
        list(sl)
    assert sl._pool_source.worker_pids == []


def test_refused_datasets_and_loaders():
    with pytest.raises(TypeError, match=r"no low_res\(index, size\).*pool_source"):
        wrap(NoLowRes())

    class Stream(IterableDataset):
        def __iter__(self):
            yield from range(4)
    with pytest.raises(TypeError, match="IterableDataset"):
        smartloader.wrap(DataLoader(Stream(), batch_size=2), mean_model(), two_res())
    with pytest.raises(ValueError, match="sampler set explicitly"):
        smartloader.wrap(DataLoader(Planted(), batch_size=BS,
                                    sampler=SubsetRandomSampler(range(10))),
                         mean_model(), two_res())
    with pytest.raises(ValueError, match="batch_sampler"):
        smartloader.wrap(DataLoader(Planted(), batch_sampler=[[0, 1], [2, 3]]),
                         mean_model(), two_res())
    with pytest.raises(TypeError, match="needs a torch.utils.data.DataLoader"):
        smartloader.wrap([(torch.zeros(2, 3, 4, 4), torch.zeros(2))], mean_model(), two_res())


@pytest.mark.parametrize("cfg, message", [
    ({"pool_source": {"type": "two_resolution", "size": 4}}, "pool_source.size: must be >= 8"),
    ({"pool_source": {"type": "two_resolution", "worker": 2}},
     "pool_source.worker: unknown key.*did you mean 'workers'"),
    ({"pool_source": {"type": "two_res"}}, "pool_source.type: must be one of"),
    ({"pool_source": {"type": "two_resolution", "cache": "yes"}}, "pool_source.cache"),
    ({"pool_source": {"type": "two_resolution", "cache_max_gb": 0}},
     "pool_source.cache_max_gb"),
    ({"pool_source": {"type": "two_resolution"}, "replay": {"capacity": 8, "device": "model"}},
     "replay.device: model with pool_source two_resolution"),
    ({"pool_source": {"type": "two_resolution"}, "replay": {"capacity": 8, "join_pool": True}},
     "replay.join_pool: not supported with pool_source two_resolution"),
    ({"pool_source": {"type": "two_resolution"}, "score_resolution": 16},
     "score_resolution: 16 with pool_source two_resolution"),
    ({"pool_source": {"type": "two_resolution"}, "scorer": {"type": "proxy"}},
     "scorer.type: proxy is not supported with pool_source two_resolution"),
])
def test_bad_config_names_the_key(cfg, message):
    with pytest.raises(ConfigError, match=message):
        smartloader.load_config(cfg)


def test_config_round_trips_and_the_default_is_the_wrapped_loader():
    cfg = smartloader.load_config(two_res())
    assert cfg.pool_source["workers"] == 1 and cfg.pool_source["lookahead"] == 2
    assert cfg.pool_source["cache"] is False and cfg.pool_source["cache_max_gb"] == 4.0
    assert smartloader.load_config(cfg.to_dict()) == cfg
    assert smartloader.load_config({}).pool_source is None
    assert "pool_source" not in smartloader.load_config({}).to_dict()
    sl = smartloader.wrap(DataLoader(Planted(), batch_size=BS), mean_model(),
                          {"pool_source": {"type": "loader"}, "phases": SELECT})
    assert sl._pool_source is None and len(list(sl)) == len(sl)


def test_default_collate_stacks_into_the_shared_buffer_as_default_collate_does():
    """The workers stack default_collate's tensor fields straight into the shared buffer:
    the batch equals default_collate's for tuple, dict, namedtuple and nested samples, and
    a field that does not fit (another shape) is collated as it is."""
    import collections
    from torch.utils.data import default_collate
    from smartloader.pipeline.batch_buffer import assemble, buffer_for, layout_of
    from smartloader.pipeline.workers import WRITTEN, _stack_into
    Pair = collections.namedtuple("Pair", "x y")
    makers = [lambda i: (torch.rand(3, 40, 40), i),
              lambda i: {"img": torch.rand(3, 40, 40), "y": i, "w": torch.rand(2)},
              lambda i: Pair(torch.rand(3, 40, 40), i),
              lambda i: [torch.rand(3, 40, 40), (torch.rand(3, 40, 40), i)]]
    for make in makers:
        samples = [make(i) for i in range(8)]
        want = default_collate(samples)
        out = buffer_for(layout_of(want, 8), 8)
        parts = [_stack_into(samples[:4], out, 0), _stack_into(samples[4:], out, 4)]
        assert WRITTEN in _leaves(parts[0])
        got = assemble(out, parts, [(0, 4), (4, 4)])
        assert type(got) is type(want) and _deep_equal(got, want)
    samples = [(torch.rand(3, 40, 40), i) for i in range(4)]
    out = buffer_for(layout_of(default_collate([(torch.rand(3, 48, 48), 0)] * 4), 4), 4)
    part = _stack_into(samples, out, 0)  # 40 px into a 48-px buffer: collated, not written
    assert torch.equal(part[0], default_collate(samples)[0])


def _leaves(x):
    if isinstance(x, dict):
        return [v for y in x.values() for v in _leaves(y)]
    if isinstance(x, (list, tuple)):
        return [v for y in x for v in _leaves(y)]
    return [x]


def _deep_equal(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return type(a) is type(b) and list(a) == list(b) and all(
            _deep_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(
            _deep_equal(x, y) for x, y in zip(a, b))
    return a == b


def _pad_collate(samples):
    """A custom collate_fn: the images padded by one pixel, labels as a list."""
    images = torch.stack([F.pad(s[0], (1, 1, 1, 1)) for s in samples])
    return images, [s[1] for s in samples], torch.tensor([s[2] for s in samples])


def test_a_custom_collate_fn_is_applied_to_the_chosen_samples():
    dl = DataLoader(Planted(), batch_size=BS, shuffle=True, collate_fn=_pad_collate)
    sl = smartloader.wrap(dl, mean_model(), two_res(UNIFORM, workers=2))
    batches = list(sl)
    assert len(batches) == N // BS
    for images, labels, index in batches:
        assert images.shape[-1] == FULL + 2 and labels == [0] * BS
        assert torch.equal(images, _pad_collate([Planted()[i] for i in index.tolist()])[0])
    assert sorted(i for b in batches for i in b[2].tolist()) == list(range(N))


class _Recording(torch.nn.Module):
    """The mean model, recording (grad mode, batch, h, w) of every forward."""

    def __init__(self):
        super().__init__()
        self.inner = mean_model()
        self.calls: set[tuple] = set()

    def forward(self, x):
        self.calls.add((torch.is_grad_enabled(), x.shape[0], x.shape[-2], x.shape[-1]))
        return self.inner(x)


def test_planned_shapes_are_the_shapes_the_model_sees():
    """planned_shapes() on this path plans the scoring forward at pool_source.size (the
    views as loaded) and the end of the epoch (62 samples: 2 uniform batches, 4 pools of
    12, then the last 2 samples passed through); every shape the model sees is planned."""
    phases = [{"name": "warmup", "steps": 2, "selection": "uniform"},
              {"name": "select", "selection": "ranked", "beta": 1.0}]
    model = _Recording()
    sl = wrap(Planted(62), {**two_res(phases, workers=2), "total_steps": 8}, model=model)
    seen = set()
    for images, labels, _ in sl:
        with torch.enable_grad():
            model(images)
        seen.add((True, images.shape[0], images.shape[-2], images.shape[-1]))
    scoring = {c for c in model.calls if not c[0] and c[1] > 2}  # not the two-view probe
    planned = {(p.grad, p.batch) + p.size for p in sl.planned_shapes()}
    assert scoring == {(False, 2 * BS, SMALL, SMALL)}
    assert seen == {(True, BS, FULL, FULL), (True, 2, FULL, FULL)}
    assert scoring | seen <= planned


def test_every_yaml_block_of_the_page_loads():
    import pathlib
    import re

    import yaml
    page = pathlib.Path(__file__).resolve().parents[2] / "docs" / "two_resolution.md"
    blocks = re.findall(r"```yaml\n(.*?)```", page.read_text(), re.S)
    assert len(blocks) >= 2
    for block in blocks:
        cfg = smartloader.load_config(yaml.safe_load(block))
        assert cfg.pool_source["type"] == "two_resolution"


def test_the_example_runs_as_it_is():
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, os.path.join(root, "examples",
                                                       "two_resolution_example.py")],
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": root})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert [line.split(":")[0] for line in lines[:3]] == ["epoch 0", "epoch 1", "epoch 2"]
    assert "(8 replayed), images (3, 64, 64)" in lines[2]
    assert lines[3] == ("replay memory: 128 samples in 2560 bytes (indices and seeds: 16 "
                        "bytes a sample)")


def test_a_resolution_schedule_resizes_the_loaded_batches_as_on_the_default_path():
    """The schedules run on this path as on the other: a progressive resolution (16 px,
    then 24, then 32) resizes each yielded batch, uniform and selected alike, and the
    scoring views stay at pool_source.size."""
    phases = [{"name": "warmup", "steps": 2, "selection": "uniform"},
              {"name": "select", "selection": "ranked", "beta": 1.0}]
    cfg = {**two_res(phases, workers=2), "total_steps": 6,
           "resolution": {"type": "progressive", "min": 16, "max": 32, "start": 0.0,
                          "end": 0.99, "increment": 8}}
    model = _Recording()
    sl = wrap(Planted(), cfg, model=model)
    sides = [images.shape[-1] for images, _, _ in sl]
    want = [int(sl._schedules.resolution_at(s)) for s in range(6)]
    assert sides == want and sides[0] == 16 and sides[-1] == 32 and len(set(sides)) == 3
    assert {c[2] for c in model.calls if not c[0] and c[1] > 2} == {SMALL}


def test_workers_follow_the_dataloaders_num_workers_unless_given():
    def workers(num_workers, **spec):
        dl = DataLoader(Planted(), batch_size=BS, shuffle=True, num_workers=num_workers)
        cfg = {"phases": SELECT, "pool_source": {"type": "two_resolution", "size": SMALL,
                                                 **spec}}
        return smartloader.wrap(dl, mean_model(), cfg)._pool_source.workers

    assert workers(3) == 3 and workers(0) == 2 and workers(3, workers=1) == 1
    with pytest.raises(ConfigError, match="pool_source.workers: must be an integer >= 1 or "
                                          "auto, got 'many'"):
        smartloader.load_config({"pool_source": {"type": "two_resolution",
                                                 "workers": "many"}})
    with pytest.raises(ConfigError, match="pool_source.workers"):
        smartloader.load_config({"pool_source": {"type": "two_resolution", "workers": 0}})


_INIT_DIR = {"path": ""}


def _mark_worker(worker_id: int) -> None:
    """A worker_init_fn: leaves a file named after the worker and its process."""
    open(os.path.join(_INIT_DIR["path"], f"w{worker_id}-{os.getpid()}"), "w").close()


def _failing_init(worker_id: int) -> None:
    raise OSError("cannot open the shard file")


def test_the_dataloaders_worker_init_fn_and_context_reach_the_workers(tmp_path):
    """worker_init_fn runs once in every worker process, with its id; an exception in it
    is an error naming it; multiprocessing_context picks how the workers start."""
    _INIT_DIR["path"] = str(tmp_path)
    dl = DataLoader(Planted(), batch_size=BS, shuffle=True, num_workers=2,
                    worker_init_fn=_mark_worker)
    sl = smartloader.wrap(dl, mean_model(), two_res(SELECT, workers=2))
    assert len(list(sl)) == N // (2 * BS)
    pids = sl._pool_source.worker_pids
    assert sorted(os.listdir(tmp_path)) == sorted(f"w{w}-{p}" for w, p in enumerate(pids))
    sl._pool_source.close()
    dl = DataLoader(Planted(), batch_size=BS, num_workers=1, worker_init_fn=_failing_init)
    with pytest.raises(WorkerError, match=r"(?s)worker_init_fn\(0\) failed .*cannot open "
                                          r"the shard file"):
        list(smartloader.wrap(dl, mean_model(), two_res(SELECT, workers=1)))
    dl = DataLoader(Planted(24), batch_size=BS, num_workers=1,
                    multiprocessing_context="spawn")
    sl = smartloader.wrap(dl, mean_model(), two_res(SELECT, workers=1))
    assert [b[2].numel() for b in sl] == [BS, BS]
    assert sl._pool_source._pool._procs[0]._start_method == "spawn"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_pin_memory_pins_the_yielded_batches():
    dl = DataLoader(Planted(), batch_size=BS, shuffle=True, pin_memory=True)
    sl = smartloader.wrap(dl, mean_model(), two_res(SELECT, workers=2))
    assert all(b[0].is_pinned() for b in sl)
