"""Selection rules: exact behaviour, distribution checks, properties, config and state."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings, strategies as st

from smartloader.errors import ConfigError, StateError
from smartloader.selection.rules import (RankedSelector, SelectiveBackprop, TopKSelector,
                                         UniformSelector, build_selector, history_cdf,
                                         selective_backprop_select, topk_select, uniform_select)
from resume_harness import assert_resumes, assert_same
from sampling_helpers import CHI2_999, chi_square, ranked_reference


def test_topk_exact_with_ties_to_lower_index():
    scores = torch.tensor([0.5, 2.0, 2.0, 1.0, 2.0])
    assert topk_select(scores, 2).tolist() == [1, 2]
    assert topk_select(scores, 1).tolist() == [1]
    assert topk_select(scores, 4).tolist() == [1, 2, 3, 4]
    assert topk_select(scores, 0).tolist() == []
    assert topk_select(scores, 5).tolist() == [0, 1, 2, 3, 4]
    assert TopKSelector().select(scores, 2, None).tolist() == [1, 2]


def test_topk_rejects_bad_k():
    with pytest.raises(ValueError, match="k must be"):
        topk_select(torch.zeros(3), 4)


def test_uniform_frequencies_chi_square():
    g = torch.Generator().manual_seed(1)
    counts = torch.zeros(10)
    draws = 3000
    for _ in range(draws):
        counts[uniform_select(10, 3, g)] += 1
    assert counts.sum() == 3 * draws
    assert chi_square(counts, 3 * draws / 10) < CHI2_999[9]


def test_uniform_selector_ignores_scores_and_is_reproducible():
    scores = torch.arange(20.0)
    a = UniformSelector().select(scores, 5, torch.Generator().manual_seed(3))
    b = UniformSelector().select(-scores, 5, torch.Generator().manual_seed(3))
    assert a.tolist() == b.tolist()


def test_history_cdf_exact():
    history = torch.tensor([1.0, 2.0, 3.0])
    got = history_cdf(torch.tensor([0.0, 2.0, 5.0]), history)
    assert got.tolist() == [0.25, 0.75, 1.0]
    assert history_cdf(torch.tensor([7.0, -1.0]), torch.zeros(0)).tolist() == [1.0, 1.0]


def test_selective_backprop_beta_zero_is_uniform():
    g = torch.Generator().manual_seed(2)
    scores = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.1, 0.5, 1.0, 3.0, 9.0, 100.0])
    history = torch.linspace(0, 10, 50)
    counts = torch.zeros(10)
    for _ in range(3000):
        counts[selective_backprop_select(scores, 4, history, 0.0, g)] += 1
    assert chi_square(counts, 3000 * 4 / 10) < CHI2_999[9]


def test_selective_backprop_prefers_high_percentiles():
    g = torch.Generator().manual_seed(4)
    scores = torch.arange(10.0)
    counts = torch.zeros(10)
    for _ in range(2000):
        counts[selective_backprop_select(scores, 3, torch.arange(10.0), 2.0, g)] += 1
    assert counts[7:].sum() > 3 * counts[:3].sum()
    assert (counts > 0).all()   # sampling, not greedy: every sample stays possible


def test_selective_backprop_window_is_a_ring_and_resumes():
    sb = SelectiveBackprop(beta=1.0, window=4)
    sb.push(torch.tensor([1.0, 2.0, 3.0]))
    assert sb.history.tolist() == [1.0, 2.0, 3.0]
    sb.push(torch.tensor([4.0, float("nan"), 5.0, 6.0]))
    # a non-finite score keeps its slot as a +inf placeholder that percentiles do not count
    assert sb.history.tolist() == [4.0, float("inf"), 5.0, 6.0]
    assert history_cdf(torch.tensor([5.0]), sb.history).tolist() == [0.75]

    def step(run, t, _):
        selector, gen = run
        scores = torch.sin(torch.arange(12.0) * (t + 1))
        return selector.select(scores, 5, gen).tolist()

    assert_resumes(lambda: (SelectiveBackprop(1.0, 16), torch.Generator().manual_seed(0)),
                   10, 5, step)


def test_selective_backprop_state_is_strict():
    sb = SelectiveBackprop(1.0, 8)
    with pytest.raises(ValueError, match="window"):
        sb.load_state_dict(SelectiveBackprop(1.0, 4).state_dict())
    with pytest.raises(ValueError, match="missing keys"):
        sb.load_state_dict({"window": 8})
    with pytest.raises(ValueError, match="unexpected"):
        UniformSelector().load_state_dict({"x": 1})


def _sb_state(**changes):
    sb = SelectiveBackprop(1.0, 4)
    sb.push(torch.tensor([1.0, 2.0]))
    return {**sb.state_dict(), **changes}


@pytest.mark.parametrize("changes, message", [
    ({"beta": 2.0}, "state.beta: saved 2.0, this selector has 1.0"),
    ({"ring": torch.zeros(4, dtype=torch.float64)}, "state.ring: must be a tensor of dtype "
     "float32 and shape (4,)"),
    ({"ring": torch.tensor([1.0, float("-inf"), 0.0, 0.0])}, "state.ring: must not hold -inf"),
    ({"filled": -1}, "state.filled: must be an integer in [0, 4], got -1"),
    ({"pos": 3}, "state.pos: must equal state.filled (2) until the window is full, got 3"),
    ({"pos": 4, "filled": 4}, "state.pos: must be an integer in [0, 3], got 4"),
])
def test_selective_backprop_checks_every_entry_and_stays_as_it_was(changes, message):
    sb = SelectiveBackprop(1.0, 4)
    sb.push(torch.tensor([5.0]))
    before = sb.state_dict()
    with pytest.raises(StateError) as info:
        sb.load_state_dict(_sb_state(**changes))
    assert str(info.value).startswith(message), str(info.value)
    assert_same(sb.state_dict(), before)
    sb.load_state_dict(_sb_state())                         # a good state still loads
    assert sb.history.tolist() == [1.0, 2.0]


def test_ranked_selector_uses_ranked_multinomial():
    sel = build_selector({"type": "ranked", "beta": 1.0})
    assert isinstance(sel, RankedSelector) and sel.beta == 1.0
    g = torch.Generator().manual_seed(5)
    counts = torch.zeros(8)
    for _ in range(1000):
        counts[sel.select(torch.arange(8.0), 2, g)] += 1
    assert counts[4:].sum() > 1.5 * counts[:4].sum()


def _selectors():
    return [UniformSelector(), TopKSelector(), RankedSelector(1.0),
            SelectiveBackprop(1.0, 32), SelectiveBackprop(0.0, 4), RankedSelector(3.0)]


@settings(max_examples=60, deadline=None)
@given(data=st.data(), n=st.integers(1, 40), seed=st.integers(0, 2 ** 31))
def test_every_selector_returns_k_unique_sorted_in_range(data, n, seed):
    k = data.draw(st.integers(0, n))
    scores = torch.tensor(data.draw(st.lists(
        st.floats(-1e6, 1e6, allow_nan=False, width=32), min_size=n, max_size=n)))
    g = torch.Generator().manual_seed(seed)
    for sel in _selectors():
        idx = sel.select(scores, k, g)
        assert idx.dtype == torch.int64 and idx.shape == (k,)
        assert idx.unique().numel() == k
        assert bool((idx[1:] > idx[:-1]).all())
        if k:
            assert 0 <= int(idx.min()) and int(idx.max()) < n


@pytest.mark.parametrize("mapping, cls", [
    ({"type": "uniform"}, UniformSelector),
    ({"type": "topk"}, TopKSelector),
    ({"type": "ranked"}, RankedSelector),
    ({"type": "selective_backprop", "beta": 2, "window": 64}, SelectiveBackprop),
])
def test_build_selector_types(mapping, cls):
    sel = build_selector(mapping, "phases[0].selector")
    assert type(sel) is cls
    assert sel.state_dict() == {} or cls is SelectiveBackprop


@pytest.mark.parametrize("mapping, message", [
    ({"type": "selective_backprop", "window": 0}, "phases[1].selector.window: must be >= 1"),
    ({"type": "ranked", "beta": -1}, "phases[1].selector.beta: must be >= 0"),
    ({"type": "topk", "beta": 1}, "phases[1].selector.beta: unknown key"),
    ({"type": "greedy"}, "phases[1].selector.type: must be one of"),
    ({"beta": 1}, "phases[1].selector.type: is required"),
    ([1], "phases[1].selector: must be a mapping"),
])
def test_build_selector_errors_name_the_key(mapping, message):
    with pytest.raises(ConfigError) as err:
        build_selector(mapping, "phases[1].selector")
    assert str(err.value).startswith(message)


def test_history_cdf_ignores_non_finite_history_like_masking_it_out():
    g = torch.Generator().manual_seed(5)
    history = torch.randn(40, generator=g)
    history[::7] = float("nan")
    history[3], history[11] = float("inf"), float("-inf")
    scores = torch.cat([torch.randn(10, generator=g), history[torch.isfinite(history)][:5]])
    ref = history[torch.isfinite(history)].sort().values  # the masking way, for reference
    want = (torch.searchsorted(ref, scores, right=True).float() + 1.0) / (ref.numel() + 1.0)
    assert torch.equal(history_cdf(scores, history), want)
    assert history_cdf(torch.tensor([float("inf")]), history).tolist() == [1.0]


def test_ranked_reference_prefers_high_losses():
    g = torch.Generator().manual_seed(0)
    losses = torch.arange(10.0)
    counts = torch.zeros(10)
    for _ in range(2000):
        counts[ranked_reference(losses, 3, 1.0, g)] += 1
    assert counts[5:].sum() > 1.5 * counts[:5].sum()
