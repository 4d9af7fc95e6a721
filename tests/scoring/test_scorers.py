"""Scorers: low-res marker, per-sample history, IMPON proxy regressor."""
from __future__ import annotations

import pytest
import torch

from smartloader.errors import ConfigError, StateError
from smartloader.scoring.scorers import (HistoryScorer, LowResLossScorer, ProxyScorer, Scorer,
                                         build_scorer, model_weight_norm, per_sample_features)
from resume_harness import assert_resumes, assert_same


def test_low_res_marker_always_asks_for_the_forward():
    s = build_scorer({"type": "low_res_loss"}, "scorer")
    assert isinstance(s, LowResLossScorer) and isinstance(s, Scorer)
    assert all(s.score({"x": torch.zeros(2, 3)}, None, t) is None for t in range(5))
    assert s.state_dict() == {}
    with pytest.raises(ValueError):
        s.load_state_dict({"a": 1})


def test_history_defaults_ages_and_expiry():
    h = HistoryScorer(default="max", max_age=5)
    ids = torch.tensor([0, 1, 2, 3])
    assert h.score({}, ids, step=0).tolist() == [0.0] * 4   # nothing known yet
    h.observe(torch.tensor([1, 2]), torch.tensor([0.5, 2.0]))
    assert h.score({}, ids, step=3).tolist() == [2.0, 0.5, 2.0, 2.0]  # unseen get the max
    assert h.ages(ids).tolist() == [-1, 3, 3, -1]
    h.observe(torch.tensor([3]), torch.tensor([1.0]))            # stamped at step 3
    assert h.score({}, ids, step=6).tolist() == [1.0, 1.0, 1.0, 1.0]  # 1, 2 expired (age 6)
    assert h.ages(ids).tolist() == [-1, 6, 6, 3]


def test_history_mean_and_number_defaults_and_nan():
    h = build_scorer({"type": "history", "default": "mean"})
    h.observe(torch.tensor([5, 6]), torch.tensor([1.0, 3.0]))
    assert h.score({}, torch.tensor([5, 7]), 1).tolist() == [1.0, 2.0]
    h.observe(torch.tensor([5]), torch.tensor([float("nan")]))   # ignored
    assert h.score({}, torch.tensor([5]), 2).tolist() == [1.0]
    h2 = build_scorer({"type": "history", "default": 9.5})
    assert h2.score({}, torch.tensor([0]), 0).tolist() == [9.5]


def test_history_needs_ids_and_says_so():
    h = HistoryScorer()
    with pytest.raises(ValueError, match=r"sample_ids=None \(pool fields: \['x', 'y'\]\)"):
        h.score({"x": torch.zeros(2, 3), "y": torch.zeros(2)}, None, 0)
    with pytest.raises(ValueError, match="sample_ids=None"):
        h.observe(None, torch.zeros(2))


def test_history_resumes_exactly():
    a = HistoryScorer()
    a.score({}, torch.tensor([0, 1]), 4)
    a.observe(torch.tensor([0, 1]), torch.tensor([0.3, 0.7]))
    b = HistoryScorer()
    b.load_state_dict(a.state_dict())
    ids = torch.tensor([1, 0, 9])
    assert b.score({}, ids, 10).tolist() == a.score({}, ids, 10).tolist()
    assert b.ages(ids).tolist() == [6, 6, -1]
    with pytest.raises(ValueError, match="missing keys"):
        b.load_state_dict({"loss": torch.zeros(1)})


def test_per_sample_features_exact():
    x = torch.tensor([[[0.0, 2.0], [4.0, 6.0]], [[1.0, 1.0], [1.0, 1.0]]])
    f = per_sample_features(x, ["mean", "std", "min", "max", "abs_mean", "edge"])
    assert f[0].tolist() == pytest.approx([3.0, 5.0 ** 0.5, 0.0, 6.0, 3.0, 2.0])
    assert f[1].tolist() == pytest.approx([1.0, 0.0, 1.0, 1.0, 1.0, 0.0])
    with pytest.raises(ValueError, match="unknown feature"):
        per_sample_features(x, ["median"])


def test_model_weight_norm_exact():
    lin = torch.nn.Linear(2, 1)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[3.0, 0.0]]))
        lin.bias.fill_(4.0)
    assert model_weight_norm(lin) == pytest.approx(5.0)


def _brightness_pool(g, n=64):
    """Images whose true loss grows with their brightness, plus noise."""
    brightness = torch.rand(n, 1, 1, 1, generator=g)
    x = brightness + 0.1 * torch.randn(n, 3, 8, 8, generator=g)
    return x, brightness.reshape(n)


def _spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    ra = a.argsort().argsort().double()
    rb = b.argsort().argsort().double()
    return float(torch.corrcoef(torch.stack([ra, rb]))[0, 1])


def test_proxy_predictions_track_true_losses():
    g = torch.Generator().manual_seed(0)
    proxy = build_scorer({"type": "proxy", "features": ["mean", "std", "edge"],
                          "lr": 0.01, "refresh_every": 10, "bank": 200})
    correlations, forwards = [], 0
    for step in range(300):
        x, bright = _brightness_pool(g)
        level = 2.0 * (1.0 - step / 400)                   # the loss level falls over training
        losses = level * (0.2 + bright) + 0.05 * torch.randn(64, generator=g)
        proxy.set_context(10.0 + step / 100)               # weight norm grows
        ids = torch.arange(64) + 64 * step
        scores = proxy.score({"x": x, "y": torch.zeros(64, dtype=torch.long)}, ids, step)
        if scores is None:
            forwards += 1
            proxy.observe(ids, losses)                     # the loader's scoring pass
        else:
            correlations.append(_spearman(scores, losses))
            top = scores.topk(32).indices                  # trained samples report losses
            proxy.observe(ids[top], losses[top])
    assert forwards == 30                                  # only every 10th step runs the model
    assert sum(correlations[-50:]) / 50 > 0.5


def test_proxy_refresh_reset_and_state():
    g = torch.Generator().manual_seed(1)
    p = ProxyScorer(["mean"], lr=0.1, refresh_every=3, bank=16)
    x, bright = _brightness_pool(g, 8)
    fields = {"img": x}
    assert p.score(fields, None, 1) is None                # nothing fitted yet
    p.observe(None, bright)                                # whole pool, by position
    assert p.score(fields, None, 2) is not None
    assert p.score(fields, None, 3) is None                # refresh step
    p.observe(None, bright)
    q = ProxyScorer(["mean"], lr=0.1, refresh_every=3, bank=16)
    q.load_state_dict(p.state_dict())
    assert torch.equal(q.score(fields, None, 4), p.score(fields, None, 4))
    p.reset_epoch(1)
    assert p.score(fields, None, 4) is None                # IMPON's per-epoch reset
    with pytest.raises(ValueError, match="features or bank changed"):
        ProxyScorer(["mean", "std"], bank=16).load_state_dict(q.state_dict())


def test_proxy_observe_subset_needs_ids_or_features():
    g = torch.Generator().manual_seed(2)
    p = ProxyScorer(["mean"], bank=8)
    x, bright = _brightness_pool(g, 6)
    p.score({"x": x}, None, 0)
    with pytest.raises(ValueError, match="pass their fields as features="):
        p.observe(None, bright[:2])
    p.observe(None, bright[:2], features={"x": x[:2]})
    p.score({"x": x}, torch.arange(6) + 100, 0)
    p.observe(torch.tensor([103, 101]), bright[[3, 1]])
    assert p.state_dict()["filled"] == 4
    assert torch.equal(p.state_dict()["bank_loss"][2:4], bright[[3, 1]])


@pytest.mark.parametrize("mapping, message", [
    ({"type": "proxy", "lr": 0}, "s.scorer.lr: must be > 0"),
    ({"type": "proxy", "features": []}, "s.scorer.features: must name at least one"),
    ({"type": "proxy", "refresh_every": 0}, "s.scorer.refresh_every: must be >= 1"),
    ({"type": "history", "default": "min"}, "s.scorer.default: must be one of max, mean"),
    ({"type": "history", "max_age": -1}, "s.scorer.max_age: must be >= 0"),
    ({"type": "low_res_loss", "resolution": 96}, "s.scorer.resolution: unknown key"),
    ({"type": "forward"}, "s.scorer.type: must be one of"),
])
def test_build_scorer_errors_name_the_key(mapping, message):
    with pytest.raises(ConfigError) as err:
        build_scorer(mapping, "s.scorer")
    assert str(err.value).startswith(message)


# -- state ----------------------------------------------------------------------------------
def _history_step(h, step, _):
    ids = (torch.arange(6) * (step + 1)) % 11
    scores = h.score({}, ids, step)
    h.observe(ids[:3], torch.cos(ids[:3].float() + step))
    return scores, h.ages(ids)


def test_history_table_resumes_exactly_through_the_harness():
    run = assert_resumes(lambda: HistoryScorer("mean", max_age=4), 12, 5, _history_step)
    assert run.state["loss"].numel() >= 11


def _proxy_step(p, step, _):
    g = torch.Generator().manual_seed(step)
    x, bright = _brightness_pool(g, 8)
    p.set_context(1.0 + step / 10)
    ids = torch.arange(8) + 8 * step
    scores = p.score({"x": x}, ids, step)
    if scores is None:
        p.observe(ids, bright)
    else:
        p.observe(ids[:3], bright[:3])
    if step == 9:
        p.reset_epoch(1)
    return scores


def test_proxy_resumes_exactly_through_the_harness():
    assert_resumes(lambda: ProxyScorer(["mean", "edge"], lr=0.1, refresh_every=3, bank=12),
                   14, 6, _proxy_step)


def _tamper(state, key, value):
    return {**state, key: value(state[key]) if callable(value) else value}


@pytest.mark.parametrize("key, value, message", [
    ("loss", lambda t: t.double(), "state.loss: must be a tensor of dtype float32"),
    ("loss", lambda t: torch.full_like(t, float("inf")), "state.loss: must hold finite"),
    ("seen", lambda t: t[:2], "state.seen: must be a tensor of dtype int64 and shape (3,)"),
    ("seen", lambda t: t.int(), "state.seen: must be a tensor of dtype int64"),
    ("seen", lambda t: t - 2, "state.seen: values must be >= -1"),
    ("step", "4", "state.step: must be an integer >= 0, got '4' (str)"),
    ("default", 0.5, "state.default: saved 0.5, this history scorer has 'max'"),
    ("max_age", 2, "state.max_age: saved 2, this history scorer has None"),
])
def test_history_state_checks_every_entry_and_stays_as_it_was(key, value, message):
    h = HistoryScorer()
    h.score({}, torch.tensor([0, 2]), 4)
    h.observe(torch.tensor([0, 2]), torch.tensor([0.3, 0.7]))
    before = h.state_dict()
    with pytest.raises(StateError) as info:
        h.load_state_dict(_tamper(before, key, value))
    assert str(info.value).startswith(message), str(info.value)
    assert_same(h.state_dict(), before)


@pytest.mark.parametrize("key, value, message", [
    ("features", ["mean", "max"], "state.features: saved ['mean', 'max'], this scorer has "
     "['mean', 'std']; it would continue differently (features or bank changed?)"),
    ("bank", 5, "state.bank: saved 5, this scorer has 4"),
    ("lr", 0.5, "state.lr: saved 0.5, this scorer has 0.01"),
    ("refresh_every", 2, "state.refresh_every: saved 2"),
    ("field", "x", "state.field: saved 'x', this scorer has None"),
    ("w", lambda t: t[:2], "state.w: must be a tensor of dtype float32 and shape (3,)"),
    ("b", lambda t: t.reshape(1), "state.b: must be a tensor of dtype float32 and shape ()"),
    ("sd", lambda t: t * 0, "state.sd: must hold standard deviations > 0"),
    ("bank_ctx", lambda t: t.T, "state.bank_ctx: must be a tensor of dtype float32 and shape "
     "(4, 3)"),
    ("bank_loss", lambda t: t + float("nan"), "state.bank_loss: must hold finite"),
    ("filled", 5, "state.filled: must be an integer in [0, 4], got 5"),
    ("pos", 3, "state.pos: must equal state.filled (2) until the bank is full, got 3"),
    ("fitted", 1, "state.fitted: must be True or False, got 1"),
    ("fitted", False, "state.fitted: must be True with state.filled 2"),
    ("weight_norm", "1.0", "state.weight_norm: must be a number"),
])
def test_proxy_state_checks_every_entry_and_stays_as_it_was(key, value, message):
    p = ProxyScorer(["mean", "std"], bank=4)
    x, bright = _brightness_pool(torch.Generator().manual_seed(0), 2)
    p.score({"x": x}, None, 0)
    p.observe(None, bright)
    before = p.state_dict()
    with pytest.raises(StateError) as info:
        p.load_state_dict(_tamper(before, key, value))
    assert str(info.value).startswith(message), str(info.value)
    assert_same(p.state_dict(), before)
