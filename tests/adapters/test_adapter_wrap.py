"""smartloader.wrap over the real FFCV and DALI adapters (real .beton / real CPU pipeline).

Every image is one constant colour that encodes its dataset index (red, green) and whether
it is a planted *hard* sample (blue): :class:`BlueScorer` gives hard samples (blue 40) a
high loss for their label 0 and easy ones (blue 200) a low loss, whatever the crop/resize.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

try:  # import DALI before FFCV/numba run: importing it afterwards in the same CPython 3.11
    import nvidia.dali  # noqa: F401  process has failed with "SystemError: AST constructor
except ImportError:     # recursion depth mismatch" (seen here, in ast.literal_eval)
    pass

import smartloader
from smartloader.errors import ConfigError

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

N = 128


def is_hard(i: int) -> bool:
    return i % 8 == 3


def colour(i: int) -> tuple[int, int, int]:
    return (4 * i) % 256, (7 * i + 11) % 256, 40 if is_hard(i) else 200


class BlueScorer(torch.nn.Module):
    """Logits ``(8 b, -8 b)`` with ``b = mean blue / 255 - 0.5``: label 0 is easy when blue."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(8.0), requires_grad=False)

    def forward(self, x):
        b = x.float()[:, 2].mean((1, 2)) / 255 - 0.5
        return torch.stack([self.scale * b, -self.scale * b], 1)


class Images:
    def __len__(self):
        return N

    def __getitem__(self, i):
        image = np.empty((20 + i % 8, 24 + i % 5 * 2, 3), dtype=np.uint8)
        image[:] = colour(i)
        return image, 0


def check_truth(batch, atol=0.0):
    assert set(batch) == {"image", "label", "index"}
    index, image = batch["index"], batch["image"]
    assert len(set(index.tolist())) == len(index), "a sample appears twice in one batch"
    assert torch.equal(batch["label"], torch.zeros_like(index))
    for i, img in zip(index.tolist(), image):
        want = torch.tensor(colour(i), dtype=torch.float32).view(3, 1, 1)
        assert (img.float() - want).abs().max() <= atol, f"image for index {i} is wrong"


def ranked(total_steps=None, **extra):
    cfg = {"pool_factor": 4, "seed": 0,
           "phases": [{"name": "select", "selection": "ranked", "beta": 3.0}], **extra}
    if total_steps is not None:
        cfg["total_steps"] = total_steps
    return cfg


def uniform(total_steps, **extra):
    return {"total_steps": total_steps,
            "phases": [{"name": "all", "selection": "uniform"}], **extra}


class Spy:
    """Passes an adapter through, recording the image size of every batch it loads."""

    def __init__(self, adapter):
        self.adapter, self.sizes = adapter, []

    capabilities = property(lambda self: self.adapter.capabilities)
    adapter_name = property(lambda self: self.adapter.adapter_name)

    def __len__(self):
        return len(self.adapter)

    def set_epoch(self, epoch):
        self.adapter.set_epoch(epoch)

    def smartloader_attach(self, smart):
        if hasattr(self.adapter, "smartloader_attach"):
            self.adapter.smartloader_attach(smart)

    def __iter__(self):
        for batch in self.adapter:
            self.sizes.append(tuple(batch["image"].shape[-2:]))
            yield batch


# -- FFCV ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def beton(tmp_path_factory):
    pytest.importorskip("ffcv")
    from smartloader.adapters.ffcv import write_beton
    path = tmp_path_factory.mktemp("wrap_ffcv") / "planted.beton"
    write_beton(str(path), Images())
    return str(path)


def ffcv_adapter(beton, **kw):
    from smartloader.adapters.ffcv import FFCVAdapter
    return FFCVAdapter.from_beton(beton, **{"batch_size": 8, "resolution": 16, "seed": 1,
                                            **kw})


def test_ffcv_wrap_selects_hard_samples_and_pool_survives_buffer_reuse(beton):
    # pool_factor 4 with batches_ahead=1: FFCV's ring has 3 slots, so an un-cloned pool of
    # 4 batches would be overwritten before it is scored.
    adapter = ffcv_adapter(beton, batches_ahead=1)
    loader = smartloader.wrap(adapter, BlueScorer(), ranked())
    assert len(adapter) == 16 and len(loader) == 4
    picked = []
    for epoch in range(2):
        for batch in loader:
            assert batch["image"].shape == (8, 3, 16, 16)
            assert batch["image"].dtype == torch.uint8
            check_truth(batch)
            picked += batch["index"].tolist()
    assert len(picked) == 64
    hard = sum(is_hard(i) for i in picked) / len(picked)
    assert hard > 0.25, f"hard fraction {hard:.2f} (uniform would give 0.125)"


def test_ffcv_uniform_wrap_passes_every_sample(beton):
    loader = smartloader.wrap(ffcv_adapter(beton), BlueScorer(), uniform(16))
    seen = []
    for batch in loader:
        check_truth(batch)
        seen += batch["index"].tolist()
    assert sorted(seen) == list(range(N))


def test_ffcv_resolution_follows_an_epoch_boundary_schedule(beton):
    spy = Spy(ffcv_adapter(beton))
    # 16 loader batches per epoch, uniform: 32 steps = 2 epochs; 16 -> 32 px at step 16
    cfg = uniform(32, resolution={"type": "progressive", "min": 16, "max": 32,
                                  "increment": 16})
    loader = smartloader.wrap(spy, BlueScorer(), cfg)
    yielded = []
    for _ in range(2):
        for batch in loader:
            check_truth(batch)
            yielded.append(tuple(batch["image"].shape[-2:]))
    assert spy.sizes == [(16, 16)] * 16 + [(32, 32)] * 16      # loaded at that size
    assert yielded == spy.sizes


def test_ffcv_resolution_with_pools_maps_steps_to_epochs(beton):
    # ranked, pool_factor 4: an epoch of 16 loader batches is 4 steps. 8 steps = 2 epochs,
    # the change at step 4 is an epoch boundary.
    spy = Spy(ffcv_adapter(beton))
    cfg = ranked(8, resolution={"type": "progressive", "min": 16, "max": 24,
                                "increment": 8})
    loader = smartloader.wrap(spy, BlueScorer(), cfg)
    for _ in range(2):
        for batch in loader:
            check_truth(batch)
    assert spy.sizes == [(16, 16)] * 16 + [(24, 24)] * 16


@pytest.mark.parametrize("cfg, step", [
    (uniform(48, resolution={"type": "progressive", "min": 16, "max": 32,
                             "increment": 16}), 24),   # 1.5 epochs of 16 batches
    (ranked(12, resolution={"type": "progressive", "min": 16, "max": 32,
                            "increment": 16}), 6),     # 4 steps per epoch: mid epoch 1
])
def test_ffcv_mid_epoch_schedule_fails_at_wrap(beton, cfg, step):
    with pytest.raises(ConfigError, match=(
            r"^resolution: the ffcv adapter can change resolution only between epochs "
            rf".*within an epoch at step {step};")):
        smartloader.wrap(ffcv_adapter(beton), BlueScorer(), cfg)


# -- DALI ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def files(tmp_path_factory):
    pytest.importorskip("nvidia.dali")
    Image = pytest.importorskip("PIL.Image")
    root = tmp_path_factory.mktemp("wrap_dali")
    out = []
    for i in range(40):
        image, _ = Images()[i]
        path = root / f"{i:03d}.png"
        Image.fromarray(image).save(path)
        out.append(str(path))
    return out


def dali_adapter(files, cfg, batch_size=8, **kw):
    from smartloader.adapters.dali import (DALIAdapter, batches_per_epoch,
                                           build_classification_pipeline, schedule_fns)
    size_fn, mag_fn = schedule_fns(cfg, batches_per_epoch(len(files), batch_size),
                                   default_size=16)
    pipe = build_classification_pipeline(files, [0] * len(files), batch_size, size_fn,
                                         mag_fn, mean=(0.0,) * 3, std=(1.0,) * 3,
                                         num_threads=1, seed=2)
    return DALIAdapter(pipe, labels=[0] * len(files), **kw)


def test_dali_wrap_resolution_follows_schedule_every_iteration(files):
    # 5 loader batches per epoch, pool_factor 4: steps per epoch consume 4 + 1 batches.
    # Use pool_factor 2 so an epoch is steps of 2, 2, 1 batches; 9 steps = 3 epochs.
    cfg = ranked(9, resolution={"type": "progressive", "min": 8, "max": 32, "increment": 8})
    cfg["pool_factor"] = 2
    cfg["phases"][0]["beta"] = 1.0
    spy = Spy(dali_adapter(files, cfg))
    seen_stats = []
    loader = smartloader.wrap(spy, BlueScorer(), cfg,
                              callback=lambda s: seen_stats.append((s.step, s.resolution)))
    res = loader.config.schedules.resolution
    yielded = []
    for _ in range(3):
        for batch in loader:
            check_truth(batch, atol=1e-3)
            yielded.append(tuple(batch["image"].shape[-2:]))
    batch_steps = [0, 0, 1, 1, 2, 3, 3, 4, 4, 5, 6, 6, 7, 7, 8]
    assert spy.sizes == [(res(s), res(s)) for s in batch_steps]
    assert len(set(spy.sizes)) == 4 and spy.sizes[8] != spy.sizes[9]   # step 4 -> 5, mid epoch 1
    assert yielded == [(res(s), res(s)) for s in range(9)]
    assert seen_stats == [(s, res(s)) for s in range(9)]


def test_dali_wrap_selects_hard_samples(files):
    loader = smartloader.wrap(dali_adapter(files, ranked()), BlueScorer(), ranked())
    picked = []
    for _ in range(3):
        for batch in loader:
            check_truth(batch, atol=1e-3)
            picked += batch["index"].tolist()
    # 5 loader batches per epoch: one pool of 4 (selected) + one lone batch (passed through)
    hard = sum(is_hard(i) for i in picked) / len(picked)
    assert hard > 0.2, f"hard fraction {hard:.2f} (uniform would give 0.125)"


def test_dali_declared_epoch_capability_fails_at_wrap(files):
    from smartloader.adapters import Capabilities
    cfg = uniform(10, resolution={"type": "progressive", "min": 8, "max": 16,
                                  "increment": 8})   # 5 batches per epoch: change at step 5
    adapter = dali_adapter(files, cfg, capabilities=Capabilities(resolution="epoch"))
    smartloader.wrap(adapter, BlueScorer(), cfg)          # epoch boundary: fine
    cfg = uniform(14, resolution=cfg["resolution"])      # change at step 7, mid epoch 1
    adapter = dali_adapter(files, cfg, capabilities=Capabilities(resolution="epoch"))
    with pytest.raises(ConfigError, match=r"^resolution: the dali adapter .* within an "
                                          r"epoch at step 7;"):
        smartloader.wrap(adapter, BlueScorer(), cfg)
