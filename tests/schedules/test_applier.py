"""SmartLoader applies the schedules: yielded resolution, scoring resolution, magnitude in
DataLoader workers, the lr scheduler, and resume with a resolution schedule."""
import collections

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

import smartloader
from smartloader.schedules.applier import replace_field
from smartloader.schedules import super_progressive_resolution
from resume_harness import assert_resumes, loader_build, steps_of, train_step

TOTAL = 40
RES = {"type": "super_progressive", "min": 8, "max": 32, "increment": 8, "warmup_steps": 4}
PHASES = [{"name": "warmup", "steps": 4},
          {"name": "select", "selection": "ranked", "beta": 1.0},
          {"name": "cooldown", "fraction": 0.1}]


class Images(Dataset):
    """``n`` images 3x32x32 (uint8 or float in [0, 1]), label, index."""

    def __init__(self, n=64, dtype=torch.float32):
        g = torch.Generator().manual_seed(0)
        x = torch.rand(n, 3, 32, 32, generator=g)
        self.x = (x * 255).round().to(torch.uint8) if dtype == torch.uint8 else x.to(dtype)
        self.y = torch.randint(0, 3, (n,), generator=g)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i], i


class Probe(torch.nn.Module):
    """Any-resolution classifier that records (loader step, input side) of every forward."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.fc = torch.nn.Linear(4, 3)
        self.seen: list = []
        self.loader = None

    def forward(self, x):
        self.seen.append((None if self.loader is None else self.loader.step, x.shape[-1]))
        h = self.conv(x.float()).mean(dim=(2, 3))
        return self.fc(h)


def _run(cfg, dtype=torch.float32, steps=TOTAL):
    model = Probe()
    loader = smartloader.wrap(DataLoader(Images(dtype=dtype), batch_size=4), model, cfg)
    model.loader = loader
    out = []
    while len(out) < steps:
        for images, labels, index in loader:
            out.append((loader.stats, images))
            if len(out) == steps:
                break
    return model, loader, out


@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8])
def test_yielded_resolution_follows_super_progressive(dtype):
    cfg = {"total_steps": TOTAL, "resolution": RES, "phases": PHASES}
    _, loader, out = _run(cfg, dtype)
    expected = {0: 32, 3: 32, 4: 8, 12: 8, 13: 16, 21: 16, 22: 24, 30: 24, 31: 32, 39: 32}
    for step, r in expected.items():
        stats, images = out[step]
        assert stats.step == step and stats.resolution == r
        assert images.shape == (4, 3, r, r) and images.dtype == dtype
    for step, (stats, images) in enumerate(out):  # every step, against the pure function
        r = super_progressive_resolution(step, TOTAL, 8, 32, 4, 8)
        assert images.shape[-1] == r == stats.resolution
    assert {s.phase for s, _ in out} == {"warmup", "select", "cooldown"}
    assert loader.resolution == 32  # step 40: past the end, the last value goes on


def test_scoring_resolution_follows_score_scale():
    cfg = {"total_steps": TOTAL, "resolution": RES, "score_scale": 0.5, "phases": PHASES}
    model, loader, out = _run(cfg)
    scored = [(step, side) for step, side in model.seen if step is not None]
    assert scored, "the select phase scored nothing"
    for step, side in scored:
        r = super_progressive_resolution(step, TOTAL, 8, 32, 4, 8)
        assert side == round(0.5 * r), (step, side, r)
    assert {side for _, side in scored} == {4, 8, 12, 16}  # 0.5 x 8, 16, 24, 32


def test_score_scale_without_resolution_schedule_scales_loaded_size():
    cfg = {"total_steps": 10, "score_scale": 0.25,
           "phases": [{"name": "s", "selection": "ranked"}]}
    model, loader, out = _run(cfg, steps=10)
    assert {side for step, side in model.seen if step is not None} == {8}
    assert all(images.shape[-1] == 32 and s.resolution is None for s, images in out)


def test_fixed_score_resolution_still_works_with_resolution_schedule():
    cfg = {"total_steps": TOTAL, "resolution": RES, "score_resolution": 8, "phases": PHASES}
    model, _, _ = _run(cfg)
    assert {side for step, side in model.seen if step is not None} == {8}


def test_score_scale_and_score_resolution_conflict():
    with pytest.raises(smartloader.ConfigError, match="score_scale, score_resolution"):
        smartloader.load_config({"score_scale": 0.43, "score_resolution": 96})


def test_config_round_trips_schedules():
    cfg = smartloader.load_config({"total_steps": 100, "resolution": 224, "score_scale": 0.43,
                                   "augment": {"type": "linear", "min": 4, "max": 6},
                                   "lr": {"type": "f1_clr", "max_lr": 0.1, "warmup_steps": 5}})
    again = smartloader.load_config(cfg.to_dict())
    assert again == cfg and again.schedules == cfg.schedules
    assert cfg.replace(total_steps=200).schedules.lr.total_steps == 200


def test_schedule_errors_name_key_paths():
    with pytest.raises(smartloader.ConfigError, match=r"^resolution\.min: must be <= max"):
        smartloader.load_config({"total_steps": 10,
                                 "resolution": {"type": "progressive", "min": 9, "max": 8}})
    with pytest.raises(smartloader.ConfigError, match=r"^augment\.type: linear .*total_steps"):
        smartloader.load_config({"augment": {"type": "linear", "min": 4, "max": 6}})


def test_replace_field_keeps_structure():
    Pair = collections.namedtuple("Pair", "image label")
    x, y = torch.zeros(1), torch.ones(1)
    assert replace_field((x, y), (0,), y)[0] is y
    assert replace_field([x, y], (1,), x) == [x, x]
    p = replace_field(Pair(x, y), ("image",), y)
    assert isinstance(p, Pair) and p.image is y and p.label is y
    d = replace_field({"a": {"img": x}, "b": y}, ("a", "img"), y)
    assert d["a"]["img"] is y and d["b"] is y


def test_magnitude_and_lr_scheduler():
    cfg = {"total_steps": 10, "augment": {"type": "linear", "min": 0, "max": 10},
           "phases": [{"name": "u"}],
           "lr": {"type": "f1_clr", "max_lr": 0.1, "warmup_steps": 2}}
    model, loader, out = _run(cfg, steps=10)
    assert [s.magnitude for s, _ in out] == pytest.approx([float(i) for i in range(10)])
    assert loader.magnitude.get() == pytest.approx(9.0)  # set when step 9 began
    opt = torch.optim.SGD(model.parameters(), lr=1.0, momentum=0.9)
    sched = loader.lr_scheduler(opt)
    assert isinstance(sched, torch.optim.lr_scheduler.LRScheduler)
    assert opt.param_groups[0]["lr"] == 0.0  # F1-CLR starts at 0
    default = smartloader.wrap(DataLoader(Images(), batch_size=4), Probe(), {"total_steps": 50})
    assert default.magnitude.get() == 5.0 and default.resolution is None
    with pytest.raises(ValueError, match="no lr"):
        default.lr_scheduler(opt)


class MagnitudeReader(Dataset):
    """A dataset whose transform reads the shared magnitude, as a worker-side augment would."""

    def __init__(self, magnitude, n=64):
        self.magnitude, self.n = magnitude, n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return torch.zeros(1, 2, 2), 0, torch.tensor(self.magnitude.get())


def test_magnitude_reaches_dataloader_workers_mid_epoch():
    total = 32  # one epoch of 32 batches; magnitude rises linearly 0 -> 10 over it
    cfg = {"total_steps": total, "augment": {"type": "linear", "min": 0, "max": 10},
           "phases": [{"name": "u", "selection": "uniform"}]}
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    ds = MagnitudeReader(None)
    dl = DataLoader(ds, batch_size=2, num_workers=2, persistent_workers=True)
    loader = smartloader.wrap(dl, model, cfg)
    ds.magnitude = loader.magnitude  # hand it over before the workers start (first iter)
    seen = []
    for step, (_, _, mags) in enumerate(loader):
        # read live per sample: it may rise between the samples of one batch, never fall
        assert torch.all(mags[1:] >= mags[:-1])
        seen.append(float(mags[0]))
    assert len(seen) == total
    schedule = [10 * s / total for s in range(total)]
    assert seen[0] == 0.0 and seen[-1] > 5.0  # changed mid-epoch, workers kept running
    lag = 2 * 2 + 2  # prefetch_factor x num_workers, plus the batch being built
    for s, m in enumerate(seen):
        assert m <= schedule[s] + 1e-9
        assert m >= schedule[max(0, s - lag)] - 1e-9, (s, m)


# ------------------------------------------------------------------ resume
RESUME_CFG = {"seed": 5, "total_steps": 60, "pool_factor": 3,
              "resolution": {"type": "progressive", "min": 2, "max": 4, "increment": 1},
              "score_scale": 0.5,
              "phases": [{"name": "warmup", "steps": 7, "selection": "uniform"},
                         {"name": "select", "selection": "ranked", "beta": 1.0},
                         {"name": "cooldown", "fraction": 0.15, "selection": "uniform"}]}


def _scheduled_model():
    from helpers import trainable_model
    return trainable_model(torch.nn.AdaptiveAvgPool2d(4))


@pytest.mark.parametrize("cut", [23, 41])
def test_resume_equals_uninterrupted_with_resolution_schedule(cut):
    total = 60
    run = assert_resumes(loader_build(RESUME_CFG, model=_scheduled_model), total, cut,
                         train_step)
    sides = {run.full_run[0].stats.resolution}
    assert [p for p, _ in steps_of(run.resumed)] == [p for p, _ in steps_of(run.full)]
    assert sides == {4}
