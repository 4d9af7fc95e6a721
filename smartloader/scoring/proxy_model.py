"""``{type: proxy_model, width, lr, momentum, weight_decay, train_every, resolution, model}``
(keys and defaults: :data:`PROXY_MODEL`): a small network, co-trained on the yielded
batches, scores the pool.

The CIFAR-10 speedrun record (airbench96_faster) filters each batch with a proxy: a network
of about a quarter of the main one's width, trained alongside on the same batches (a
backward only every 4th step), keeps the highest-loss half for the main network. Scoring
with it costs a forward of the small network instead of the large one.

- **The proxy**: a user-given ``torch.nn.Module`` (Python configs: ``model: my_net``, any
  classifier taking the same inputs) or the built-in :class:`ProxyNet`, three conv blocks of
  ``width``, ``2 width``, ``2 width`` channels, built at the first batch from the input's
  channels and the live model's number of outputs. It lives on the inputs' device.
- **Training** (:func:`proxy_train_step`): every ``train_every``-th yielded batch (uniform
  phases too, so it is ready when selection starts), one SGD step (momentum, weight decay)
  of cross-entropy on the batch as yielded, before the user's step, at ``resolution`` px
  (null: as loaded). Its wall time is ``StepStats.scorer_train_time_s``.
- **Scoring** (:func:`proxy_losses`): per-sample cross-entropy of the pool under the proxy,
  in eval mode without gradients, at the same ``resolution``; no forward of the live model.
- **Cost**: on a GPU the proxy's time scales with its FLOPs; on a CPU small convolutions are
  bound by per-op dispatch, so a proxy pays only when the main model is far larger in *time*.
"""
from __future__ import annotations

import time
from typing import Any, Mapping

import torch
import torch.nn.functional as F

from smartloader.common.readers import fail
from smartloader.common.spec import Field, Section
from smartloader.common.state import StateError, check_int, check_same, strict_keys
from smartloader.scoring.model import downsample, logits_of, scoring_mode

__all__ = ["PROXY_MODEL", "ProxyNet", "ProxyModelScorer", "proxy_losses", "proxy_train_step",
           "make_proxy_model_scorer"]


def _module(raw: Any, path: str) -> torch.nn.Module | None:
    if raw is None or isinstance(raw, torch.nn.Module):
        return raw
    raise fail(path, "must be a torch.nn.Module (set it from Python) or null for the "
                     "built-in proxy", raw)


#: ``{type: proxy_model, ...}``: the keys besides ``type``.
PROXY_MODEL = Section("proxy_model", (
    Field("width", "int", 8, minimum=1,
          doc="channels of the built-in proxy's first block (then 2x, 2x)"),
    Field("lr", "float", 0.05, minimum=0.0, min_exclusive=True,
          doc="SGD learning rate of the proxy"),
    Field("momentum", "float", 0.9, minimum=0.0, maximum=1.0, doc="SGD momentum of the proxy"),
    Field("weight_decay", "float", 5e-4, minimum=0.0, doc="SGD weight decay of the proxy"),
    Field("train_every", "int", 1, minimum=1,
          doc="yielded batches per proxy training step (the speedrun record: 4)"),
    Field("resolution", "int", None, minimum=1, nullable=True,
          doc="shorter side (px) the proxy trains and scores at; null = as loaded"),
    Field("seed", "int", 0, minimum=0,
          doc="seed of the built-in proxy's initial weights (the global RNG is left alone)"),
    Field("model", "any", None, parse=_module, type_doc="nn.Module or null",
          doc="your own proxy network (Python configs only); null = the built-in one"),
), doc="a small co-trained network scores the pool (no forward of the live model)")
_D = {f.name: f.default for f in PROXY_MODEL.fields}


class ProxyNet(torch.nn.Module):
    """The built-in proxy: conv-BN-ReLU blocks of ``width``, ``2 width``, ``2 width``
    channels with 2x2 max-pooling between, global average pool, linear. Takes ``uint8``
    (scaled to [-1, 1]) or float NCHW images and any side >= 4 px."""

    def __init__(self, in_channels: int, classes: int, width: int = _D["width"]) -> None:
        super().__init__()
        c = width

        def block(i: int, o: int) -> torch.nn.Sequential:
            return torch.nn.Sequential(torch.nn.Conv2d(i, o, 3, padding=1, bias=False),
                                       torch.nn.BatchNorm2d(o), torch.nn.ReLU())
        self.body = torch.nn.Sequential(block(in_channels, c), torch.nn.MaxPool2d(2),
                                        block(c, 2 * c), torch.nn.MaxPool2d(2),
                                        block(2 * c, 2 * c))
        self.head = torch.nn.Linear(2 * c, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float() / 127.5 - 1.0 if x.dtype == torch.uint8 else x.float()
        return self.head(self.body(x).mean((2, 3)))


def _ce(outputs: Any, targets: torch.Tensor) -> torch.Tensor:
    logits = logits_of(outputs)
    y = targets.reshape(-1) if targets.dim() == 2 and targets.shape[1] == 1 else targets
    if y.is_floating_point() and y.dim() == 2:   # soft targets
        return -(y * F.log_softmax(logits.float(), 1)).sum(1)
    return F.cross_entropy(logits.float(), y.long(), reduction="none")


def proxy_losses(proxy: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                 resolution: int | None = None) -> torch.Tensor:
    """Per-sample cross-entropy (float32 ``[n]``) of ``inputs`` under ``proxy``, in eval mode
    without gradients, at ``resolution`` px (shorter side; ``None`` = as given). The proxy's
    own training flags and buffers are left as they were."""
    with scoring_mode(proxy):
        return _ce(proxy(downsample(inputs, resolution)), targets)


def proxy_train_step(proxy: torch.nn.Module, optimizer: torch.optim.Optimizer,
                     inputs: torch.Tensor, targets: torch.Tensor,
                     resolution: int | None = None) -> torch.Tensor:
    """One optimizer step of ``proxy`` on the batch (mean cross-entropy, train mode, at
    ``resolution`` px); returns the loss as a detached 0-d tensor (no host read: this runs
    on every yielded batch)."""
    was = proxy.training
    proxy.train()
    try:
        with torch.enable_grad():
            loss = _ce(proxy(downsample(inputs, resolution)), targets).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    finally:
        proxy.train(was)
    return loss.detach()


class ProxyModelScorer:
    """A co-trained proxy network scores every pool (see the module docstring).

    Args:
        width: channels of the built-in :class:`ProxyNet` (ignored with ``model``).
        lr, momentum, weight_decay: its SGD settings.
        train_every: yielded batches per training step.
        resolution: px the proxy trains and scores at; ``None`` = as loaded.
        model: your own proxy ``nn.Module``; ``None`` builds :class:`ProxyNet` at the first
            batch (``in_channels`` from the input, classes from the live model's output).
        classes: the built-in proxy's number of outputs; ``None`` = the live model's.
        seed: seed of the built-in proxy's initial weights (drawn without touching the
            global RNG, so two identical runs build identical proxies).
    """

    def __init__(self, width: int = _D["width"], lr: float = _D["lr"],
                 momentum: float = _D["momentum"], weight_decay: float = _D["weight_decay"],
                 train_every: int = _D["train_every"], resolution: int | None = _D["resolution"],
                 model: torch.nn.Module | None = None, classes: int | None = None,
                 seed: int = _D["seed"]) -> None:
        if width < 1 or train_every < 1 or not lr > 0:
            raise ValueError(f"need width >= 1, train_every >= 1 and lr > 0, got {width}, "
                             f"{train_every}, {lr}")
        if resolution is not None and resolution < 1:
            raise ValueError(f"resolution must be >= 1 or None, got {resolution}")
        self.width, self.lr, self.momentum = int(width), float(lr), float(momentum)
        self.weight_decay, self.train_every = float(weight_decay), int(train_every)
        self.resolution, self.classes, self.seed = resolution, classes, int(seed)
        self.user_model = model is not None
        self.proxy: torch.nn.Module | None = model
        self.optimizer: torch.optim.Optimizer | None = None
        self._live: torch.nn.Module | None = None
        self.seen = 0            # yielded batches seen
        self.updates = 0         # proxy training steps taken
        self.train_time_s = 0.0  # wall time of those steps, over the run
        self._pending: dict[str, Any] | None = None   # state loaded before the proxy exists
        if model is not None:
            self._make_optimizer()

    def attach(self, live_model: torch.nn.Module) -> None:
        """The live model (read once, for the built-in proxy's number of classes)."""
        self._live = live_model

    def _make_optimizer(self) -> None:
        self.optimizer = torch.optim.SGD(self.proxy.parameters(), lr=self.lr,
                                         momentum=self.momentum, nesterov=self.momentum > 0,
                                         weight_decay=self.weight_decay)

    def _classes(self, x: torch.Tensor) -> int:
        if self.classes is not None:
            return int(self.classes)
        if self._live is None:
            raise ValueError("proxy_model scorer: the number of classes is unknown; give "
                             "classes= or attach() the live model")
        from smartloader.scoring.model import _unwrap
        live = _unwrap(self._live)
        device = next(iter(live.parameters()), torch.zeros(())).device
        with scoring_mode(live):
            out = logits_of(live(x[:1].to(device)))
        return int(out.shape[-1])

    def _ensure(self, x: torch.Tensor) -> torch.nn.Module:
        if self.proxy is None:
            if x.dim() != 4:
                raise ValueError(f"proxy_model scorer: the built-in proxy takes NCHW images, "
                                 f"got inputs of shape {tuple(x.shape)}; pass model= your "
                                 f"own proxy network")
            classes = self._classes(x)
            with torch.random.fork_rng(devices=[]):   # same weights on every build
                torch.manual_seed(self.seed)
                net = ProxyNet(int(x.shape[1]), classes, self.width)
            self.proxy = net.to(x.device)
            self.classes = classes
            self._make_optimizer()
            if self._pending is not None:
                self._load(self._pending)
                self._pending = None
        return self.proxy

    def _device(self) -> torch.device:
        return next(iter(self.proxy.parameters())).device

    # -- protocol ---------------------------------------------------------------------------
    def score(self, pool_fields: Mapping[str, Any], sample_ids: torch.Tensor | None,
              step: int) -> torch.Tensor:
        x, y = pool_fields["input"], pool_fields["target"]
        proxy = self._ensure(x)
        device = self._device()
        return proxy_losses(proxy, x.to(device), y.to(device), self.resolution)

    def trained(self, fields: Mapping[str, Any], sample_ids: torch.Tensor | None) -> None:
        """The batch just yielded: every ``train_every``-th one trains the proxy."""
        self.seen += 1
        if (self.seen - 1) % self.train_every:
            return
        t0 = time.perf_counter()
        x, y = fields["input"], fields["target"]
        proxy = self._ensure(x)
        device = self._device()
        proxy_train_step(proxy, self.optimizer, x.to(device), y.to(device), self.resolution)
        self.updates += 1
        self.train_time_s += time.perf_counter() - t0

    def observe(self, sample_ids: torch.Tensor | None, losses: torch.Tensor,
                features: Any = None) -> None:
        """Nothing: the proxy learns from the yielded batches (:meth:`trained`)."""

    def reset_epoch(self, epoch: int) -> None:
        """Nothing: the proxy keeps learning across epochs."""

    # -- state ------------------------------------------------------------------------------
    _KEYS = ("proxy", "optimizer", "seen", "updates", "train_time_s", "width", "classes",
             "train_every", "resolution", "user_model")

    def state_dict(self) -> dict[str, Any]:
        """The proxy's weights and optimizer state (None before the first batch), the
        counters, and the settings (checked on load)."""
        if self.proxy is None and self._pending is not None:
            return dict(self._pending)
        return {"proxy": None if self.proxy is None else
                {k: v.detach().cpu().clone() for k, v in self.proxy.state_dict().items()},
                "optimizer": None if self.optimizer is None else self.optimizer.state_dict(),
                "seen": self.seen, "updates": self.updates, "train_time_s": self.train_time_s,
                "width": self.width, "classes": self.classes, "train_every": self.train_every,
                "resolution": self.resolution, "user_model": self.user_model}

    def check_state(self, state: Any, path: str = "state") -> None:
        """Raise :class:`~smartloader.errors.StateError` unless :meth:`load_state_dict`
        would accept ``state``; changes nothing."""
        strict_keys(self, state, self._KEYS, path)
        for key in ("train_every", "resolution", "user_model"):
            check_same(state[key], getattr(self, key), f"{path}.{key}", "proxy_model scorer")
        if not self.user_model:
            check_same(state["width"], self.width, f"{path}.width", "proxy_model scorer")
        seen = check_int(state["seen"], f"{path}.seen")
        check_int(state["updates"], f"{path}.updates", 0, seen)
        if (state["proxy"] is None) != (state["optimizer"] is None):
            has = {k: "without" if state[k] is None else "with" for k in ("optimizer", "proxy")}
            raise StateError(f"{path}.optimizer: saved {has['optimizer']} an optimizer state "
                             f"but {has['proxy']} proxy weights")
        if state["proxy"] is not None:
            if not isinstance(state["proxy"], Mapping):
                raise StateError(f"{path}.proxy: must be a state_dict mapping, got "
                                 f"{type(state['proxy']).__name__}")
            if self.proxy is not None:
                ours = self.proxy.state_dict()
                if set(state["proxy"]) != set(ours):
                    raise StateError(f"{path}.proxy: saved for a different network (keys "
                                     f"differ: {sorted(set(state['proxy']) ^ set(ours))[:4]})")
                for k, v in ours.items():
                    got = state["proxy"][k]
                    if not isinstance(got, torch.Tensor) or got.shape != v.shape:
                        raise StateError(f"{path}.proxy.{k}: saved shape "
                                         f"{tuple(getattr(got, 'shape', ()))}, this proxy has "
                                         f"{tuple(v.shape)}")
            elif self.classes is not None and state["classes"] != self.classes:
                check_same(state["classes"], self.classes, f"{path}.classes",
                           "proxy_model scorer")

    def _load(self, state: Mapping[str, Any]) -> None:
        device = self._device()
        self.proxy.load_state_dict({k: v.to(device) for k, v in state["proxy"].items()})
        self.optimizer.load_state_dict(state["optimizer"])

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.check_state(state)
        self.seen, self.updates = state["seen"], state["updates"]
        self.train_time_s = float(state["train_time_s"])
        if state["proxy"] is None:
            return
        if self.proxy is None:   # built at the first batch; the weights wait until then
            self.classes = state["classes"]
            self._pending = dict(state)
            return
        self._load(state)


def make_proxy_model_scorer(values: Mapping[str, Any]) -> ProxyModelScorer:
    return ProxyModelScorer(values["width"], values["lr"], values["momentum"],
                            values["weight_decay"], values["train_every"], values["resolution"],
                            values["model"], seed=values["seed"])
