"""The replay: section inside SmartLoader: modes, phases, weights, resume."""
import pytest
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

import smartloader
from smartloader.errors import ConfigError
from helpers import PlantedDataset, scorer_model
from resume_harness import assert_resumes, loader_build, steps_of, train_step


class U8Dataset(Dataset):
    """uint8 NCHW-able images (3x8x8), int64 label, int index."""

    def __init__(self, n=64):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randint(0, 256, (n, 3, 8, 8), generator=g, dtype=torch.uint8)
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return self.x[i], i % 2, i


def u8_model():
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 2))


def u8_loss(out, y):
    return torch.nn.functional.cross_entropy(out, y, reduction="none")


def _cfg(replay, phases=None, **top):
    return {"seed": 3, "pool_factor": 2, "index_key": 2,
            "phases": phases or [{"name": "all", "selection": "uniform"}],
            "replay": replay, **top}


def test_steps_mode_k_replay_batches_after_each_fresh_with_same_structure():
    ds = U8Dataset(64)
    dl = DataLoader(ds, batch_size=8)
    loader = smartloader.wrap(dl, u8_model(), _cfg({"capacity": 32, "k": 2}))
    seen: set = set()
    out = []
    for x, y, idx in loader:
        x2 = x  # the model would see this
        assert x2.dtype == torch.uint8 and x2.shape == (8, 3, 8, 8)
        assert y.dtype == torch.int64 and idx.dtype == torch.int64
        out.append((loader.stats.replayed, idx.tolist()))
        if loader.stats.replayed == 0:
            seen |= set(idx.tolist())
        else:
            assert set(idx.tolist()) <= seen  # replayed samples were seen before
            # the stored target goes with its input (labels are index % 2)
            assert (y == idx % 2).all()
    assert [r for r, _ in out] == [0, 8, 8] * 8
    assert len(out) == len(loader) == 24
    assert seen == set(range(64))


def test_replayed_inputs_are_the_stored_ones_without_reaugment():
    ds = U8Dataset(32)
    loader = smartloader.wrap(DataLoader(ds, batch_size=8), u8_model(),
                              _cfg({"capacity": 32, "k": 1, "reaugment": False}))
    for x, _, idx in loader:
        assert torch.equal(x, ds.x[idx])


def test_reaugment_changes_replayed_inputs_keeps_dtype():
    ds = U8Dataset(32)
    loader = smartloader.wrap(DataLoader(ds, batch_size=8), u8_model(),
                              _cfg({"capacity": 32, "k": 1}))
    changed = 0
    for x, _, idx in loader:
        assert x.dtype == torch.uint8
        if loader.stats.replayed:
            changed += int(not torch.equal(x, ds.x[idx]))
        else:
            assert torch.equal(x, ds.x[idx])
    assert changed > 0


def test_mix_mode_fraction_of_each_batch():
    dl = DataLoader(U8Dataset(64), batch_size=8)
    loader = smartloader.wrap(dl, u8_model(),
                              _cfg({"capacity": 64, "mode": "mix", "fraction": 0.25}))
    counts = []
    for step, (x, y, idx) in enumerate(loader):
        assert x.shape[0] == 8
        counts.append(loader.stats.replayed)
        ids = idx.tolist()
        fresh = 8 - loader.stats.replayed
        assert ids[:fresh] == list(range(8 * step, 8 * step + fresh))
        # the last rows come from memory: samples of earlier wrapped batches (the rows they
        # displaced went into the memory instead)
        assert all(i < 8 * step for i in ids[fresh:])
    assert counts == [0] + [2] * 7
    assert len(loader) == 8


def test_capacity_fraction_from_dataset_size_or_len_times_batch_size():
    dl = DataLoader(PlantedDataset(n=200), batch_size=10)
    loader = smartloader.wrap(dl, scorer_model(), _cfg({"capacity": 0.1}))
    assert loader.replay_memory.capacity == 20

    class NoDataset:
        batch_size = 10

        def __iter__(self):
            return iter(dl)

        def __len__(self):
            return 20

    loader = smartloader.wrap(NoDataset(), scorer_model(), _cfg({"capacity": 0.05}))
    assert loader.replay_memory.capacity == 10

    class NoLen:
        def __iter__(self):
            return iter(dl)

    with pytest.raises(ConfigError, match=r"^replay\.capacity: "):
        smartloader.wrap(NoLen(), scorer_model(), _cfg({"capacity": 0.05}))
    # a number of samples needs no dataset size
    assert smartloader.wrap(NoLen(), scorer_model(),
                            _cfg({"capacity": 7})).replay_memory.capacity == 7


def test_phase_replay_false_turns_replay_off():
    dl = DataLoader(U8Dataset(64), batch_size=8)
    phases = [{"name": "off", "steps": 2, "replay": False},
              {"name": "on", "steps": 9},
              {"name": "cool", "replay": False}]
    loader = smartloader.wrap(dl, u8_model(), _cfg({"capacity": 64, "k": 2}, phases))
    planned = len(loader)
    rows = [(loader.stats.phase, loader.stats.replayed) for _ in loader]
    assert len(rows) == planned == 14
    assert rows[:2] == [("off", 0), ("off", 0)]
    assert [r for _, r in rows[2:11]] == [0, 8, 8] * 3
    assert all(r == 0 for p, r in rows[11:])
    assert len(loader) == 8  # the next epoch lies wholly in "cool": no replay steps
    assert smartloader.load_config(_cfg({"capacity": 4}, phases)).resolve_phases()[0].replay \
        is False


def test_importance_weights_exposed_and_priorities_follow_reported_losses():
    dl = DataLoader(U8Dataset(64), batch_size=8)
    loader = smartloader.wrap(dl, u8_model(), _cfg(
        {"capacity": 64, "k": 1, "priority": {"type": "epr", "alpha": 0.9}}))
    assert loader.replay_weights is None
    replay_w = []
    for x, y, idx in loader:
        w = loader.replay_weights
        assert w.shape == (8,)
        if loader.stats.replayed:
            replay_w.append(w)
            assert w.mean().item() == pytest.approx(1.0, abs=1e-5)
        else:
            assert torch.equal(w, torch.ones(8))
        # low loss for even ids, high for odd: priorities (and weights) must differ
        loader.report_losses(torch.where(idx % 2 == 0, 0.01, 5.0))
    assert any(not torch.allclose(w, torch.ones(8)) for w in replay_w)
    mem = loader.replay_memory
    losses = mem._losses[: len(mem)]
    assert torch.isfinite(losses).all()  # every stored sample got its reported loss


def test_join_pool_lets_memory_samples_compete():
    dl = DataLoader(PlantedDataset(n=64), batch_size=8)
    phases = [{"name": "u", "steps": 2}, {"name": "s", "selection": "ranked"}]
    loader = smartloader.wrap(dl, scorer_model(), _cfg({"capacity": 64, "k": 1,
                                                        "join_pool": True}, phases))
    joined = [loader.stats.replayed for b in loader if loader.stats.phase == "s"]
    assert joined[0::2] and any(0 < r < 8 for r in joined[0::2])  # fresh steps took some


def test_stats_report_memory_bytes():
    dl = DataLoader(U8Dataset(16), batch_size=8)
    loader = smartloader.wrap(dl, u8_model(), _cfg({"capacity": 10}))
    next(iter(loader))
    # 3*8*8 uint8 + int64 target + int64 index + float32 loss per slot
    assert loader.stats.replay_nbytes == loader.replay_memory.nbytes == 10 * (192 + 8 + 8 + 4)


# -- resume ---------------------------------------------------------------------------------
RESUME_CFG = {"seed": 5, "total_steps": 60, "pool_factor": 2, "index_key": 2, "phases": [
    {"name": "warmup", "steps": 7, "selection": "uniform"},
    {"name": "select", "selection": "ranked", "beta": 1.0},
    {"name": "cooldown", "fraction": 0.15, "selection": "uniform", "replay": False}],
    "replay": {"capacity": 0.2, "k": 2, "priority": {"type": "epr"}, "join_pool": True}}


class EpochShuffle(Sampler):
    """A shuffled order that is a function of the epoch (so a run can be resumed)."""

    def __init__(self, n):
        self.n, self.epoch = n, 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __iter__(self):
        g = torch.Generator().manual_seed(100 + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self):
        return self.n


def _data():
    ds = PlantedDataset(n=90, hard_every=5)
    return DataLoader(ds, batch_size=10, sampler=EpochShuffle(len(ds)))


def _step(run, i, batch):
    """The training step (replay-weighted losses, reported back), and what the step says."""
    loader = run[0]
    train_step(run, i, batch)
    return loader.stats.replayed, loader.stats.phase


@pytest.mark.parametrize("mode", ["steps", "mix"])
@pytest.mark.parametrize("cut", [20, 22])  # 20: after a fresh step; 22: between replays
def test_resume_equals_uninterrupted_with_nonempty_memory(cut, mode):
    cfg = dict(RESUME_CFG)
    if mode == "mix":
        cfg["replay"] = {"capacity": 0.2, "mode": "mix", "fraction": 0.3,
                         "priority": {"type": "epr"}}
    run = assert_resumes(loader_build(cfg, _data), 44, cut, _step)
    assert sum(r for r, _ in steps_of(run.full)) > 0
    assert len(run.interrupted[0].replay_memory) > 0


def test_state_is_strict_about_replay():
    dl = DataLoader(U8Dataset(16), batch_size=8)
    with_replay = smartloader.wrap(dl, u8_model(), _cfg({"capacity": 10}))
    state = with_replay.state_dict()
    assert "replay" in state
    bad = dict(state)
    del bad["replay"]
    with pytest.raises(ValueError, match="missing keys \\['replay'\\]"):
        with_replay.load_state_dict(bad)
    bad = dict(state, replay={**state["replay"], "extra": 1})
    with pytest.raises(ValueError, match="state.replay"):
        with_replay.load_state_dict(bad)
    plain = smartloader.wrap(dl, u8_model(), {"phases": [{"name": "u"}]})
    assert plain.state_dict()["replay"] == {}  # the replay stage is a no-op without replay:


# -- config errors --------------------------------------------------------------------------
@pytest.mark.parametrize("cfg, path", [
    ({"phases": [{"name": "a", "replay": True}]}, "phases[0].replay"),
    ({"phases": [{"name": "a", "replay": "yes"}], "replay": {"capacity": 3}}, "phases[0].replay"),
    ({"replay": {"capacity": 0}}, "replay.capacity"),
    ({"replay": {"k": 2}}, "replay.capacity"),
    ({"replay": {"capacity": 4, "mode": "mix", "k": 2}}, "replay.k"),
    ({"replay": {"capacity": 4, "colour": 1}}, "replay"),
    ({"replay": {"capacity": 4, "priority": {"type": "epr", "alpha": 2}}},
     "replay.priority.alpha"),
])
def test_config_errors_name_key_paths(cfg, path):
    with pytest.raises(ConfigError) as err:
        smartloader.load_config(cfg)
    assert str(err.value).startswith(path)


def test_decaying_alpha_needs_total_steps():
    dl = DataLoader(U8Dataset(16), batch_size=8)
    with pytest.raises(ConfigError, match=r"^replay\.priority\.alpha"):
        smartloader.wrap(dl, u8_model(), _cfg({"capacity": 4, "priority": {"type": "epr"}}))


def test_config_round_trip():
    cfg = smartloader.load_config(_cfg({"capacity": 0.1, "mode": "mix"},
                                       [{"name": "a", "steps": 3, "replay": False},
                                        {"name": "b"}]))
    assert smartloader.load_config(cfg.to_dict()) == cfg
    assert cfg.to_dict()["replay"] == {"capacity": 0.1, "mode": "mix"}
