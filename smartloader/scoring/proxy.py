"""``{type: proxy, features: [mean, std], lr: 0.01, refresh_every: 10, bank: 200}``.

IMPON (Ganapathiraman et al. 2022, ``../shared/papers/impon-importance-sampling-online-
regression.txt``, ``ALGORITHMS.md`` §5): instead of running the model to score a pool, an
online *linear* regressor predicts each sample's loss from a context vector
``c_i = [features(x_i); ||W||_F]`` (cheap statistics of the input plus the Frobenius norm of
the model's weights, a snapshot of how far training is). It is fitted by SGD on true losses
and its weights are reset every epoch (IMPON found that without the reset it overfits the
noisy early losses).

How this maps onto smartloader:

- IMPON's "data bank" of N = 200 random candidates is, in smartloader, the *pool* the loader
  already draws (``pool_factor`` batches). Our ``bank`` (default 200, IMPON's N) is instead the
  number of most recent ``(context, loss)`` pairs the regressor is fitted on: each
  :meth:`ProxyScorer.observe` adds the observed pairs and takes one full-batch SGD step on the
  bank's mean squared error, which averages out single-step noise.
- Every ``refresh_every`` steps (default 10; and whenever the regressor has no data, e.g.
  right after an epoch reset) :meth:`ProxyScorer.score` returns ``None``: the loader runs its
  low-resolution forward and reports the pool's losses through ``observe``; the other steps
  need no forward at all. Training losses reported for trained samples are used too.
- Contexts are standardised with the bank's mean and standard deviation before the linear map,
  so ``lr`` (default 0.01) is per standardised unit and does not depend on pixel scale.
  (IMPON used 1e-6 on raw features.) The bias starts at the mean of the first losses seen.
- In a linear model the weight norm adds the same amount to every prediction of a pool, so it
  never changes the ranking inside a pool; it lets the fit follow the loss level over time.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import torch

from smartloader.common.readers import as_float, as_int, as_list, as_str, check_keys, fail, join
from smartloader.common.state import strict_keys


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1).float()


def _edge(x: torch.Tensor) -> torch.Tensor:
    # Mean absolute difference of neighbours along the last axis: a cheap texture/sharpness cue.
    x = x.float()
    if x.dim() < 2 or x.shape[-1] < 2:
        return torch.zeros(x.shape[0], device=x.device)
    return (x[..., 1:] - x[..., :-1]).abs().reshape(x.shape[0], -1).mean(1)


FEATURES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "mean": lambda x: _flat(x).mean(1),
    "std": lambda x: _flat(x).std(1, unbiased=False),
    "min": lambda x: _flat(x).amin(1),
    "max": lambda x: _flat(x).amax(1),
    "abs_mean": lambda x: _flat(x).abs().mean(1),
    "edge": _edge,
}
"""Per-sample input statistics, each ``Tensor[n, ...] -> Tensor[n]``, batched, no grad."""


def per_sample_features(x: torch.Tensor,
                        names: Sequence[str] = ("mean", "std")) -> torch.Tensor:
    """Cheap statistics of each sample of a batch, ``float32[n, len(names)]``.

    ``names`` are keys of :data:`FEATURES`: ``mean``, ``std``, ``min``, ``max``, ``abs_mean``
    (mean absolute value) and ``edge`` (mean absolute difference between neighbours along the
    last axis). Integer inputs (uint8 images) are used as floats, in their own units.
    """
    if x.dim() < 1 or x.shape[0] == 0:
        return torch.zeros(x.shape[0] if x.dim() else 0, len(names))
    for name in names:
        if name not in FEATURES:
            raise ValueError(f"unknown feature {name!r} (known: {', '.join(FEATURES)})")
    with torch.no_grad():
        return torch.stack([FEATURES[name](x) for name in names], dim=1)


def model_weight_norm(model: torch.nn.Module) -> float:
    """``||W||_F`` over all parameters of ``model`` (IMPON's training-state feature)."""
    with torch.no_grad():
        total = sum((p.detach().float().pow(2).sum() for p in model.parameters()),
                    torch.zeros(()))
    return float(total) ** 0.5


class ProxyScorer:
    """IMPON's online linear loss regressor (see the module docstring).

    Args:
        features: names from :data:`FEATURES` computed on the input field.
        lr: SGD learning rate on standardised contexts (default 0.01).
        refresh_every: steps between real scoring passes (default 10; 1 = every step).
        bank: number of recent ``(context, loss)`` pairs the regressor is fitted on.
        field: the pool field holding the inputs; ``None`` picks the first tensor field with
            at least 2 dimensions (labels are 1-D).

    The loader calls :meth:`set_context` with :func:`model_weight_norm` before each
    :meth:`score` (``needs_weight_norm = True``); without it the weight-norm feature is 0.
    """

    needs_weight_norm = True

    def __init__(self, features: Sequence[str] = ("mean", "std"), lr: float = 0.01,
                 refresh_every: int = 10, bank: int = 200, field: str | None = None) -> None:
        for name in features:
            if name not in FEATURES:
                raise ValueError(f"unknown feature {name!r} (known: {', '.join(FEATURES)})")
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr!r}")
        if refresh_every < 1 or bank < 1:
            raise ValueError(f"refresh_every and bank must be >= 1, got {refresh_every}, {bank}")
        self.features = tuple(features)
        self.lr = float(lr)
        self.refresh_every = int(refresh_every)
        self.bank = int(bank)
        self.field = field
        self.weight_norm = 0.0
        dim = len(self.features) + 1
        self._bank_ctx = torch.zeros(self.bank, dim)
        self._bank_loss = torch.zeros(self.bank)
        self._pool_ctx: torch.Tensor | None = None    # contexts of the last scored pool
        self._pool_ids: torch.Tensor | None = None
        self._reset_weights()

    def _reset_weights(self) -> None:
        dim = len(self.features) + 1
        self._w = torch.zeros(dim)
        self._b = torch.zeros(())
        self._mu = torch.zeros(dim)
        self._sd = torch.ones(dim)
        self._filled = 0
        self._pos = 0
        self._fitted = False

    # -- context ---------------------------------------------------------------------------
    def set_context(self, weight_norm: float) -> None:
        """The model's current ``||W||_F`` (a float), used in every context until changed."""
        self.weight_norm = float(weight_norm)

    def _input(self, fields: Mapping[str, Any] | torch.Tensor) -> torch.Tensor:
        if isinstance(fields, torch.Tensor):
            return fields
        if self.field is not None:
            if self.field not in fields:
                raise ValueError(f"proxy scorer: field {self.field!r} not in the batch "
                                 f"(fields: {sorted(fields)})")
            return fields[self.field]
        for value in fields.values():
            if isinstance(value, torch.Tensor) and value.dim() >= 2:
                return value
        raise ValueError(f"proxy scorer: no input tensor with >= 2 dimensions among fields "
                         f"{sorted(fields)}; set 'field'")

    def contexts(self, fields: Mapping[str, Any] | torch.Tensor) -> torch.Tensor:
        """``float32[n, len(features) + 1]``: per-sample features and the weight norm, on CPU."""
        feats = per_sample_features(self._input(fields), self.features).cpu()
        wn = torch.full((feats.shape[0], 1), self.weight_norm)
        return torch.cat([feats, wn], dim=1)

    def predict(self, ctx: torch.Tensor) -> torch.Tensor:
        """Predicted losses for contexts ``ctx`` (``float32[n]``)."""
        return ((ctx - self._mu) / self._sd) @ self._w + self._b

    # -- protocol --------------------------------------------------------------------------
    def score(self, pool_fields: Mapping[str, Any], sample_ids: torch.Tensor | None,
              step: int) -> torch.Tensor | None:
        ctx = self.contexts(pool_fields)
        self._pool_ctx = ctx
        self._pool_ids = None if sample_ids is None else torch.as_tensor(sample_ids).reshape(-1).cpu()
        if not self._fitted or step % self.refresh_every == 0:
            return None
        device = self._input(pool_fields).device
        return self.predict(ctx).to(device)

    def _observed_contexts(self, sample_ids: torch.Tensor | None, n: int,
                           features: Any) -> torch.Tensor:
        if features is not None:
            return self.contexts(features)
        if self._pool_ctx is None:
            raise ValueError("proxy scorer: observe() without features before any score()")
        if n == self._pool_ctx.shape[0]:
            return self._pool_ctx
        if sample_ids is None or self._pool_ids is None:
            raise ValueError(f"proxy scorer: observe() got {n} losses for a pool of "
                             f"{self._pool_ctx.shape[0]}; pass their fields as features= or "
                             f"sample ids to find them in the pool")
        ids = torch.as_tensor(sample_ids).reshape(-1).cpu()
        match = ids[:, None] == self._pool_ids[None, :]
        if not bool(match.any(1).all()):
            raise ValueError("proxy scorer: observe() got sample ids that were not in the "
                             "last scored pool; pass their fields as features=")
        return self._pool_ctx[match.float().argmax(1)]

    def observe(self, sample_ids: torch.Tensor | None, losses: torch.Tensor,
                features: Any = None) -> None:
        """Add true ``losses`` to the bank and take one SGD step.

        ``features`` is ``None`` (the samples are the last scored pool, matched by position
        when all ``n`` losses are given, otherwise by ``sample_ids``), a dict of batch fields,
        or the input tensor of those samples.
        """
        losses = losses.detach().reshape(-1).float().cpu()
        ctx = self._observed_contexts(sample_ids, losses.numel(), features)
        ok = torch.isfinite(losses)
        ctx, losses = ctx[ok][-self.bank:], losses[ok][-self.bank:]
        m = losses.numel()
        if m == 0:
            return
        slots = (self._pos + torch.arange(m)) % self.bank
        self._bank_ctx[slots] = ctx
        self._bank_loss[slots] = losses
        self._pos = (self._pos + m) % self.bank
        self._filled = min(self.bank, self._filled + m)
        if not self._fitted:
            self._b = losses.mean()
            self._fitted = True
        self._sgd_step()

    def _sgd_step(self) -> None:
        ctx, y = self._bank_ctx[: self._filled], self._bank_loss[: self._filled]
        self._mu = ctx.mean(0)
        sd = ctx.std(0, unbiased=False)
        self._sd = torch.where(sd > 1e-8, sd, torch.ones_like(sd))   # constant columns inert
        z = (ctx - self._mu) / self._sd
        err = z @ self._w + self._b - y                     # d(0.5 * mse)/d(pred)
        self._w = self._w - self.lr * (z.T @ err) / len(y)
        self._b = self._b - self.lr * err.mean()

    def reset_epoch(self, epoch: int) -> None:
        """IMPON's weight reset: forget the regressor and its bank at every epoch start."""
        self._reset_weights()

    def state_dict(self) -> dict[str, Any]:
        return {"w": self._w.clone(), "b": self._b.clone(), "mu": self._mu.clone(),
                "sd": self._sd.clone(), "bank_ctx": self._bank_ctx.clone(),
                "bank_loss": self._bank_loss.clone(), "filled": self._filled, "pos": self._pos,
                "fitted": self._fitted, "weight_norm": self.weight_norm}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        strict_keys(self, state, {"w", "b", "mu", "sd", "bank_ctx", "bank_loss", "filled",
                                  "pos", "fitted", "weight_norm"})
        if tuple(state["bank_ctx"].shape) != tuple(self._bank_ctx.shape):
            raise ValueError(f"ProxyScorer.load_state_dict: bank_ctx has shape "
                             f"{tuple(state['bank_ctx'].shape)}, expected "
                             f"{tuple(self._bank_ctx.shape)} (features or bank changed?)")
        self._w, self._b = state["w"].clone().float(), state["b"].clone().float()
        self._mu, self._sd = state["mu"].clone().float(), state["sd"].clone().float()
        self._bank_ctx = state["bank_ctx"].clone().float()
        self._bank_loss = state["bank_loss"].clone().float()
        self._filled, self._pos = int(state["filled"]), int(state["pos"])
        self._fitted, self.weight_norm = bool(state["fitted"]), float(state["weight_norm"])
        self._pool_ctx = self._pool_ids = None


def build_proxy_scorer(mapping: Mapping[str, Any], path: str) -> ProxyScorer:
    check_keys(mapping, ["type", "features", "lr", "refresh_every", "bank", "field"], path)
    names = as_list(mapping.get("features", ["mean", "std"]), join(path, "features"))
    if not names:
        raise fail(join(path, "features"), "must name at least one feature")
    features = [as_str(v, join(join(path, "features"), i), choices=FEATURES)
                for i, v in enumerate(names)]
    lr = as_float(mapping.get("lr", 0.01), join(path, "lr"), minimum=0.0, min_exclusive=True)
    refresh = as_int(mapping.get("refresh_every", 10), join(path, "refresh_every"), minimum=1)
    bank = as_int(mapping.get("bank", 200), join(path, "bank"), minimum=1)
    field = mapping.get("field")
    if field is not None:
        field = as_str(field, join(path, "field"))
    return ProxyScorer(features, lr, refresh, bank, field)
