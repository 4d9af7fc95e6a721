"""The proxy_model scorer: a small co-trained network scores the pool."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

import smartloader
from smartloader.errors import ConfigError, StateError
from smartloader.scoring.proxy_model import (ProxyModelScorer, ProxyNet, proxy_losses,
                                             proxy_train_step)
from smartloader.scoring.scorers import build_scorer
from helpers import PlantedDataset, epoch_loader, scorer_model, trainable_model
from resume_harness import assert_resumes, loader_build, save_load, train_step


def _images(n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 256, (n, 3, 8, 8), generator=g, dtype=torch.uint8),
            torch.randint(0, 5, (n,), generator=g))


def test_proxy_losses_are_per_sample_cross_entropy_and_change_nothing():
    torch.manual_seed(0)
    net = ProxyNet(3, 5, width=4)
    net.train()
    x, y = _images()
    before = copy.deepcopy(net.state_dict())
    losses = proxy_losses(net, x, y)
    with torch.no_grad():
        net.eval()
        expected = F.cross_entropy(net(x), y, reduction="none")
        net.train()
    assert losses.shape == (16,) and losses.dtype == torch.float32
    assert torch.allclose(losses, expected)
    assert net.training and all(m.training for m in net.modules())
    for k, v in net.state_dict().items():   # BatchNorm running stats untouched
        assert torch.equal(v, before[k]), k


def test_proxy_train_step_learns_the_batch():
    torch.manual_seed(0)
    net = ProxyNet(3, 5, width=4)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    x, y = _images(32)
    first = proxy_losses(net, x, y).mean()
    for _ in range(30):
        proxy_train_step(net, opt, x, y)
    assert proxy_losses(net, x, y).mean() < 0.5 * first
    small = proxy_losses(net, x, y, resolution=4)   # scored at 4 px: still one per sample
    assert small.shape == (32,)


def test_built_in_proxy_is_sized_from_the_data_and_trains_every_k_batches():
    model, opt = trainable_model()
    cfg = {"total_steps": 15, "seed": 0, "scorer": {"type": "proxy_model", "width": 4,
                                                     "train_every": 2}}
    loader = smartloader.wrap(epoch_loader(), model, cfg)
    stats = []
    for batch in loader:
        stats.append(loader.stats)
        train_step((loader, model, opt), 0, batch)
    scorer = loader._scoring.scorer
    assert isinstance(scorer.proxy, ProxyNet)
    assert scorer.proxy.body[0][0].in_channels == 1 and scorer.proxy.head.out_features == 2
    n = len(stats)
    assert n == 8                                           # 1 warm-up batch + 7 pools of 2
    assert scorer.seen == n and scorer.updates == 4         # yielded batches 1, 3, 5, 7
    assert loader._scoring.forwards == 0                    # the live model never scores
    selecting = [s for s in stats if s.selection != "uniform"]
    assert selecting and all(s.scored_by == "scorer" for s in selecting)
    trained = [s.scorer_train_time_s for s in stats[::2]]
    assert all(t > 0 for t in trained)
    assert all(s.overhead_s >= s.scorer_train_time_s for s in stats)


def test_a_user_proxy_drives_selection_toward_its_high_loss_samples():
    # the fixed planted-data scorer as the proxy (lr tiny: it stays what it is): hard
    # samples get a high proxy loss, so ranked selection picks them far above their share
    ds = PlantedDataset(n=400, hard_every=8)
    loader = torch.utils.data.DataLoader(ds, batch_size=20, shuffle=False)
    model, _ = trainable_model()
    cfg = {"total_steps": 10, "pool_factor": 4, "seed": 0,
           "phases": [{"name": "s", "selection": "topk"}],
           "scorer": {"type": "proxy_model", "model": scorer_model(), "lr": 1e-9}}
    sl = smartloader.wrap(loader, model, cfg)
    picked = torch.cat([b[3] for b in sl])
    assert len(picked) == 100                 # 5 pools of 80, 20 chosen from each
    # every pool holds 10 hard samples (1 in 8), and top-k on the proxy's losses takes all
    assert int(picked.sum()) == 50


@pytest.mark.parametrize("rule", ["ranked", "topk", "selective_backprop"])
def test_proxy_model_works_with_every_rule(rule):
    model, opt = trainable_model()
    cfg = {"total_steps": 8, "seed": 0, "phases": [{"name": "s", "selection": rule}],
           "scorer": {"type": "proxy_model", "width": 2}}
    loader = smartloader.wrap(epoch_loader(), model, cfg)
    sizes = [len(b[0]) for b in loader]
    assert sizes and all(s == 10 for s in sizes)


def test_proxy_model_resumes_exactly():
    cfg = {"total_steps": 30, "seed": 3, "scorer": {"type": "proxy_model", "width": 2}}
    assert_resumes(loader_build(cfg), 20, 9, train_step)


def test_a_state_saved_before_the_first_batch_waits_for_the_proxy():
    a = ProxyModelScorer(width=2, classes=2)
    state = save_load(a.state_dict())
    assert state["proxy"] is None
    b = ProxyModelScorer(width=2, classes=2)
    b.load_state_dict(state)
    x, y = _images(4)
    assert b.score({"input": x[:, :1], "target": y % 2}, None, 0).shape == (4,)


def test_state_from_a_different_proxy_is_refused():
    x, y = _images(8)
    a = ProxyModelScorer(width=2, classes=5)
    a.trained({"input": x, "target": y}, None)
    state = a.state_dict()
    b = ProxyModelScorer(width=3, classes=5)
    with pytest.raises(StateError, match=r"^state\.width: saved 2, this proxy_model scorer "
                                         r"has 3"):
        b.load_state_dict(state)
    c = ProxyModelScorer(width=2, classes=5)
    c.trained({"input": x, "target": y}, None)
    bad = dict(state, proxy={k: v for k, v in state["proxy"].items() if "head" not in k})
    with pytest.raises(StateError, match=r"^state\.proxy: saved for a different network"):
        c.load_state_dict(bad)
    with pytest.raises(StateError, match=r"^state\.updates"):
        c.load_state_dict(dict(state, updates=state["seen"] + 1))


def test_bad_proxy_model_config_names_the_key():
    with pytest.raises(ConfigError, match=r"scorer\.model: must be a torch\.nn\.Module"):
        build_scorer({"type": "proxy_model", "model": "resnet18"})
    with pytest.raises(ConfigError, match=r"scorer\.width: must be >= 1"):
        build_scorer({"type": "proxy_model", "width": 0})
    with pytest.raises(ConfigError, match=r"scorer\.widht: unknown key.*did you mean 'width'"):
        build_scorer({"type": "proxy_model", "widht": 4})


def test_built_in_proxy_refuses_inputs_that_are_not_images():
    s = ProxyModelScorer(classes=2)
    with pytest.raises(ValueError, match=r"takes NCHW images, got inputs of shape \(4, 16\)"):
        s.score({"input": torch.zeros(4, 16), "target": torch.zeros(4, dtype=torch.long)},
                None, 0)
