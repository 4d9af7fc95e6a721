"""The one resume test every stateful part passes.

Run ``steps`` steps uninterrupted; build again, run ``split`` steps, save the state (through
``torch.save`` / ``torch.load`` in memory, so it must be serialisable), build again, load it,
run the remaining steps; every step of the two runs must be exactly equal (tensors by dtype,
shape and value, containers by type and content).

``build()`` returns a fresh run, built identically on every call: the stateful part, or a
tuple whose first item is the part and whose other items are what the step needs (a model,
an optimizer, a ``torch.Generator``...). Every item with ``state_dict()`` is saved and
loaded, and a ``torch.Generator``'s state too.

``step_fn(run, i, batch)`` makes step ``i`` and returns what to compare besides the batch.
When the part is iterable (a loader), ``batch`` is its next batch, epochs following one
another as in a training loop (``set_epoch(part.epoch)`` before each), and the yielded
batches are always compared; the default ``step_fn`` does nothing more. For any other part,
``batch`` is ``None`` and ``step_fn`` does the step.
"""
from __future__ import annotations

import copy
import io
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
import torch

__all__ = ["assert_resumes", "assert_same", "save_load", "Resumed", "steps_of"]


def assert_same(a: Any, b: Any, where: str = "value") -> None:
    """Exact equality of nested states or batches; the message names the first difference."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} vs {type(b).__name__}"
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype, f"{where}: dtype {a.dtype} vs {b.dtype}"
        assert a.shape == b.shape, f"{where}: shape {tuple(a.shape)} vs {tuple(b.shape)}"
        a, b = a.detach().cpu(), b.detach().cpu()
        if a.is_floating_point() or a.is_complex():
            nan = torch.isnan(a)
            assert torch.equal(nan, torch.isnan(b)), f"{where}: NaN at other positions"
            a, b = a.masked_fill(nan, 0), b.masked_fill(nan, 0)
        assert torch.equal(a, b), f"{where}: values differ"
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, f"{where}: {a.dtype}{a.shape}"
        assert np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"), f"{where}: values differ"
    elif isinstance(a, dict):
        assert set(a) == set(b), f"{where}: keys {sorted(a, key=str)} vs {sorted(b, key=str)}"
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{where}: length {len(a)} vs {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and a != a:
        assert b != b, f"{where}: nan vs {b!r}"
    else:
        assert a == b, f"{where}: {a!r} vs {b!r}"


def save_load(state: Any) -> Any:
    """``state`` after ``torch.save`` and ``torch.load`` (weights only) through memory."""
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def _items(run: Any) -> tuple:
    return run if isinstance(run, tuple) else (run,)


def _save(run: Any) -> list:
    out = []
    for item in _items(run):
        if isinstance(item, torch.Generator):
            out.append(item.get_state())
        elif hasattr(item, "state_dict"):
            out.append(item.state_dict())
        else:
            out.append(None)
    return out


def _load(run: Any, states: list) -> None:
    for item, state in zip(_items(run), states):
        if isinstance(item, torch.Generator):
            item.set_state(state)
        elif state is not None:
            item.load_state_dict(state)


def _copy(batch: Any) -> Any:
    """A copy of a yielded batch (tensors cloned), safe from buffer reuse."""
    if isinstance(batch, torch.Tensor):
        return batch.detach().clone()
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(_copy(x) for x in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(_copy(x) for x in batch)
    if isinstance(batch, dict):
        return {k: _copy(v) for k, v in batch.items()}
    return copy.deepcopy(batch)


def _stream(part: Any) -> Iterator[Any]:
    """The part's batches over consecutive epochs, as a training loop reads them."""
    empty = 0  # a resumed epoch may have nothing left; two empty epochs in a row is a bug
    while empty < 2:
        if hasattr(part, "set_epoch") and hasattr(part, "epoch"):
            part.set_epoch(part.epoch)
        it = iter(part)
        empty += 1
        try:
            for batch in it:
                empty = 0
                yield batch
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()
    raise AssertionError("two epochs in a row yielded no batch")


class _Runner:
    def __init__(self, run: Any, step_fn: Callable | None):
        self.run = run
        self.part = _items(run)[0]
        self.step_fn = step_fn
        self.iterable = hasattr(self.part, "__iter__")
        if not self.iterable and step_fn is None:
            raise TypeError("a part that is not iterable needs a step_fn")
        self.stream = _stream(self.part) if self.iterable else None

    def steps(self, start: int, stop: int) -> list:
        out = []
        for i in range(start, stop):
            batch = next(self.stream) if self.iterable else None
            extra = None if self.step_fn is None else self.step_fn(self.run, i, batch)
            out.append((_copy(batch), extra) if self.iterable else extra)
        return out

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()


@dataclass
class Resumed:
    """What :func:`assert_resumes` ran, for further assertions."""

    full: list            #: the uninterrupted run's records, one per step
    resumed: list         #: the interrupted-and-resumed run's records
    state: Any            #: the part's saved state (after the serialisation round trip)
    interrupted: Any      #: the run object at the moment it was saved (not advanced further)
    full_run: Any         #: the uninterrupted run object after its last step
    resumed_run: Any      #: the resumed run object after its last step


def assert_resumes(build: Callable[[], Any], steps: int, split: int,
                   step_fn: Callable[[Any, int, Any], Any] | None = None,
                   before_load: Callable[[Any, Any], None] | None = None) -> Resumed:
    """Run ``steps`` steps == run ``split``, save, rebuild, load, run the rest: exactly.

    Also checks that the part's ``state_dict()`` right after loading equals the loaded state.
    ``before_load(run, state)``, if given, is called with the rebuilt run and the part's
    saved state just before it is loaded (e.g. to try bad states on it first). Returns a
    :class:`Resumed` with both runs' records (for loaders ``(batch, step_fn output)``
    pairs, else the ``step_fn`` outputs).
    """
    assert 0 <= split <= steps
    straight = _Runner(build(), step_fn)
    full = straight.steps(0, steps)
    straight.close()

    first = _Runner(build(), step_fn)
    resumed = first.steps(0, split)
    saved = save_load(_save(first.run))
    first.close()

    second = _Runner(build(), step_fn)
    if before_load is not None:
        before_load(second.run, saved[0])
    _load(second.run, saved)
    assert_same(save_load(second.part.state_dict()), saved[0], "state after loading")
    resumed += second.steps(split, steps)
    second.close()

    assert len(full) == len(resumed) == steps
    for i, (a, b) in enumerate(zip(full, resumed)):
        assert_same(b, a, f"step {i} (resumed at {split})")
    return Resumed(full, resumed, saved[0], first.run, straight.run, second.run)


def steps_of(records: list) -> list:
    """The ``step_fn`` outputs of a loader's records."""
    return [extra for _, extra in records]


# -- SmartLoader runs -----------------------------------------------------------------------
def loader_build(config: Any, data: Callable[[], Any] | None = None,
                 model: Callable[[], Any] | None = None) -> Callable[[], tuple]:
    """A ``build`` for :func:`assert_resumes`: ``(SmartLoader, model, optimizer)`` over
    ``data()`` (default :func:`helpers.epoch_loader`, an order that is a function of the
    epoch) with ``model()`` (default :func:`helpers.trainable_model`: model, optimizer)."""
    import smartloader
    from helpers import epoch_loader, trainable_model

    def build() -> tuple:
        net, opt = (model or trainable_model)()
        return smartloader.wrap((data or epoch_loader)(), net, config), net, opt
    return build


def train_step(run: tuple, i: int, batch: Any) -> tuple:
    """A user's training step on a ``(inputs, targets, ...)`` batch: per-sample losses
    (weighted by ``replay_weights`` when there are any), reported to the loader, one SGD
    step. Returns the step's ``(phase, step)`` from ``loader.stats``."""
    from smartloader.scoring import default_loss
    loader, model, opt = run
    device = next(model.parameters()).device
    losses = default_loss(model(batch[0].to(device).float()), batch[1].to(device))
    weights = loader.replay_weights
    loss = (losses * weights.to(device)).mean() if weights is not None else losses.mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    loader.report_losses(losses.detach())
    return loader.stats.phase, loader.stats.step
