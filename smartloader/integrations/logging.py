"""Step numbers into the loggers people already use: TensorBoard, W&B, MLflow, a tqdm bar.

Each class here is a step callback (``callback=`` of :func:`smartloader.wrap`); several go in a
list and are called in order::

    from smartloader.integrations.logging import (MetricsCallback, ProgressCallback,
                                                  TensorBoardCallback)
    tb = TensorBoardCallback("runs/exp1")
    loader = smartloader.wrap(train_loader, model, cfg, total_steps=10_000,
                              callback=[tb, MetricsCallback(wandb.log),
                                        ProgressCallback(total=10_000)])

What is logged is :func:`stats_dict`: every number of the step's
:class:`~smartloader.StepStats` under ``smartloader/<field>`` (a name TensorBoard, W&B and
MLflow all accept), at the step ``stats.step``. TensorBoard (``torch.utils.tensorboard``, from
the ``tensorboard`` package) and tqdm are imported when a callback that needs them is built;
``import smartloader`` needs neither.

Cost: a callback makes SmartLoader build the :class:`~smartloader.StepStats` of every step,
which on a GPU reads the step's losses back to the host; ``every=N`` skips the logger's own
work on the other steps, not that read. docs/logging.md has the measured costs.
"""
from __future__ import annotations

import dataclasses
import os
import typing
from typing import Any, Callable

from smartloader.pipeline.stats import StepStats

__all__ = ["DEFAULT_PREFIX", "stats_dict", "logged_keys", "TensorBoardCallback",
           "MetricsCallback", "ProgressCallback"]

#: Prefix of every key: one TensorBoard section / W&B panel group; MLflow accepts the ``/``.
DEFAULT_PREFIX = "smartloader/"

#: Not logged as a value: every logger receives it as the step.
_STEP_FIELD = "step"


def _field_kinds() -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """The StepStats fields holding numbers, flags (logged as 0/1) and text, by their types.
    A field of another type is not logged; a test holds this module against the fields."""
    hints = typing.get_type_hints(StepStats)
    numbers, flags, text = [], [], []
    for f in dataclasses.fields(StepStats):
        kinds = set(typing.get_args(hints[f.name]) or (hints[f.name],)) - {type(None)}
        if f.name == _STEP_FIELD:
            continue
        if kinds and kinds <= {int, float}:
            numbers.append(f.name)
        elif kinds == {bool}:
            flags.append(f.name)
        elif kinds == {str}:
            text.append(f.name)
    return tuple(numbers), tuple(flags), tuple(text)


_NUMBERS, _FLAGS, _TEXT = _field_kinds()
#: Keys derived from the fields: the step's total overhead, and whether its phase selects.
_DERIVED = ("overhead_s", "selecting")


def logged_keys(prefix: str = DEFAULT_PREFIX, text: bool = False) -> tuple[str, ...]:
    """Every key :func:`stats_dict` can return, in its order (a key whose value is ``None``
    at a step is left out of that step's dict)."""
    return tuple(prefix + k for k in _NUMBERS + _FLAGS + _DERIVED + (_TEXT if text else ()))


def stats_dict(stats: StepStats, prefix: str = DEFAULT_PREFIX,
               text: bool = False) -> dict[str, Any]:
    """The step's numbers as a flat ``{prefix + field: value}`` dict, ready for a logger.

    Every ``int``/``float`` field of ``stats`` except ``step`` (each logger gets it as the
    step; a ``bool`` field as 0/1), with the fields that are ``None`` at this step left out (the loss means in uniform
    phases, ``resolution`` without a schedule, ...), plus two derived keys:

    - ``overhead_s``: :attr:`StepStats.overhead_s`, seconds SmartLoader added to this step;
    - ``selecting``: 1 when the step's phase selects (its rule is not ``uniform``), else 0.
      The phase *name* is text, which scalar loggers cannot plot; this number shows where
      selection was on, and stays the same for a resumed run.

    ``text=True`` adds the text fields as strings (``phase``, ``selection``, ``scored_by``
    when not ``None``) for loggers that take them (W&B does; MLflow's ``log_metrics`` and
    TensorBoard's scalars do not). Values are Python ``int``/``float`` (``str`` for text).
    """
    out: dict[str, Any] = {}
    for name in _NUMBERS:
        value = getattr(stats, name)
        if value is not None:
            out[prefix + name] = value
    for name in _FLAGS:
        value = getattr(stats, name)
        if value is not None:
            out[prefix + name] = int(value)
    out[prefix + "overhead_s"] = stats.overhead_s
    out[prefix + "selecting"] = int(stats.selection != "uniform")
    if text:
        for name in _TEXT:
            value = getattr(stats, name)
            if value is not None:
                out[prefix + name] = value
    return out


def _check_every(every: Any, who: str) -> int:
    if type(every) is not int:
        raise TypeError(f"{who}: every must be an int >= 1 (log every N-th step), got "
                        f"{every!r} ({type(every).__name__}); e.g. every=10")
    if every < 1:
        raise ValueError(f"{who}: every must be >= 1 (log every N-th step), got {every}; "
                         f"every=1 logs every step")
    return every


def _check_prefix(prefix: Any, who: str) -> str:
    if not isinstance(prefix, str):
        raise TypeError(f"{who}: prefix must be a str (prepended to every key, default "
                        f"{DEFAULT_PREFIX!r}), got {type(prefix).__name__}")
    return prefix


class TensorBoardCallback:
    """Writes :func:`stats_dict` as TensorBoard scalars at ``stats.step``.

    Args:
        writer_or_log_dir: a directory (``str`` or path), for which a
            ``torch.utils.tensorboard.SummaryWriter`` is created and owned by this callback,
            or a writer you made (anything with ``add_scalar``/``add_text``/``flush``), which
            stays yours.
        every: write the steps whose ``stats.step`` is a multiple of it (default 1: all).
        prefix: prepended to every tag (default ``"smartloader/"``: one section).

    A step's scalars go into the event file as one event (``add_scalar`` per tag would make
    one each, and on the CPU cost several times more per step; another writer type gets
    ``add_scalar`` per tag). The phase name is written as text (tag ``<prefix>phase``,
    ``"name (rule)"``) at the first step of each phase it sees, whatever ``every``.

    ``SummaryWriter`` writes from a background thread and flushes every two minutes;
    :meth:`flush` writes what is queued now, :meth:`close` flushes and closes the writer if
    this callback created it (a writer you passed is only flushed: you close it). Also a
    context manager that closes on exit.
    """

    def __init__(self, writer_or_log_dir: Any, every: int = 1, prefix: str = DEFAULT_PREFIX):
        self.every = _check_every(every, "TensorBoardCallback")
        self.prefix = _check_prefix(prefix, "TensorBoardCallback")
        if isinstance(writer_or_log_dir, (str, os.PathLike)):
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:
                raise ImportError("TensorBoardCallback needs the tensorboard package: pip "
                                  "install tensorboard (or smartloader[tensorboard])") from e
            self.writer = SummaryWriter(log_dir=os.fspath(writer_or_log_dir))
            self._owns_writer = True
        elif all(hasattr(writer_or_log_dir, a) for a in ("add_scalar", "add_text", "flush")):
            self.writer = writer_or_log_dir
            self._owns_writer = False
        else:
            raise TypeError(f"TensorBoardCallback: writer_or_log_dir must be a log directory "
                            f"or a SummaryWriter, got {type(writer_or_log_dir).__name__}")
        self._phase: str | None = None
        self._one_event = _one_event_writer(self.writer)

    def __call__(self, stats: StepStats) -> None:
        if stats.phase != self._phase:
            self._phase = stats.phase
            self.writer.add_text(self.prefix + "phase", f"{stats.phase} ({stats.selection})",
                                 stats.step)
        if stats.step % self.every:
            return
        scalars = stats_dict(stats, self.prefix)
        if self._one_event is not None:
            self._one_event(scalars, stats.step)
        else:
            for tag, value in scalars.items():
                self.writer.add_scalar(tag, value, stats.step)

    def flush(self) -> None:
        """Write everything queued so far to the event file."""
        self.writer.flush()

    def close(self) -> None:
        """Flush; close the writer too when this callback created it."""
        if self._owns_writer:
            self.writer.close()
        else:
            self.writer.flush()

    def __enter__(self) -> TensorBoardCallback:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _one_event_writer(writer: Any) -> Callable[[dict, int], None] | None:
    """For torch's ``SummaryWriter``: a function writing a step's scalars as one event, the
    values ``add_scalar`` would write (``simple_value``); ``None`` for other writers."""
    try:
        from torch.utils.tensorboard import SummaryWriter
        from tensorboard.compat.proto.summary_pb2 import Summary
    except ImportError:
        return None
    if not isinstance(writer, SummaryWriter):
        return None
    Value = Summary.Value

    def write(scalars: dict, step: int) -> None:
        summary = Summary(value=[Value(tag=t, simple_value=v) for t, v in scalars.items()])
        # the file writer add_scalar itself writes through (the writer makes it lazily)
        writer._get_file_writer().add_summary(summary, step)
    return write


class MetricsCallback:
    """Passes :func:`stats_dict` to any ``log_fn(metrics, step=...)``: W&B, MLflow, your own.

    ``MetricsCallback(wandb.log)`` calls ``wandb.log(metrics, step=stats.step)``;
    ``MetricsCallback(mlflow.log_metrics)`` calls ``mlflow.log_metrics(metrics,
    step=stats.step)``. The default keys (``smartloader/pool_loss_mean``, ...) are valid
    names for both.

    Args:
        log_fn: called with the dict first and the step as the keyword ``step_kw``.
        every: log the steps whose ``stats.step`` is a multiple of it (default 1: all).
        prefix: prepended to every key (default ``"smartloader/"``).
        step_kw: the keyword that carries the step (default ``"step"``); ``None`` calls
            ``log_fn(metrics)`` alone, for loggers that count steps themselves.
        text: also pass the phase, selection and ``scored_by`` as strings (for W&B; MLflow's
            ``log_metrics`` takes numbers only). Default ``False``.
    """

    def __init__(self, log_fn: Callable[..., Any], every: int = 1,
                 prefix: str = DEFAULT_PREFIX, step_kw: str | None = "step",
                 text: bool = False):
        if not callable(log_fn):
            raise TypeError(f"MetricsCallback: log_fn must be callable (e.g. wandb.log or "
                            f"mlflow.log_metrics), got {type(log_fn).__name__}")
        if step_kw is not None and not (isinstance(step_kw, str) and step_kw.isidentifier()):
            raise TypeError(f"MetricsCallback: step_kw must be a keyword name such as 'step' "
                            f"(or None to pass no step), got {step_kw!r}")
        if not isinstance(text, bool):
            raise TypeError(f"MetricsCallback: text must be True or False, got {text!r}")
        self.log_fn = log_fn
        self.every = _check_every(every, "MetricsCallback")
        self.prefix = _check_prefix(prefix, "MetricsCallback")
        self.step_kw = step_kw
        self.text = text

    def __call__(self, stats: StepStats) -> None:
        if stats.step % self.every:
            return
        metrics = stats_dict(stats, self.prefix, self.text)
        if self.step_kw is None:
            self.log_fn(metrics)
        else:
            self.log_fn(metrics, **{self.step_kw: stats.step})


class ProgressCallback:
    """A tqdm progress bar over the run's steps, showing the phase, the pool's and the chosen
    samples' mean scoring loss, and SmartLoader's overhead per step.

    Args:
        total: the run's steps, the bar's 100%; ``None`` counts without an end until
            :meth:`bind` gives one. With ``total_epochs=N`` SmartLoader computes the steps:
            build the bar without a total and call ``bar.bind(loader)`` after ``wrap``.
        every: refresh the numbers shown at steps that are a multiple of it (default 1; the
            count moves every step, and tqdm redraws at most ten times a second).
        desc: the bar's label (default ``"smartloader"``).
        file: where it is written (default ``sys.stderr``, tqdm's default).
        disable: no bar at all (e.g. ``disable=rank != 0``).
        **tqdm_kwargs: passed on to ``tqdm.tqdm`` (``leave``, ``ncols``, ``mininterval``...).

    The bar starts at the first step it is called with (a resumed run starts part-way) and
    closes itself after step ``total - 1``; :meth:`close` ends it earlier. Steps past
    ``total`` are not drawn (SmartLoader warns that the run goes past ``total_steps``).
    """

    def __init__(self, total: int | None = None, every: int = 1, *,
                 desc: str = "smartloader", file: Any = None, disable: bool = False,
                 **tqdm_kwargs: Any):
        self.total = _check_total(total)
        self.every = _check_every(every, "ProgressCallback")
        try:
            from tqdm import tqdm
        except ImportError as e:
            raise ImportError("ProgressCallback needs tqdm: pip install tqdm") from e
        self._tqdm = tqdm
        self._kwargs = dict(desc=desc, file=file, disable=disable, unit="step", **tqdm_kwargs)
        self._bar: Any = None
        self._closed = False

    def bind(self, loader: Any) -> ProgressCallback:
        """Take the total from ``loader.config.total_steps`` (a :class:`~smartloader.SmartLoader`
        this bar is a callback of); returns the bar."""
        config = getattr(loader, "config", None)
        if config is None or not hasattr(config, "total_steps"):
            raise TypeError(f"ProgressCallback.bind: expected the SmartLoader this bar is a "
                            f"callback of, got {type(loader).__name__}")
        self.total = _check_total(config.total_steps)
        if self._bar is not None:
            self._bar.total = self.total
            self._bar.refresh()
        return self

    def __call__(self, stats: StepStats) -> None:
        if self._closed:
            return
        bar = self._bar
        if bar is None:
            bar = self._bar = self._tqdm(total=self.total, initial=stats.step, **self._kwargs)
        if stats.step % self.every == 0:
            bar.set_postfix_str(progress_note(stats), refresh=False)
        bar.update(stats.step + 1 - bar.n)
        if self.total is not None and stats.step + 1 >= self.total:
            self.close()

    def close(self) -> None:
        """End the bar (draw its last state); later steps are not drawn."""
        if self._bar is not None:
            self._bar.close()
        self._closed = True

    def __enter__(self) -> ProgressCallback:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def progress_note(stats: StepStats) -> str:
    """The bar's text for one step: ``phase select | loss pool 2.310 chosen 2.870 | +1.2 ms``
    (the losses only when the step was scored)."""
    parts = [f"phase {stats.phase}"]
    if stats.pool_loss_mean is not None and stats.selected_loss_mean is not None:
        parts.append(f"loss pool {stats.pool_loss_mean:.3f} chosen "
                     f"{stats.selected_loss_mean:.3f}")
    parts.append(f"+{1000 * stats.overhead_s:.1f} ms")
    return " | ".join(parts)


def _check_total(total: Any) -> int | None:
    if total is not None and (type(total) is not int or total < 1):
        raise ValueError(f"ProgressCallback: total must be the run's steps, an int >= 1, or "
                         f"None, got {total!r}; e.g. total=loader.config.total_steps")
    return total
