"""Hard Augment (thesis §3.3.3, Eq. 3.10-3.11).

For self-supervised training: make ``m`` augmented views of each image (the thesis uses
m = 4-6; 6 in its ImageNet runs), embed all of them at a low resolution (``r_sel = 64``
for training at 224) with a no-grad forward, compute the SSL loss of every one of the
``m (m - 1) / 2`` view pairs, and train on the pair with the largest loss, at full
resolution. Overhead ``1 - r^2 C / (r^2 C + m r_sel^2)`` is about 5% at r = 224, r_sel = 64,
m = 4, C = 6 (cost of a training step over a low-res forward).

Pure parts: :func:`view_pairs`, :func:`hardest_pairs`, :func:`score_view_pairs`,
:func:`gather_views`; :class:`HardAugment` (``{resolution: 64}``) chains them.
:class:`HardAugmentLoader` wraps a data loader: it makes the views with
:class:`~smartloader.augment.BatchAugment` from its own generator and yields the hardest pair.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping

import torch
import torch.nn.functional as F

from smartloader.augment import BatchAugment
from smartloader.augment.geometry import to_unit_float
from smartloader.common.batch import get_field, replace_field, resolve_key
from smartloader.common.epochs import check_epoch, forward_set_epoch, mix_seed
from smartloader.common.spec import Field, Section
from smartloader.common.state import (Stateless, StateError, check_generator_state, check_int,
                                      check_same, show, strict_keys)
from smartloader.scoring.model import scoring_mode

#: The ``hard_augment:`` section.
HARD_AUGMENT = Section("hard_augment", (
    Field("resolution", "int", 64, minimum=1, nullable=True,
          doc="side (px) the views are scored at (the thesis' r_sel); null = their own"),
), doc="score m augmented views at low resolution and train on the hardest pair")
_RESOLUTION = HARD_AUGMENT.default("resolution")

__all__ = ["view_pairs", "hardest_pairs", "score_view_pairs", "gather_views", "HardAugment",
           "build_hard_augment", "HardAugmentLoader", "HardAugmentStats"]

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
                     resolution: int | None = _RESOLUTION) -> torch.Tensor:
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
    with scoring_mode(model):
        z = model(_resize(views.reshape(n * m, *views.shape[2:]), resolution))
        z = z.reshape(n, m, *z.shape[1:])
        losses = [pair_loss(z[:, a], z[:, b]).reshape(n) for a, b in pairs.tolist()]
    return torch.stack(losses, dim=1).float()


def gather_views(views: torch.Tensor, pairs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The chosen two views per image at full resolution: two ``[n, C, H, W]`` tensors."""
    rows = torch.arange(views.shape[0], device=views.device)
    pairs = pairs.to(views.device)
    return views[rows, pairs[:, 0]], views[rows, pairs[:, 1]]


class HardAugment(Stateless):
    """``{resolution: 64}``: pick the hardest view pair per image, return it at full res.

    ``hard = HardAugment(64); view_a, view_b, pairs = hard(model, views, pair_loss)``.
    Stateless.
    """

    def __init__(self, resolution: int | None = _RESOLUTION) -> None:
        if resolution is not None and resolution < 1:
            raise ValueError(f"resolution must be >= 1 or None, got {resolution!r}")
        self.resolution = resolution

    def __call__(self, model: torch.nn.Module, views: torch.Tensor,
                 pair_loss: PairLoss) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        losses = score_view_pairs(model, views, pair_loss, self.resolution)
        pairs = hardest_pairs(losses, views.shape[1])
        return (*gather_views(views, pairs), pairs)



def build_hard_augment(mapping: Any, path: str = "hard_augment") -> HardAugment:
    """``{resolution}`` (:data:`HARD_AUGMENT`; ``null`` = score at the views' own
    resolution)."""
    return HardAugment(HARD_AUGMENT.parse(mapping, path)["resolution"])


# -- the loader mode: views made, scored and chosen on the fly ------------------------------

@dataclass(frozen=True)
class HardAugmentStats:
    """Numbers for one batch yielded by :class:`HardAugmentLoader` (its ``.stats``).

    Times are host wall-clock seconds; on CUDA the wrapper synchronises around each part so
    they are the real device time. Pair losses are ``pair_loss`` values at ``resolution``.
    """

    step: int                    #: batches yielded over the run, from 0
    epoch: int
    batch_size: int              #: images (each yields two views)
    views: int                   #: m, views made per image
    chosen_pair_loss: float      #: mean over images of the hardest pair's loss
    all_pairs_loss: float        #: mean over images and all m (m - 1) / 2 pairs
    augment_time_s: float        #: making the n * m views at full resolution
    score_time_s: float          #: resizing to ``resolution``, the no-grad forward, pair losses


_STATE_VERSION = 2  # 2: the step counter joined the state
_STATE_KEYS = {"version", "epoch", "position", "step", "generator", "generator_device", "seed",
               "views", "resolution"}


class HardAugmentLoader:
    """Hard Augment as a loader: every batch carries the hardest view pair of each image.

    For each batch of ``n`` images it makes ``views`` (m) augmented views per image with
    ``augment(x, generator)`` (default: :class:`~smartloader.augment.BatchAugment` at the
    images' size, magnitude 5) in one batched call on the model's device, scores all
    ``m (m - 1) / 2`` pairs with ``pair_loss`` at ``resolution`` px (:func:`score_view_pairs`:
    no autograd, eval mode, every module's ``training`` flag restored), and yields the batch
    with its input field replaced by the tuple ``(view_a, view_b)``: two ``float32[n, C, H,
    W]`` tensors in [0, 1] (``uint8`` inputs are divided by 255 first), on the model's device.
    A batch that is a bare tensor becomes ``(view_a, view_b)``.

    ``input_key``: where the images are (``None``: position 0 of a tuple/list, ``"image"`` of
    a mapping, or the batch itself if it is a tensor; else a key, index or key path).
    All randomness comes from the wrapper's own generator seeded from ``(seed, epoch)``;
    the global RNGs are never touched. ``state_dict()`` holds epoch, position and generator.
    """

    def __init__(self, loader: Iterable, model: torch.nn.Module, *, pair_loss: PairLoss,
                 views: int = 4, augment: Callable[[torch.Tensor, torch.Generator],
                                                   torch.Tensor] | None = None,
                 resolution: int | None = _RESOLUTION, seed: int = 0,
                 input_key: Any = None) -> None:
        if isinstance(views, bool) or not isinstance(views, int) or views < 2:
            raise ValueError(f"views must be an integer >= 2 (pairs need two views), "
                             f"got {views!r}")
        if resolution is not None and (isinstance(resolution, bool)
                                       or not isinstance(resolution, int) or resolution < 1):
            raise ValueError(f"resolution must be an integer >= 1 or None, got {resolution!r}")
        if not callable(pair_loss):
            raise TypeError(f"pair_loss must be callable (z_a, z_b) -> Tensor[n], "
                            f"got {type(pair_loss).__name__}")
        if augment is not None and not callable(augment):
            raise TypeError(f"augment must be callable (x, generator) -> x or None, "
                            f"got {type(augment).__name__}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.loader, self.model, self.pair_loss = loader, model, pair_loss
        self.views, self.augment, self.resolution, self.seed = views, augment, resolution, seed
        self._input_key = None if input_key is None else (
            tuple(input_key) if isinstance(input_key, (list, tuple)) else (input_key,))
        param = next(iter(model.parameters()), None)
        self.device = param.device if param is not None else torch.device("cpu")
        self._generator = torch.Generator(device=self.device)
        self._epoch = self._position = self._step = 0
        self._resume: dict[str, Any] | None = None
        self._stats: HardAugmentStats | None = None
        self._active = False

    # -- public surface -------------------------------------------------------------------
    @property
    def batch_size(self) -> int | None:
        """The wrapped loader's ``batch_size`` (images per batch; each yields two views)."""
        return getattr(self.loader, "batch_size", None)

    @property
    def stats(self) -> HardAugmentStats | None:
        """:class:`HardAugmentStats` of the last yielded batch; ``None`` before the first."""
        return self._stats

    @property
    def epoch(self) -> int:
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch the next ``iter()`` runs (its seed and the wrapped sampler's)."""
        check_epoch(epoch)
        if self._resume is not None and self._resume["epoch"] != epoch:
            self._resume = None        # another epoch: start it from its beginning
        self._epoch = epoch

    def __len__(self) -> int:
        """Batches in one full epoch: one per wrapped batch."""
        return len(self.loader)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Any]:
        return self._run()

    def __repr__(self) -> str:
        return (f"HardAugmentLoader(loader={type(self.loader).__name__}, views={self.views}, "
                f"resolution={self.resolution}, epoch={self._epoch}, step={self._step})")

    # -- state ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Epoch, position in it (batches the consumer has received), the generator, the
        batches yielded over the run (``stats.step``), and seed / views / resolution
        (checked on load)."""
        if self._resume is not None:  # loaded, not yet resumed: hand the position on
            where = self._resume
        else:
            mid = self._position > 0
            where = {"epoch": self._epoch, "position": self._position,
                     "generator": self._generator.get_state() if mid else None,
                     "generator_device": str(self.device)}
        return {"version": _STATE_VERSION, "epoch": where["epoch"],
                "position": where["position"], "step": self._step,
                "generator": where["generator"], "generator_device": where["generator_device"],
                "seed": self.seed, "views": self.views, "resolution": self.resolution}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Strict: every entry is checked before anything changes and a problem raises
        :class:`~smartloader.errors.StateError` (a ``ValueError``) naming it, e.g. a state of
        another seed, views or resolution. On the next ``iter()`` the wrapped loader's first
        ``position`` batches of that epoch are read and dropped (not augmented), then it
        continues."""
        self._check_state(state)
        if self._active:
            raise RuntimeError("load_state_dict() during an iteration; call it before iter()")
        self._epoch, self._position, self._stats = state["epoch"], 0, None
        self._step = state["step"]
        self._resume = None
        if state["position"] > 0:
            self._resume = {k: state[k] for k in ("epoch", "position", "generator",
                                                  "generator_device")}
            self._resume["generator"] = state["generator"].cpu()

    def _check_state(self, state: Any, path: str = "state") -> None:
        if isinstance(state, Mapping) and "version" in state:  # first: another layout
            version = state["version"]
            if type(version) is not int or version != _STATE_VERSION:
                raise StateError(f"{path}.version: saved {version!r}, this loader reads "
                                 f"{_STATE_VERSION}")
        strict_keys(self, state, _STATE_KEYS, path)
        for k in ("seed", "views", "resolution"):
            check_same(state[k], getattr(self, k), f"{path}.{k}", "loader")
        check_int(state["epoch"], f"{path}.epoch")
        check_int(state["step"], f"{path}.step")
        try:
            length = len(self.loader)  # type: ignore[arg-type]
        except TypeError:
            length = None
        position = check_int(state["position"], f"{path}.position", 0, length)
        device = state["generator_device"]
        try:
            if not isinstance(device, str):
                raise TypeError
            torch.device(device)
        except (RuntimeError, TypeError):
            raise StateError(f"{path}.generator_device: must be a device name, got "
                             f"{show(device)}") from None
        gen = state["generator"]
        if position == 0:
            if gen is not None:
                raise StateError(f"{path}.generator: must be None at the start of an epoch "
                                 f"({path}.position 0), got {show(gen)}")
        elif gen is None:
            raise StateError(f"{path}.generator: a state saved mid-epoch ({path}.position "
                             f"{position}) needs the generator state, got None")
        else:
            check_generator_state(gen, f"{path}.generator", self.device)

    # -- the pipeline ---------------------------------------------------------------------
    def _run(self) -> Iterator[Any]:
        epoch, gen = self._epoch, self._generator
        forward_set_epoch(self.loader, epoch)
        it = iter(self.loader)
        resume, self._resume = self._resume, None
        self._position = 0
        if resume is not None and resume["epoch"] == epoch:
            for _ in range(resume["position"]):
                next(it)
            gen.set_state(resume["generator"])
            self._position = resume["position"]
        else:
            gen.manual_seed(mix_seed(self.seed, epoch))
        self._active = True
        try:
            for batch in it:
                out = self._hard_pair(batch, gen)
                self._position += 1
                self._step += 1
                yield out
            self._epoch, self._position = epoch + 1, 0
        finally:
            self._active = False

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _hard_pair(self, batch: Any, gen: torch.Generator) -> Any:
        if torch.is_tensor(batch) and self._input_key is None:
            key: tuple = ()
        else:
            key = resolve_key(batch, self._input_key, "input")
        x = get_field(batch, key, "input_key") if key else batch
        if not torch.is_tensor(x) or x.dim() != 4:
            raise TypeError(f"input_key: the input must be an NCHW tensor, got "
                            f"{type(x).__name__} {tuple(getattr(x, 'shape', ()))}")
        n, m = x.shape[0], self.views
        x = to_unit_float(x.to(self.device, non_blocking=True))
        augment = self.augment or BatchAugment(tuple(x.shape[-2:]))
        self._sync()
        t0 = time.perf_counter()
        # rows ordered (image, view): one batched call makes all n * m views.
        v = augment(x.repeat_interleave(m, dim=0), gen)
        v = v.reshape(n, m, *v.shape[1:])
        self._sync()
        t1 = time.perf_counter()
        losses = score_view_pairs(self.model, v, self.pair_loss, self.resolution)
        pairs = hardest_pairs(losses, m)
        self._sync()
        t2 = time.perf_counter()
        view_a, view_b = gather_views(v, pairs)
        self._stats = HardAugmentStats(
            step=self._step, epoch=self._epoch, batch_size=n, views=m,
            chosen_pair_loss=float(losses.max(dim=1).values.mean()),
            all_pairs_loss=float(losses.mean()), augment_time_s=t1 - t0, score_time_s=t2 - t1)
        return replace_field(batch, key, (view_a, view_b))
