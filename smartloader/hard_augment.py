"""Hard Augment (thesis §3.3.3, Eq. 3.10-3.11; ``../shared/ALGORITHMS.md`` §4).

For self-supervised training: make ``m`` augmented views of each image (the thesis uses
m = 4-6; 6 in its ImageNet runs), embed all of them at a low resolution (``r_sel = 64``
for training at 224) with a no-grad forward, compute the SSL loss of every one of the
``m (m - 1) / 2`` view pairs, and train on the pair with the largest loss, at full
resolution. Overhead ``1 - r^2 C / (r^2 C + m r_sel^2)`` is about 5% at r = 224, r_sel = 64,
m = 4, C = 6 (cost of a training step over a low-res forward).

Pure parts: :func:`view_pairs`, :func:`hardest_pairs`, :func:`score_view_pairs`,
:func:`gather_views`; :class:`HardAugment` (``{resolution: 64}``) chains them.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F

from ._validate import as_int, check_keys, join, require_mapping

__all__ = ["view_pairs", "hardest_pairs", "score_view_pairs", "gather_views", "HardAugment",
           "build_hard_augment"]

PairLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def view_pairs(m: int) -> torch.Tensor:
    """``LongTensor[P, 2]`` of all view pairs ``(a, b)``, ``a < b``, in lexicographic order:
    ``(0, 1), (0, 2), ..., (m - 2, m - 1)``; ``P = m (m - 1) / 2``."""
    if m < 2:
        raise ValueError(f"hard augment needs m >= 2 views, got {m}")
    return torch.combinations(torch.arange(m), r=2)


def hardest_pairs(pair_losses: torch.Tensor, m: int) -> torch.Tensor:
    """Per image, the view pair with the largest loss: ``LongTensor[n, 2]`` of view indices.

    ``pair_losses`` is ``[n, P]`` with columns in :func:`view_pairs` order. Ties go to the
    earlier pair.
    """
    pairs = view_pairs(m)
    if pair_losses.dim() != 2 or pair_losses.shape[1] != pairs.shape[0]:
        raise ValueError(f"pair_losses must be [n, {pairs.shape[0]}] for m={m}, got "
                         f"{tuple(pair_losses.shape)}")
    # argmax of the stable descending sort: first maximum wins.
    best = torch.sort(pair_losses, dim=1, descending=True, stable=True).indices[:, 0]
    return pairs.to(pair_losses.device)[best]


def _resize(x: torch.Tensor, resolution: int | None) -> torch.Tensor:
    h, w = x.shape[-2:]
    short = min(h, w)
    if resolution is None or short <= resolution:
        return x
    size = (max(1, round(h * resolution / short)), max(1, round(w * resolution / short)))
    return F.interpolate(x.float(), size=size, mode="bilinear", antialias=True,
                         align_corners=False)


def score_view_pairs(model: torch.nn.Module, views: torch.Tensor, pair_loss: PairLoss,
                     resolution: int | None = 64) -> torch.Tensor:
    """SSL loss of every view pair, ``float32[n, P]`` (columns in :func:`view_pairs` order).

    ``views`` is ``[n, m, C, H, W]``; all ``n * m`` views are resized so their shorter side is
    ``resolution`` px (never upsampled; ``None`` = as given) and embedded in one no-grad
    forward with every module in eval mode (BatchNorm running statistics are not touched; each
    module's ``training`` flag is restored afterwards). ``pair_loss(z_a, z_b) -> Tensor[n]``
    is the user's SSL loss, per image, on two ``[n, ...]`` embedding batches.
    """
    if views.dim() != 5:
        raise ValueError(f"views must be [n, m, C, H, W], got shape {tuple(views.shape)}")
    n, m = views.shape[:2]
    pairs = view_pairs(m)
    flags = [(mod, mod.training) for mod in model.modules()]
    try:
        model.eval()
        with torch.no_grad():
            z = model(_resize(views.reshape(n * m, *views.shape[2:]), resolution))
            z = z.reshape(n, m, *z.shape[1:])
            losses = [pair_loss(z[:, a], z[:, b]).reshape(n) for a, b in pairs.tolist()]
    finally:
        for mod, flag in flags:
            mod.training = flag
    return torch.stack(losses, dim=1).float()


def gather_views(views: torch.Tensor, pairs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The chosen two views per image at full resolution: two ``[n, C, H, W]`` tensors."""
    rows = torch.arange(views.shape[0], device=views.device)
    pairs = pairs.to(views.device)
    return views[rows, pairs[:, 0]], views[rows, pairs[:, 1]]


class HardAugment:
    """``{resolution: 64}``: pick the hardest view pair per image, return it at full res.

    ``hard = HardAugment(64); view_a, view_b, pairs = hard(model, views, pair_loss)``.
    Stateless.
    """

    def __init__(self, resolution: int | None = 64) -> None:
        if resolution is not None and resolution < 1:
            raise ValueError(f"resolution must be >= 1 or None, got {resolution!r}")
        self.resolution = resolution

    def __call__(self, model: torch.nn.Module, views: torch.Tensor,
                 pair_loss: PairLoss) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        losses = score_view_pairs(model, views, pair_loss, self.resolution)
        pairs = hardest_pairs(losses, views.shape[1])
        return (*gather_views(views, pairs), pairs)

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state:
            raise ValueError(f"HardAugment.load_state_dict: unexpected keys {sorted(state)}")


def build_hard_augment(mapping: Any, path: str = "hard_augment") -> HardAugment:
    """``{resolution: 64}`` (``null`` = score at the views' own resolution)."""
    m = require_mapping(mapping, path)
    check_keys(m, ["resolution"], path)
    res = m.get("resolution", 64)
    return HardAugment(None if res is None else as_int(res, join(path, "resolution"), minimum=1))
