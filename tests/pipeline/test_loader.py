import collections

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler

import smartloader
from helpers import DictDataset, PlantedDataset, scorer_model

SELECT_ONLY = {"phases": [{"name": "select", "selection": "ranked", "beta": 1.0}]}


def _loader(ds, bs=16, workers=0, **kw):
    return DataLoader(ds, batch_size=bs, num_workers=workers, **kw)


@pytest.mark.parametrize("workers", [0, 2])
def test_selected_batches_are_harder_than_their_pool(workers):
    ds = PlantedDataset(n=512, hard_every=8)
    sampler = DistributedSampler(ds, num_replicas=1, rank=0, shuffle=True, seed=0)
    loader = smartloader.wrap(_loader(ds, 16, workers, sampler=sampler), scorer_model(),
                              SELECT_ONLY)
    sel_hard = steps = 0
    pool_loss = sel_loss = 0.0
    for epoch in range(3):
        loader.set_epoch(epoch)
        for images, labels, index, hard, names in loader:
            s = loader.stats
            assert s.selection == "ranked" and images.shape == (16, 1, 4, 4)
            pool_loss += s.pool_loss_mean
            sel_loss += s.selected_loss_mean
            # every per-sample field was subset with the same indices
            assert torch.equal(hard, ds.hard[index])
            assert torch.equal(images, ds.images[index])
            assert list(names) == [f"img{i:04d}.png" for i in index.tolist()]
            sel_hard += int(hard.sum())
            steps += 1
    pool_hard = steps * 16 / 8  # the pool holds hard samples at their base rate, 1/8
    assert steps == 3 * 16  # 32 batches per epoch, pools of 2
    assert sel_hard > 1.5 * pool_hard
    assert sel_loss > 1.5 * pool_loss


def test_uniform_phases_pass_batches_through_one_for_one():
    ds = PlantedDataset(n=160)
    cfg = {"total_steps": 30, "phases": [
        {"name": "warmup", "steps": 4, "selection": "uniform"},
        {"name": "select", "selection": "ranked"},
        {"name": "cooldown", "steps": 6, "selection": "uniform"}]}
    plain = list(_loader(ds, 10))
    loader = smartloader.wrap(_loader(ds, 10), scorer_model(), cfg)
    out, phases = [], []
    for epoch in range(4):
        for batch in loader:
            out.append(batch)
            phases.append(loader.stats.phase)
    # epoch 0: 4 uniform steps (batches 0-3), then 12 batches -> 6 pools: steps 0-9
    assert phases[:4] == ["warmup"] * 4 and phases[4:24] == ["select"] * 20
    for got, want in zip(out[:4], plain[:4]):
        assert all(torch.equal(a, b) for a, b in zip(got[:2], want[:2]))
    # epoch 1 selects (steps 10-17); epoch 2 selects 6 pools (18-23), then its last 4
    # batches pass through (24-27) and epoch 3 goes on uniformly
    assert phases[24:30] == ["cooldown"] * 6 and len(out) == 28 + 16
    for got, want in zip(out[24:30], plain[12:16] + plain[0:2]):
        assert all(torch.equal(a, b) for a, b in zip(got[:3], want[:3]))


def test_len_matches_what_iteration_yields():
    ds = PlantedDataset(n=205)  # 13 batches of 16, last one 13 samples
    cfg = {"total_steps": 40, "pool_factor": 3, "phases": [
        {"name": "warmup", "steps": 5, "selection": "uniform"},
        {"name": "select", "selection": "ranked", "beta": 1.0},
        {"name": "cooldown", "fraction": 0.1, "selection": "uniform"}]}
    loader = smartloader.wrap(_loader(ds, 16), scorer_model(), cfg)
    for _ in range(6):
        expected = len(loader)
        assert expected == sum(1 for _ in loader)


def test_short_last_pool_is_neither_dropped_nor_padded():
    ds = PlantedDataset(n=100)  # batches: 6 x 16 + 1 x 4
    loader = smartloader.wrap(_loader(ds, 16), scorer_model(), SELECT_ONLY, pool_factor=4)
    batches = list(loader)
    # pools: [16 x 4] -> 16, [16, 16, 4] -> 36 samples -> select 16
    assert [len(b[0]) for b in batches] == [16, 16]
    assert loader.stats.short_pools == 1 and loader.stats.pool_size == 36
    ds2 = PlantedDataset(n=68)  # 4 x 16 + 1 x 4: the last pool is the lone 4-sample batch
    loader2 = smartloader.wrap(_loader(ds2, 16), scorer_model(), SELECT_ONLY, pool_factor=4)
    batches2 = list(loader2)
    assert [len(b[0]) for b in batches2] == [16, 4]
    assert batches2[1][2].tolist() == [64, 65, 66, 67]  # yielded unchanged, no repeats
    assert loader2.stats.short_pools == 1 and loader2.stats.pool_loss_mean is None


def test_dict_batches_nested_fields_and_dtypes():
    ds = DictDataset(n=128)
    loader = smartloader.wrap(_loader(ds, 8), scorer_model(), SELECT_ONLY)
    plain = next(iter(_loader(ds, 8)))
    n = 0
    for batch in loader:
        assert set(batch) == {"image", "label", "meta"} and set(batch["meta"]) == set(plain["meta"])
        assert batch["image"].dtype == plain["image"].dtype
        assert batch["label"].dtype == torch.int64 and batch["image"].shape[0] == 8
        idx = batch["meta"]["index"]
        assert torch.equal(batch["meta"]["hard"], ds.hard[idx])
        assert list(batch["meta"]["name"]) == [f"img{i:04d}.png" for i in idx.tolist()]
        n += 1
    assert n == 8


def test_custom_keys_namedtuple_numpy_and_constant_fields():
    Batch = collections.namedtuple("Batch", "meta x y")

    class Gen:
        """A re-iterable generator-based loader with non-default field positions."""

        def __iter__(self):
            ds = PlantedDataset(n=64)
            for s in range(0, 64, 8):
                idx = np.arange(s, s + 8)
                yield Batch(meta={"idx": idx, "tag": "train", "scale": torch.tensor(2.0)},
                            x=ds.images[s:s + 8].to(torch.float64), y=ds.labels[s:s + 8])

    model = scorer_model().double()
    loader = smartloader.wrap(Gen(), model, SELECT_ONLY, input_key=1, target_key="y")
    assert loader.batch_size is None
    out = list(loader)
    assert loader.batch_size == 8 and len(out) == 4
    for b in out:
        assert isinstance(b, Batch) and b.x.dtype == torch.float64
        assert isinstance(b.meta["idx"], np.ndarray) and b.meta["idx"].shape == (8,)
        assert b.meta["tag"] == "train" and float(b.meta["scale"]) == 2.0
        assert torch.equal(b.x.float(), PlantedDataset(n=64).images[b.meta["idx"]])


def test_missing_field_and_one_shot_iterator_errors():
    ds = DictDataset(n=32)
    loader = smartloader.wrap(_loader(ds, 8), scorer_model(), SELECT_ONLY, input_key="img")
    with pytest.raises(KeyError, match="input_key"):
        next(iter(loader))
    with pytest.raises(TypeError, match="one-shot iterator"):
        smartloader.wrap((b for b in _loader(ds, 8)), scorer_model())


def test_stats_and_callback():
    seen = []
    ds = PlantedDataset(n=64)
    loader = smartloader.wrap(_loader(ds, 8), scorer_model(), SELECT_ONLY,
                              callback=seen.append)
    assert loader.stats is None
    list(loader)
    assert [s.step for s in seen] == [0, 1, 2, 3]
    s = seen[-1]
    assert s.pool_size == 16 and s.batch_size == 8 and s.phase == "select"
    assert isinstance(s.pool_loss_mean, float) and s.score_time_s > 0 and s.select_time_s > 0
    assert s.overhead_s == pytest.approx(s.pool_time_s + s.score_time_s + s.select_time_s)
    assert s.uniform_fallbacks == 0


def test_uniform_fallback_on_nan_scores():
    ds = PlantedDataset(n=64)

    def nan_loss(out, y):
        loss = torch.nn.functional.cross_entropy(out, y, reduction="none")
        return loss if out.shape[0] <= 2 else loss * float("nan")  # the probe passes

    loader = smartloader.wrap(_loader(ds, 8), scorer_model(), SELECT_ONLY, loss_fn=nan_loss)
    with pytest.warns(RuntimeWarning, match="NaN or infinite"):
        out = list(loader)
    assert len(out) == 4 and all(b[0].shape[0] == 8 for b in out)
    assert all(len(set(b[2].tolist())) == 8 for b in out)
    assert loader.stats.uniform_fallbacks == 4


def test_bad_loss_fn_fails_at_first_batch_even_in_warmup():
    ds = PlantedDataset(n=64)
    cfg = {"total_steps": 100, "phases": [{"name": "warmup", "steps": 50},
                                          {"name": "select", "selection": "ranked"}]}
    loader = smartloader.wrap(_loader(ds, 8), scorer_model(), cfg,
                              loss_fn=torch.nn.CrossEntropyLoss())  # reduction='mean'
    with pytest.raises(ValueError, match=r"one loss per sample.*reduction='none'"):
        next(iter(loader))


def test_score_resolution_downsamples_for_scoring_only():
    shapes = []

    class Probe(torch.nn.Module):
        def forward(self, x):
            shapes.append(tuple(x.shape[-2:]))
            return torch.stack([x.mean((1, 2, 3)), -x.mean((1, 2, 3))], 1)

    images = torch.rand(32, 3, 24, 32)
    data = [(images[i:i + 8], torch.zeros(8, dtype=torch.int64)) for i in range(0, 32, 8)]
    loader = smartloader.wrap(data, Probe(), SELECT_ONLY, score_resolution=12)
    out = list(loader)
    assert shapes[0] == (12, 16) and set(shapes[1:]) == {(12, 16)}  # probe + 2 pools
    assert all(b[0].shape == (8, 3, 24, 32) for b in out)


def test_global_rng_untouched_and_phase_logging(caplog):
    ds = PlantedDataset(n=64)
    data = [(ds.images[i:i + 8], ds.labels[i:i + 8]) for i in range(0, 64, 8)]  # a plain list: no DataLoader seeding
    cfg = {"total_steps": 4, "phases": [{"name": "warmup", "steps": 2},
                                        {"name": "select", "selection": "ranked"}]}
    loader = smartloader.wrap(data, scorer_model(), cfg)
    before = torch.random.get_rng_state()
    with caplog.at_level("INFO", logger="smartloader"):
        list(loader)
        list(loader)
    assert torch.equal(before, torch.random.get_rng_state())
    text = caplog.text
    assert "phase 'warmup'" in text and "phase 'select'" in text
    assert "past total_steps 4" in text
