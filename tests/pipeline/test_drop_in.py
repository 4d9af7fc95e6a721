"""One line on real training-script patterns: each test adds only ``smartloader.wrap(...)``.

The patterns are the ones public training scripts use (written here, not copied): a loop that
reads ``loader.dataset`` and ``loader.sampler``; a GPU-resident loader class that holds its
tensors, has ``normalize()``, attributes set from outside, a generator ``__iter__`` and its
own epoch counter; models with a fixed-size ``Linear`` after flatten and one that pools to
1x1 after three 2x poolings; Hugging Face style dict batches and dict outputs; ``(index, x,
y)`` tuples.
"""
from __future__ import annotations

import copy
import math
import pickle

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

import smartloader
from smartloader.errors import BatchError, ProbeError
from smartloader.pipeline.loader import OWN_NAMES

SELECT = {"phases": [{"name": "select", "selection": "ranked"}]}


# -- models as people write them ---------------------------------------------------------------
class FixedHeadNet(nn.Module):
    """Two 3x3 convs, a 2x pool, flatten, then a Linear sized for 12x12 inputs only."""

    def __init__(self, side: int = 12, classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3)
        self.conv2 = nn.Conv2d(4, 8, 3)
        self.fc1 = nn.Linear(8 * ((side - 4) // 2) ** 2, 16)
        self.fc2 = nn.Linear(16, classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv2(F.relu(self.conv1(x)))), 2)
        return F.log_softmax(self.fc2(F.relu(self.fc1(torch.flatten(x, 1)))), dim=1)


class ThreePoolNet(nn.Module):
    """Three 2x poolings, then a 3x3 max-pool to 1x1: needs at least 24 px."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.MaxPool2d(2), nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1), nn.MaxPool2d(2), nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1), nn.MaxPool2d(2), nn.ReLU(), nn.MaxPool2d(3))
        self.head = nn.Linear(8, classes)

    def forward(self, x):
        return self.head(self.body(x).flatten(1))


class DictOutputNet(nn.Module):
    """Takes ``pixel_values``, returns ``{"logits": ...}`` (Hugging Face style)."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))

    def forward(self, pixel_values):
        return {"logits": self.net(pixel_values), "hidden": None}


# -- a GPU-resident loader in the speedrun style --------------------------------------------
class ResidentLoader:
    """Holds its tensors, normalizes on the fly, counts its own epochs."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int):
        self.images, self.labels = images, labels
        self.batch_size = batch_size
        self.epoch = 0
        self.mean = self.std = None

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        if self.mean is None:
            return x.float() / 255
        return (x.float() / 255 - self.mean) / self.std

    def __len__(self) -> int:
        return math.ceil(len(self.images) / self.batch_size)

    def __iter__(self):
        g = torch.Generator().manual_seed(self.epoch)
        self.epoch += 1
        order = torch.randperm(len(self.images), generator=g)
        for i in range(len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            yield self.normalize(self.images[idx]), self.labels[idx]


def _sgd_steps(loader, model, steps: int, key=lambda b: (b[0], b[1]), out=lambda o: o):
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    done = 0
    while done < steps:
        for batch in loader:
            x, y = key(batch)
            loss = F.cross_entropy(out(model(x)), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            done += 1
            if done == steps:
                break
    return done


def test_loop_reads_dataset_and_sampler():
    g = torch.Generator().manual_seed(0)
    ds = TensorDataset(torch.randn(96, 1, 12, 12, generator=g), torch.randint(0, 10, (96,)))
    train_loader = DataLoader(ds, batch_size=16, shuffle=True)
    model = FixedHeadNet()
    train_loader = smartloader.wrap(train_loader, model, SELECT)   # the one added line
    seen = 0
    for batch_idx, (data, target) in enumerate(train_loader):
        seen += len(data)
        assert batch_idx * len(data) <= len(train_loader.dataset)
    assert len(train_loader.dataset) == 96
    assert isinstance(train_loader.sampler, torch.utils.data.RandomSampler)
    assert seen == 96 // 2 and train_loader.stats.selection == "ranked"


def test_resident_loader_attributes_methods_and_epochs():
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (64,), generator=g)
    train_loader = ResidentLoader(images, labels, batch_size=8)
    model = ThreePoolNet()
    train_loader = smartloader.wrap(train_loader, model, SELECT)   # the one added line
    # what the script does with its loader, unchanged
    stats = train_loader.normalize(train_loader.images[:32])
    train_loader.mean = stats.mean((0, 2, 3), keepdim=True)
    train_loader.std = stats.std((0, 2, 3), keepdim=True)
    train_loader.labels = (train_loader.labels + 1) % 10   # relabel from outside
    assert train_loader.loader.mean is train_loader.mean
    assert torch.equal(train_loader.loader.labels, (labels + 1) % 10)
    assert _sgd_steps(train_loader, model, 8) == 8
    # both count epochs; SmartLoader's own ``epoch`` wins (its second is still in progress)
    assert train_loader.loader.epoch == 2 and train_loader.epoch == 1
    assert train_loader.batch_size == 8 and len(train_loader) == 4


def test_index_first_tuples_never_feed_the_index():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(64, 3, 8, 8, generator=g)
    y = torch.randint(0, 4, (64,), generator=g)
    batches = [(torch.arange(i, i + 8), x[i:i + 8], y[i:i + 8]) for i in range(0, 64, 8)]
    model = nn.Sequential(nn.Flatten(), nn.Linear(192, 4))
    loader = smartloader.wrap(batches, model, SELECT)   # the one added line
    out = list(loader)
    assert len(out) == 4
    for index, xb, yb in out:
        assert index.dtype == torch.int64 and torch.equal(xb, x[index]) and torch.equal(yb, y[index])
    assert loader._keys == ((1,), (2,))


def test_dict_batches_and_dict_outputs():
    g = torch.Generator().manual_seed(3)
    data = [{"pixel_values": torch.randn(8, 3, 8, 8, generator=g),
             "labels": torch.randint(0, 4, (8,), generator=g), "idx": torch.arange(i, i + 8)}
            for i in range(0, 64, 8)]
    model = DictOutputNet()
    loader = smartloader.wrap(data, model, SELECT)   # the one added line
    n = _sgd_steps(loader, model, 4, key=lambda b: (b["pixel_values"], b["labels"]),
                   out=lambda o: o["logits"])
    assert n == 4 and loader.stats.scored_by == "forward"
    assert loader._keys == (("pixel_values",), ("labels",))


def test_object_with_logits_output():
    class Out:
        def __init__(self, logits):
            self.logits = logits

    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    wrapped_model = type("M", (nn.Module,), {
        "__init__": lambda self: (nn.Module.__init__(self), setattr(self, "m", model))[0],
        "forward": lambda self, x: Out(self.m(x))})()
    batches = [(torch.randn(4, 3, 2, 2), torch.randint(0, 3, (4,))) for _ in range(4)]
    out = list(smartloader.wrap(batches, wrapped_model, SELECT))
    assert len(out) == 2


def test_ambiguous_batch_lists_the_fields():
    batches = [(torch.arange(8), torch.randn(8, 3, 4, 4), torch.randn(8, 3, 4, 4))] * 2
    loader = smartloader.wrap(batches, nn.Flatten(), SELECT)
    with pytest.raises(BatchError) as err:
        next(iter(loader))
    msg = str(err.value)
    assert "fields [1, 2] are all image-shaped" in msg and "torch.float32 shape (8, 3, 4, 4)" in msg
    assert "[0] Tensor torch.int64 shape (8,)" in msg and "set input_key" in msg


def test_model_that_cannot_take_the_input_names_the_field():
    batches = [(torch.randint(0, 5, (8, 6)), torch.randint(0, 2, (8,)))] * 2  # int input
    loader = smartloader.wrap(batches, nn.Linear(6, 2), SELECT)
    with pytest.raises(ProbeError) as err:
        next(iter(loader))
    msg = str(err.value)
    assert "input field [0] (torch.int64, shape (8, 6))" in msg and "set input_key" in msg


@pytest.mark.parametrize("output, fragment", [
    (lambda x: torch.zeros(x.shape[0]), "logits of shape (batch, classes), the model returned shape (2,)"),
    (lambda x: {"a": torch.zeros(x.shape[0], 2), "b": torch.zeros(1)}, "a mapping with keys ['a', 'b'] and no 'logits'"),
    (lambda x: "text", "model output: str holds no logits tensor"),
])
def test_outputs_the_default_loss_cannot_use_fail_at_the_first_batch(output, fragment):
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.p = nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return output(x)

    batches = [(torch.randn(8, 4), torch.randint(0, 2, (8,)))] * 2
    with pytest.raises(TypeError) as err:
        next(iter(smartloader.wrap(batches, M(), SELECT)))
    assert fragment in str(err.value)


def test_attribute_errors_name_both_and_own_names_win():
    dl = DataLoader(TensorDataset(torch.randn(16, 4), torch.zeros(16, dtype=torch.long)),
                    batch_size=4)
    loader = smartloader.wrap(dl, nn.Linear(4, 2), SELECT)
    with pytest.raises(AttributeError, match="neither SmartLoader nor the wrapped DataLoader "
                                             "has an attribute 'nope'"):
        loader.nope
    with pytest.raises(AttributeError, match="loader.loader.epoch = "):
        loader.epoch = 3
    loader.custom_flag = True
    assert dl.custom_flag is True and loader.custom_flag is True
    assert "custom_flag" not in vars(loader)
    assert "set_epoch" in smartloader.SmartLoader.__dict__ and "loader" in OWN_NAMES


def test_pickles_and_copies_mid_epoch():
    g = torch.Generator().manual_seed(4)
    ds = TensorDataset(torch.randn(128, 3, 4, 4, generator=g), torch.randint(0, 3, (128,)))
    model = nn.Sequential(nn.Flatten(), nn.Linear(48, 3))
    loader = smartloader.wrap(DataLoader(ds, batch_size=8), model, SELECT)
    it = iter(loader)
    for _ in range(3):
        next(it)
    clone = pickle.loads(pickle.dumps(loader))
    same = copy.deepcopy(loader)
    rest = [b[0] for b in it]
    assert len(rest) == 5
    for other in (clone, same):
        assert [torch.equal(a, b[0]) for a, b in zip(rest, other)] == [True] * 5
        assert isinstance(other.loader, DataLoader) and other.step == 8


def test_uniform_phase_passes_the_wrapped_batch_through():
    batches = [(torch.randn(4, 2), torch.zeros(4, dtype=torch.long)) for _ in range(3)]
    loader = smartloader.wrap(batches, nn.Linear(2, 2), {"phases": [{"name": "u"}]})
    assert all(a is b for a, b in zip(loader, batches))


# -- score_resolution: auto (the default) ---------------------------------------------------
def _images(n, c, side, classes=10, seed=5):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, side, side, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    return [(x[i:i + 8], y[i:i + 8]) for i in range(0, n, 8)]


def test_auto_steps_up_to_full_size_for_a_fixed_linear_head(caplog):
    loader = smartloader.wrap(_images(32, 1, 12), FixedHeadNet(), SELECT)
    assert loader.config.score_resolution == "auto"   # the default
    with caplog.at_level("INFO", logger="smartloader"):
        out = list(loader)
    assert len(out) == 2 and loader._handle.auto_sizes == {12: None}
    msg = [r.getMessage() for r in caplog.records if "score_resolution auto" in r.message]
    assert len(msg) == 1 and "the loaded size (12 px): the model failed at 6 px, 8 px, 9 px, " \
        "11 px" in msg[0] and "mat1 and mat2 shapes cannot be multiplied" in msg[0]


def test_auto_takes_the_smallest_size_a_three_pool_model_takes():
    loader = smartloader.wrap(_images(32, 3, 32), ThreePoolNet(), SELECT)
    list(loader)
    assert loader._handle.auto_sizes == {32: 24}   # 16 and 20 px pool below the 3x3 kernel


def test_auto_halves_a_model_that_takes_any_size(caplog):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(4, 10))
    seen = []
    model.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[-1]))
    with caplog.at_level("INFO", logger="smartloader"):
        list(smartloader.wrap(_images(32, 3, 32), model, SELECT))
    assert seen[0] == 16 and set(seen[1:]) == {16}   # probe, then every pool at 16 px
    assert any("scoring at 16 px for inputs of 32 px" in r.getMessage() for r in caplog.records)


def test_auto_under_a_resolution_schedule_halves_each_stage():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(4, 10))
    cfg = {"total_steps": 8, "phases": [{"name": "select", "selection": "ranked"}],
           "resolution": {"type": "progressive", "min": 16, "max": 32, "increment": 16}}
    loader = smartloader.wrap(_images(128, 3, 32), model, cfg)
    shapes = [b[0].shape[-1] for b in loader]
    assert shapes == [16] * 4 + [32] * 4
    assert loader._handle.auto_sizes == {16: 8, 32: 16}


def test_an_explicit_size_the_model_cannot_take_names_score_resolution():
    loader = smartloader.wrap(_images(32, 1, 12), FixedHeadNet(), {**SELECT, "score_resolution": 6})
    with pytest.raises(smartloader.ConfigError) as err:
        next(iter(loader))
    msg = str(err.value)
    assert msg.startswith("score_resolution: the model cannot score inputs resized to 6 px")
    assert "mat1 and mat2 shapes cannot be multiplied" in msg and "score_resolution: auto" in msg


def test_auto_leaves_non_image_inputs_as_they_are():
    batches = [(torch.randn(8, 5), torch.randint(0, 3, (8,))) for _ in range(4)]
    loader = smartloader.wrap(batches, nn.Linear(5, 3), SELECT)
    assert len(list(loader)) == 2 and loader._handle.auto_sizes == {}
