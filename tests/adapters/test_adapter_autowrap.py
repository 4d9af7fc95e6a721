"""smartloader.wrap recognises a raw FFCV Loader and a raw DALI iterator and adapts them.

Real components: a .beton written in tmp_path, a real CPU DALI pipeline over PNG files. The
planted data and the scorer come from test_adapter_wrap.py.
"""
from __future__ import annotations

import pytest
import torch

try:  # DALI before FFCV/numba (see test_adapter_wrap.py)
    import nvidia.dali  # noqa: F401
except ImportError:
    pass

import smartloader
from test_adapter_wrap import (BlueScorer, beton, check_truth, colour, files,  # noqa: F401
                               is_hard, ranked)

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def _raw_ffcv(beton, **kw):
    from smartloader.adapters.ffcv import FFCVAdapter
    return FFCVAdapter.from_beton(beton, batch_size=8, resolution=16, seed=1, **kw).loader


def test_raw_ffcv_loader_gets_its_adapter_and_pools_survive_buffer_reuse(beton):
    from ffcv.loader import Loader
    raw = _raw_ffcv(beton, batches_ahead=1)   # a ring of 3 slots, pools of 4 batches
    assert isinstance(raw, Loader)
    loader = smartloader.wrap(raw, BlueScorer(), ranked())   # the one line
    assert type(loader.loader).__name__ == "FFCVAdapter" and loader.loader.loader is raw
    picked = []
    for _ in range(2):
        for batch in loader:
            check_truth(batch)   # every image matches its index: nothing was overwritten
            picked += batch["index"].tolist()
    assert len(picked) == 64 and sum(map(is_hard, picked)) / 64 > 0.25


def test_smartloader_refuses_a_raw_ffcv_loader(beton):
    with pytest.raises(TypeError, match="needs its adapter .* use smartloader.wrap"):
        smartloader.SmartLoader(_raw_ffcv(beton), BlueScorer(), ranked())


def _pipeline(files):
    from smartloader.adapters.dali import build_classification_pipeline
    return build_classification_pipeline(files, [0] * len(files), 8, lambda b, e: 16,
                                         mean=(0.0,) * 3, std=(1.0,) * 3, num_threads=1,
                                         seed=2)


def test_raw_dali_iterator_is_iterated_once_per_epoch(files):
    from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy
    it = DALIGenericIterator([_pipeline(files)], ["data", "label"], reader_name="Reader",
                             last_batch_policy=LastBatchPolicy.PARTIAL, auto_reset=True)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 40))
    loader = smartloader.wrap(it, model, ranked())   # the one line
    assert type(loader.loader).__name__ == "DALIEpochs"
    for epoch in range(2):   # 5 batches: one pool of 4 selected, a lone one passed through
        batches = list(loader)
        assert len(batches) == len(loader) == 2
        first = batches[0]
        assert set(first) == {"data", "label"} and first["data"].shape == (8, 3, 16, 16)
        for img, i in zip(first["data"], first["label"].reshape(-1).tolist()):
            want = torch.tensor(colour(i), dtype=torch.float32).view(3, 1, 1)
            assert (img - want).abs().max() <= 1e-3
    assert loader._keys == (("data",), ("label",)) and loader.stats.batch_size == 8


def test_a_dali_pipeline_is_an_error_naming_the_adapter(files):
    with pytest.raises(TypeError, match="DALIAdapter\\(pipeline, labels=...\\)"):
        smartloader.wrap(_pipeline(files), BlueScorer(), ranked())
