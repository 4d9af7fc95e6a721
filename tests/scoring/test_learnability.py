"""The learnability scorer: learner loss minus a reference loss (EMA, proxy or best past)."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

import smartloader
from smartloader.errors import ConfigError, StateError
from smartloader.scoring.learnability import LearnabilityScorer, ema_update, learnability
from smartloader.scoring.model import ModelHandle
from smartloader.scoring.scorers import build_scorer
from helpers import epoch_loader, trainable_model
from resume_harness import assert_resumes, loader_build, save_load, train_step


def test_learnability_is_learner_minus_reference():
    out = learnability(torch.tensor([2.0, 1.0, 0.5]), torch.tensor([0.5, 1.0, 1.5]))
    assert out.tolist() == [1.5, 0.0, -1.0]


def test_ema_update_averages_floats_and_copies_integer_buffers():
    live = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    ema = copy.deepcopy(live)
    with torch.no_grad():
        for p in live.parameters():
            p.add_(1.0)
        live[1].num_batches_tracked.fill_(7)
        live[1].running_mean.fill_(4.0)
    before = copy.deepcopy(ema.state_dict())
    ema_update(ema, live, 0.75)
    for k, v in ema.state_dict().items():
        if v.dtype.is_floating_point:
            assert torch.allclose(v, 0.75 * before[k] + 0.25 * live.state_dict()[k]), k
    assert int(ema[1].num_batches_tracked) == 7


def test_history_learner_with_best_reference_scores_forgetting():
    s = LearnabilityScorer(learner="history", reference="best")
    ids = torch.tensor([0, 1, 2])
    s.score({}, ids, 0)
    s.observe(torch.tensor([0, 1]), torch.tensor([2.0, 1.0]))
    s.observe(torch.tensor([0, 1]), torch.tensor([0.5, 3.0]))   # 0 improves, 1 is forgotten
    scores = s.score({}, ids, 1)
    # 0: last 0.5 - best 0.5; 1: last 3 - best 1; 2: never seen -> the pool's largest
    assert scores.tolist() == [0.0, 2.0, 2.0]


def test_forward_learner_with_ema_reference_subtracts_the_ema_loss():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    s = LearnabilityScorer(learner="forward", reference="ema", ema_decay=1.0)  # frozen copy
    s.attach(model)
    frozen = copy.deepcopy(model)
    handle = ModelHandle(model)
    s.bind(handle)
    with torch.no_grad():
        model[1].weight.add_(0.5)               # the live model moves on; the EMA does not
    x, y = torch.randn(6, 1, 4, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    assert s.score({"input": x, "target": y}, None, 0) is None   # asks for the forward
    live = handle.losses(x, y)
    got = s.adjust(live)
    with torch.no_grad():
        want = live - F.cross_entropy(frozen(x), y, reduction="none")
    assert torch.allclose(got, want)
    s.trained({"input": x, "target": y}, None)   # decay 1.0: the EMA keeps its weights
    assert torch.equal(s.ema[1].weight, frozen[1].weight)


def test_through_the_loader_ema_follows_the_model_and_the_pool_is_scored_once():
    model, opt = trainable_model()
    cfg = {"total_steps": 10, "seed": 0, "scorer": {"type": "learnability", "ema_decay": 0.5}}
    loader = smartloader.wrap(epoch_loader(), model, cfg)
    start = copy.deepcopy(model[1].weight)
    for batch in loader:
        train_step((loader, model, opt), 0, batch)
    scorer = loader._scoring.scorer
    assert loader._scoring.forwards > 0 and scorer.seen == loader.stats.step + 1
    ema_w = scorer.ema[1].weight
    assert not torch.equal(ema_w, start) and not torch.equal(ema_w, model[1].weight)


@pytest.mark.parametrize("rule", ["ranked", "topk", "selective_backprop"])
@pytest.mark.parametrize("scorer", [{"type": "learnability"},
                                    {"type": "learnability", "reference": "proxy_model",
                                     "proxy_width": 2},
                                    {"type": "learnability", "learner": "history",
                                     "reference": "best"}])
def test_learnability_works_with_every_rule(rule, scorer):
    model, opt = trainable_model()
    cfg = {"total_steps": 8, "seed": 0, "index_key": 2, "scorer": scorer,
           "phases": [{"name": "s", "selection": rule}]}
    loader = smartloader.wrap(epoch_loader(), model, cfg)
    sizes = []
    for batch in loader:
        sizes.append(len(batch[0]))
        train_step((loader, model, opt), 0, batch)
    assert sizes and all(s == 10 for s in sizes)


@pytest.mark.parametrize("scorer", [{"type": "learnability", "ema_decay": 0.9},
                                    {"type": "learnability", "reference": "proxy_model",
                                     "proxy_width": 2},
                                    {"type": "learnability", "learner": "history",
                                     "reference": "best"}])
def test_learnability_resumes_exactly(scorer):
    cfg = {"total_steps": 30, "seed": 1, "index_key": 2, "scorer": scorer}
    assert_resumes(loader_build(cfg), 20, 9, train_step)


def test_ids_are_required_where_losses_are_keyed_by_sample():
    model, _ = trainable_model()
    with pytest.raises(ConfigError) as info:
        smartloader.wrap(epoch_loader(), model, {
            "scorer": {"type": "learnability", "learner": "history", "reference": "best"}})
    text = str(info.value)
    assert "scorer.learner: history keys losses by sample id, so it needs index_key" in text
    assert "scorer.reference: best keys losses by sample id, so it needs index_key" in text


def test_bad_learnability_config_names_the_key_and_the_choices():
    with pytest.raises(ConfigError, match=r"scorer\.reference: .*'emma'.*ema"):
        build_scorer({"type": "learnability", "reference": "emma"})
    with pytest.raises(ConfigError, match=r"scorer\.ema_decay: must be <= 1"):
        build_scorer({"type": "learnability", "ema_decay": 1.5})


def test_a_state_from_another_model_or_setting_is_refused():
    model, _ = trainable_model()
    a = LearnabilityScorer(reference="ema")
    a.attach(model)
    state = save_load(a.state_dict())
    b = LearnabilityScorer(reference="ema", ema_decay=0.9)
    b.attach(model)
    with pytest.raises(StateError, match=r"^state\.ema_decay: saved 0\.99, this learnability "
                                         r"scorer has 0\.9"):
        b.load_state_dict(state)
    other = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    c = LearnabilityScorer(reference="ema")
    c.attach(other)
    with pytest.raises(StateError, match=r"^state\.ema\.1\.weight: saved shape \(2, 16\), "
                                         r"this model has \(3, 16\)"):
        c.load_state_dict(state)
    with pytest.raises(StateError, match=r"^state\.best: "):
        a.load_state_dict(dict(state, best=torch.tensor([float("nan")])))
