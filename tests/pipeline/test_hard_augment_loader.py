"""HardAugmentLoader: planted hardest pair, structure, model untouched, resume, own RNG."""
from __future__ import annotations

import pytest
import torch

import smartloader
from smartloader import HardAugmentLoader
from smartloader.augment import BatchAugment
from smartloader.errors import StateError
from resume_harness import assert_resumes, assert_same

M = 4
# Per image i (by index in the dataset), the two views pushed apart: the hardest pair.
PLANTED = [(1, 3), (0, 2), (2, 3), (0, 1), (1, 2), (0, 3)]


def _data(n=12, size=16):
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(n, 3, size, size, generator=g) * 255).to(torch.uint8)
    return x, torch.arange(n)


def _batches(x, ids, bs=4):
    return [(x[i:i + bs], ids[i:i + bs]) for i in range(0, len(x), bs)]


def planted_augment(x, generator):
    """Rows are (image, view); view a of the image's planted pair +0.5, view b -0.5, plus a
    little noise from the generator (so the generator is exercised)."""
    v = x + 0.001 * torch.randn(x.shape, generator=generator, device=x.device)
    n = x.shape[0] // M
    for i in range(n):
        a, b = PLANTED[int(planted_augment.ids[i]) % len(PLANTED)]
        v[i * M + a] += 0.5
        v[i * M + b] -= 0.5
    return v


def _model():
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4),
                               torch.nn.Dropout(0.5), torch.nn.AdaptiveAvgPool2d(1),
                               torch.nn.Flatten())


def _identity_model():
    return torch.nn.Sequential(torch.nn.BatchNorm2d(3), torch.nn.AdaptiveAvgPool2d(1),
                               torch.nn.Flatten())


def sq_dist(za, zb):
    return ((za - zb) ** 2).sum(1)


def test_yields_planted_hardest_pair_structure_and_sizes():
    torch.manual_seed(0)
    x, ids = _data()
    model = _identity_model().train()
    hal = HardAugmentLoader(_batches(x, ids), model, views=M, augment=planted_augment,
                            pair_loss=sq_dist, resolution=8)
    assert len(hal) == 3 and hal.stats is None
    seen = 0
    it = iter(hal)
    for raw_x, raw_ids in _batches(x, ids):
        planted_augment.ids = raw_ids
        batch = next(it)
        assert isinstance(batch, tuple) and len(batch) == 2
        (va, vb), got_ids = batch
        assert torch.equal(got_ids, raw_ids)
        assert va.shape == vb.shape == (4, 3, 16, 16) and va.dtype == torch.float32
        base = raw_x.float() / 255
        for j, i in enumerate(raw_ids.tolist()):
            a, b = PLANTED[i % len(PLANTED)]
            assert torch.allclose(va[j], base[j] + 0.5, atol=0.01)   # view a, full res
            assert torch.allclose(vb[j], base[j] - 0.5, atol=0.01)
        s = hal.stats
        assert s.views == M and s.batch_size == 4 and s.step == seen
        assert s.chosen_pair_loss > s.all_pairs_loss > 0 and s.score_time_s >= 0
        seen += 1
    with pytest.raises(StopIteration):
        next(it)
    assert hal.epoch == 1


def test_tensor_and_mapping_batches():
    x, _ = _data(8)
    model = _identity_model()
    out = next(iter(HardAugmentLoader([x], model, pair_loss=sq_dist)))
    assert isinstance(out, tuple) and len(out) == 2 and out[0].shape == (8, 3, 16, 16)
    out = next(iter(HardAugmentLoader([{"img": x, "y": 1}], model, pair_loss=sq_dist,
                                      input_key="img")))
    assert set(out) == {"img", "y"} and out["y"] == 1 and len(out["img"]) == 2
    with pytest.raises(KeyError, match="input_key"):
        next(iter(HardAugmentLoader([{"img": x}], model, pair_loss=sq_dist)))


def test_model_state_bit_identical_after_scoring():
    x, ids = _data()
    model = _model().train()
    model[2].eval()                       # a mixed pattern of training flags is restored
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [mod.training for mod in model.modules()]
    for _ in HardAugmentLoader(_batches(x, ids), model, pair_loss=sq_dist, views=3):
        pass
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert [mod.training for mod in model.modules()] == flags
    assert all(p.grad is None for p in model.parameters())


def _make(seed=3):
    x, ids = _data(24)
    with torch.random.fork_rng():         # the same weights in every run, RNG left alone
        torch.manual_seed(0)
        model = _model()
    return HardAugmentLoader(_batches(x, ids, bs=4), model, views=3, seed=seed,
                             pair_loss=sq_dist, augment=BatchAugment(12, magnitude=7))


def _flat(batch):
    (va, vb), ids = batch
    return va, vb, ids


def _run(hal, steps, epochs=2):
    """Up to ``steps`` batches over ``epochs`` epochs, continuing from hal's epoch."""
    out = []
    for epoch in range(hal.epoch, epochs):
        hal.set_epoch(epoch)
        for b in hal:
            out.append(_flat(b))
            if len(out) == steps:
                return out
    return out


@pytest.mark.parametrize("split", [3, 6, 9])   # mid-epoch, at the epoch's end, N/2 = 6
def test_resume_equals_uninterrupted_run(split):
    run = assert_resumes(_make, 12, split)
    ref = [_flat(batch) for batch, _ in run.full]
    assert len(ref) == 12
    state = run.state
    assert state["position"] == split % 6 or state["position"] == 6
    assert state["step"] == split
    assert not torch.equal(ref[0][0], ref[6][0])         # epochs draw different views
    assert run.resumed_run.stats.step == 11               # the step counter resumed too


def test_global_rng_untouched():
    hal = _make()
    torch.manual_seed(123)
    state = torch.get_rng_state()
    for _ in hal:
        pass
    assert torch.equal(torch.get_rng_state(), state)


def test_state_is_strict():
    hal = _make()
    state = hal.state_dict()
    with pytest.raises(ValueError, match="unknown keys"):
        _make().load_state_dict({**state, "extra": 1})
    with pytest.raises(ValueError, match="missing keys"):
        _make().load_state_dict({k: v for k, v in state.items() if k != "position"})
    with pytest.raises(ValueError, match="state.seed"):
        _make(seed=4).load_state_dict(state)


def _mid_epoch_state():
    hal = _make()
    _run(hal, 2)
    return hal.state_dict()


@pytest.mark.parametrize("key, value, message", [
    ("version", 1, "state.version: saved 1, this loader reads 2"),
    ("views", 4, "state.views: saved 4, this loader has 3"),
    ("resolution", 32, "state.resolution: saved 32, this loader has 64"),
    ("epoch", -1, "state.epoch: must be an integer >= 0, got -1"),
    ("step", "2", "state.step: must be an integer >= 0, got '2' (str)"),
    ("position", 7, "state.position: must be an integer in [0, 6], got 7"),
    ("position", 0, "state.generator: must be None at the start of an epoch"),
    ("generator", None, "state.generator: a state saved mid-epoch (state.position 2) needs"),
    ("generator", torch.zeros(5056, dtype=torch.int64), "state.generator: must be a "
     "torch.Generator state (a 1-D uint8 tensor)"),
    ("generator", torch.zeros(9, dtype=torch.uint8), "state.generator: not a state of a cpu"),
    ("generator_device", None, "state.generator_device: must be a device name, got None"),
    ("generator_device", "tpu9", "state.generator_device: must be a device name, got 'tpu9'"),
])
def test_every_entry_is_checked_and_a_refused_state_changes_nothing(key, value, message):
    hal = _make()
    _run(hal, 8)                                           # epoch 1, position 2
    before = hal.state_dict()
    with pytest.raises(StateError) as info:
        hal.load_state_dict({**_mid_epoch_state(), key: value})
    assert str(info.value).startswith(message), str(info.value)
    assert_same(hal.state_dict(), before)
    hal.load_state_dict(_mid_epoch_state())                # and a good state still loads
    assert hal.state_dict()["position"] == 2 and hal.epoch == 0


@pytest.mark.parametrize("kwargs, match", [
    ({"views": 1}, "views"), ({"views": 2.0}, "views"), ({"resolution": 0}, "resolution"),
    ({"seed": "a"}, "seed"), ({"pair_loss": 3}, "pair_loss"), ({"augment": 3}, "augment"),
])
def test_bad_arguments_name_the_argument(kwargs, match):
    args = {"pair_loss": sq_dist, **kwargs}
    with pytest.raises((ValueError, TypeError), match=match):
        HardAugmentLoader([], _model(), **args)


def test_exported():
    assert "HardAugmentLoader" in smartloader.__all__
