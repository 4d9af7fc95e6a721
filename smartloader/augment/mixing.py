"""MixUp and CutMix that do not fight selection: score clean samples, mix after selecting.

The thesis (Ch. 4, its known limitations) finds that selection
gives no speed-up when MixUp is on. A mixed sample's loss says little about either of its
sources, so scoring mixed pools ranks the mixing noise. Here the loader scores and selects on
the *unmixed* pool and applies the batch transform only to the chosen batch, which then trains
on soft targets; :func:`soft_cross_entropy` (the per-sample loss) takes both class indices and
soft targets.

- MixUp (Zhang et al. 2018, "mixup: Beyond empirical risk minimization"):
  ``x = lam * x + (1 - lam) * x[perm]``, ``y = lam * y + (1 - lam) * y[perm]``,
  ``lam ~ Beta(alpha, alpha)``; ``alpha = 0.2`` is the paper's ImageNet default.
- CutMix (Yun et al. 2019): paste a box of area ``(1 - lam) * H * W`` from ``x[perm]``;
  the target weight is the area actually kept after clipping the box to the image;
  ``alpha = 1.0`` (uniform ``lam``) is the paper's default.

One ``lam`` and one permutation per batch (as in both papers), drawn from the ``generator``
passed in. ``lam`` can also be given explicitly (tests, or your own schedule).
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from smartloader.common.spec import Field, Section, Typed
from smartloader.common.state import Stateless

__all__ = ["one_hot_targets", "sample_lambda", "mixup", "cutmix", "soft_cross_entropy",
           "MixUp", "CutMix", "build_batch_transform", "make_batch_transform",
           "BATCH_TRANSFORM", "BATCH_TRANSFORM_TYPES"]


def _alpha(default: float, paper: str) -> Field:
    return Field("alpha", "float", default, minimum=0.0, min_exclusive=True,
                 doc=f"lam ~ Beta(alpha, alpha); {default:g} is {paper}")


_NUM_CLASSES = Field("num_classes", "int", None, minimum=2, nullable=True,
                     doc="classes of the one-hot targets; null = targets are already soft rows")
#: The ``batch_transform:`` section, applied to the chosen batch after selection.
BATCH_TRANSFORM = Typed("batch_transform", (
    ("mixup", Section("mixup", (_alpha(0.2, "the MixUp paper's ImageNet value"),
                                _NUM_CLASSES))),
    ("cutmix", Section("cutmix", (_alpha(1.0, "the CutMix paper's (uniform lam)"),
                                  _NUM_CLASSES))),
), doc="MixUp or CutMix on the selected batch (the pool is scored clean)",
    type_doc="`mixup`: blend two samples; `cutmix`: paste a box of one into another",
    required_message="is required (one of {choices})")
_MIXUP, _CUTMIX = (BATCH_TRANSFORM.types[t].default("alpha") for t in ("mixup", "cutmix"))


def one_hot_targets(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Class indices ``[n]`` -> float32 ``[n, num_classes]``; soft targets pass through."""
    if y.dtype.is_floating_point and y.dim() == 2:
        if y.shape[1] != num_classes:
            raise ValueError(f"soft targets have {y.shape[1]} classes, expected {num_classes}")
        return y.float()
    return F.one_hot(y.long(), num_classes).float()


def sample_lambda(alpha: float, generator: torch.Generator | None = None) -> float:
    """``lam ~ Beta(alpha, alpha)``, drawn from ``generator`` (never the global RNGs).

    torch's Beta sampler cannot take a generator, so one 62-bit integer from ``generator``
    seeds a NumPy ``Generator`` that draws the Beta variate.
    """
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha!r}")
    seed = int(torch.randint(0, 2 ** 62, (1,), generator=generator))
    return float(np.random.default_rng(seed).beta(alpha, alpha))


def _perm(n: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    return torch.randperm(n, generator=generator, device=generator.device if generator
                          is not None else "cpu").to(device)


def mixup(x: torch.Tensor, y: torch.Tensor, alpha: float = _MIXUP, num_classes: int | None = None,
          generator: torch.Generator | None = None, lam: float | None = None,
          perm: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """MixUp a batch; returns ``(mixed_x, soft_targets float32[n, num_classes])``.

    ``lam`` defaults to a draw from ``Beta(alpha, alpha)``, ``perm`` to a random permutation.
    """
    y = one_hot_targets(y, _classes(y, num_classes))
    lam = sample_lambda(alpha, generator) if lam is None else float(lam)
    perm = _perm(x.shape[0], generator, x.device) if perm is None else perm.to(x.device)
    # Integer images come back as float: rounding would break the exact lam mix.
    mixed = x.float() * lam + x[perm].float() * (1.0 - lam)
    if x.dtype.is_floating_point:
        mixed = mixed.to(x.dtype)
    return mixed, y * lam + y[perm.to(y.device)] * (1.0 - lam)


def cutmix(x: torch.Tensor, y: torch.Tensor, alpha: float = _CUTMIX, num_classes: int | None = None,
           generator: torch.Generator | None = None, lam: float | None = None,
           perm: torch.Tensor | None = None,
           box: tuple[int, int, int, int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """CutMix an NCHW batch; returns ``(x_with_box, soft_targets float32[n, num_classes])``.

    The box ``(top, left, height, width)`` defaults to one of area ``(1 - lam) * H * W``
    centred uniformly at random and clipped to the image; the target weight of the original
    image is the fraction of pixels it keeps. Pass ``box`` to fix it (then ``lam`` is ignored).
    """
    if x.dim() != 4:
        raise ValueError(f"cutmix needs an NCHW batch, got shape {tuple(x.shape)}")
    y = one_hot_targets(y, _classes(y, num_classes))
    n, _, h, w = x.shape
    perm = _perm(n, generator, x.device) if perm is None else perm.to(x.device)
    if box is None:
        lam = sample_lambda(alpha, generator) if lam is None else float(lam)
        cut = (1.0 - lam) ** 0.5
        ch, cw = int(round(h * cut)), int(round(w * cut))
        centre = torch.rand(2, generator=generator,
                            device=generator.device if generator is not None else "cpu")
        cy, cx = int(centre[0] * h), int(centre[1] * w)
        top, bottom = max(cy - ch // 2, 0), min(cy + ch - ch // 2, h)
        left, right = max(cx - cw // 2, 0), min(cx + cw - cw // 2, w)
    else:
        top, left, bh, bw = box
        bottom, right = min(top + bh, h), min(left + bw, w)
    out = x.clone()
    out[:, :, top:bottom, left:right] = x[perm, :, top:bottom, left:right]
    kept = 1.0 - (bottom - top) * (right - left) / (h * w)
    return out, y * kept + y[perm.to(y.device)] * (1.0 - kept)


def _classes(y: torch.Tensor, num_classes: int | None) -> int:
    if num_classes is not None:
        return num_classes
    if y.dtype.is_floating_point and y.dim() == 2:
        return y.shape[1]
    raise ValueError("num_classes is required when targets are class indices")


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy (``float32[n]``, no reduction).

    ``targets`` are class indices (``[n]``, integer) or probability rows (``[n, C]``, float,
    e.g. from :func:`mixup`); for one-hot rows both forms give the same value.
    """
    if targets.dtype.is_floating_point and targets.dim() == logits.dim():
        return -(targets.float() * F.log_softmax(logits.float(), dim=-1)).sum(-1)
    return F.cross_entropy(logits.float(), targets.long(), reduction="none")


class MixUp(Stateless):
    """``{type: mixup, alpha: 0.2, num_classes: 10}``: post-selection batch transform.

    ``transform(x, y, generator) -> (x, soft_y)``. Stateless (randomness is the loader's
    generator).
    """

    def __init__(self, alpha: float = _MIXUP, num_classes: int | None = None) -> None:
        if not alpha > 0:
            raise ValueError(f"alpha must be > 0, got {alpha!r}")
        self.alpha, self.num_classes = float(alpha), num_classes

    def __call__(self, x: torch.Tensor, y: torch.Tensor,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return mixup(x, y, self.alpha, self.num_classes, generator)



class CutMix(MixUp):
    """``{type: cutmix, alpha: 1.0, num_classes: 10}``: post-selection batch transform."""

    def __init__(self, alpha: float = _CUTMIX, num_classes: int | None = None) -> None:
        super().__init__(alpha, num_classes)

    def __call__(self, x: torch.Tensor, y: torch.Tensor,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return cutmix(x, y, self.alpha, self.num_classes, generator)


BATCH_TRANSFORM_TYPES = {"mixup": MixUp, "cutmix": CutMix}


def make_batch_transform(values: Mapping[str, Any]) -> MixUp:
    """The transform of a parsed :data:`BATCH_TRANSFORM` section."""
    return BATCH_TRANSFORM_TYPES[values["type"]](values["alpha"], values["num_classes"])


def build_batch_transform(mapping: Any, path: str = "batch_transform") -> MixUp:
    """Build a post-selection transform from ``{type: mixup|cutmix, alpha, num_classes}``."""
    return make_batch_transform(BATCH_TRANSFORM.parse(mapping, path))
