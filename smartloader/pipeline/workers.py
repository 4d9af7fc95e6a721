"""A persistent pool of worker processes that load dataset samples by index.

:class:`SampleWorkers` starts ``workers`` processes once, each holding the dataset (inherited
by ``fork`` where the platform has it, else pickled to a ``spawn`` child), and serves
*tickets*: ``submit(kind, indices, seeds)`` queues a list of indices and returns at once;
``result(ticket)`` waits for that list's samples, collated in the worker with ``collate``
(the loader's ``collate_fn``). ``kind`` is ``"full"`` (``dataset[i]``: the dataset's own
transforms) or ``"low"`` (``dataset.low_res(i, size)``). A caller that wants all workers busy
on one batch submits it as several tickets (one per worker) and concatenates the results.

Why not a ``DataLoader``: a DataLoader reads its sampler ahead of what it yields, so feeding
it indices that are chosen only after a scoring pass stalls it (or deadlocks it) waiting for
indices that do not exist yet. Tickets are submitted exactly when their indices are known.

Each sample is loaded after seeding ``torch`` and ``random`` in the worker with its own seed
(the worker process's global generators, never the training process's: a user's transforms
draw from the global generators, which is also why a DataLoader seeds its workers), so a
random transform gives the same sample whichever worker loads it, and a resumed run
loads what the uninterrupted one did (only the CPU generator is seeded: ``torch.manual_seed``
seeds every accelerator backend too and costs a tenth of loading a small image). With the
default ``collate_fn``, a ticket given a shared buffer (``out``) has its tensor fields
stacked straight into it, without a batch-sized allocation and a second copy in the worker.
A collated tensor of at least 64 KiB comes back
through shared memory (``torch.multiprocessing``'s reductions: one file descriptor passed per
tensor, which costs milliseconds, hence collating in the worker); a smaller one (labels,
indices) is pickled by value. Nothing waits forever: ``result`` fails after
``timeout_s`` seconds, or as soon as a worker process has died, with an error that names
the worker; an exception in ``__getitem__``/``low_res`` comes back with its traceback and
the index. :meth:`close` (also run when the pool is garbage collected and at interpreter
exit) stops the processes, terminating any that do not stop within a second.
"""
from __future__ import annotations

import queue
import random
import time
import traceback
import weakref
from typing import Any, Sequence

import torch
import torch.multiprocessing as tmp

from smartloader.common import batch as B

__all__ = ["SampleWorkers", "WorkerError"]


class WorkerError(RuntimeError):
    """A sample failed to load in a worker process, or a worker stopped."""


def _context(context: Any = None):
    """The multiprocessing context: ``context`` (a name or a context, as a DataLoader's
    ``multiprocessing_context``), else ``fork`` where the platform has it, else ``spawn``."""
    if context is not None:
        return tmp.get_context(context) if isinstance(context, str) else context
    methods = tmp.get_all_start_methods()
    return tmp.get_context("fork" if "fork" in methods else "spawn")


#: tensors below this many bytes are sent by value, not through a shared-memory segment
BY_VALUE = 1 << 16


def _rebuild(data: bytes, dtype: torch.dtype, shape: tuple) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).view(dtype).reshape(shape)


class _Small:
    """A small tensor pickled by value (its bytes), rebuilt as a tensor when unpickled."""

    def __init__(self, t: torch.Tensor):
        self.t = t

    def __reduce__(self):
        t = self.t.detach().contiguous().reshape(-1)
        return _rebuild, (t.view(torch.uint8).numpy().tobytes(), self.t.dtype,
                          tuple(self.t.shape))


def _pack(x: Any) -> Any:
    """``x`` with its small CPU tensors wrapped to travel by value."""
    if isinstance(x, torch.Tensor):
        small = x.device.type == "cpu" and x.nbytes < BY_VALUE and not x.is_sparse \
            and x.layout == torch.strided
        return _Small(x) if small else x
    if isinstance(x, dict) and type(x) is dict:
        return {k: _pack(v) for k, v in x.items()}
    if type(x) in (list, tuple):
        return type(x)(_pack(v) for v in x)
    return x  # namedtuples, custom types: as they are


class _Written:
    """Marks a field the worker wrote into the caller's shared buffer (``WRITTEN``)."""

    def __reduce__(self):
        return "WRITTEN"  # unpickles as this module's singleton

    def __repr__(self) -> str:
        return "WRITTEN"


#: a field of a result that is in the ``out`` buffer of its ticket
WRITTEN = _Written()


def _write(out: Any, batch: Any, at: int) -> Any:
    """``batch`` with each tensor field that fits ``out`` (same per-sample shape and dtype)
    copied into ``out[at:at + n]`` and replaced by ``WRITTEN``; other fields as they are."""
    if out is None:
        return batch
    if isinstance(out, torch.Tensor):
        if isinstance(batch, torch.Tensor) and batch.dim() >= 1 and \
                batch.shape[1:] == out.shape[1:] and batch.dtype == out.dtype and \
                at + batch.shape[0] <= out.shape[0]:
            out[at:at + batch.shape[0]].copy_(batch)
            return WRITTEN
        return batch
    if isinstance(out, dict) and type(batch) is dict and list(out) == list(batch):
        return {k: _write(out[k], batch[k], at) for k in batch}
    if type(out) in (list, tuple) and type(batch) is type(out) and len(out) == len(batch):
        return type(batch)(_write(o, b, at) for o, b in zip(out, batch))
    return batch


def _paths(out: Any, at: tuple = ()) -> list[tuple]:
    """The positions (keys and indices from the top) of the tensors in ``out``."""
    if isinstance(out, torch.Tensor):
        return [at]
    if isinstance(out, dict):
        return [p for k, v in out.items() for p in _paths(v, at + (k,))]
    if isinstance(out, (list, tuple)):
        return [p for i, v in enumerate(out) for p in _paths(v, at + (i,))]
    return []


def _sample_field(x: Any, path: tuple, ref: torch.Tensor) -> torch.Tensor | None:
    """The tensor at ``path`` of sample ``x`` if it has ``ref``'s per-sample shape and
    dtype, else None."""
    try:
        node = B.get_field(x, path)
    except KeyError:
        return None
    ok = isinstance(node, torch.Tensor) and node.shape == ref.shape[1:] \
        and node.dtype == ref.dtype
    return node if ok else None


_NOTHING = torch.empty(0)


def _default_collate() -> Any:
    from torch.utils.data import default_collate
    return default_collate


def _stack_into(samples: list, out: Any, at: int) -> Any:
    """``default_collate(samples)`` with every tensor field that fits ``out`` stacked
    straight into ``out[at:at + n]`` (``WRITTEN`` in the result): ``default_collate``
    stacks a tensor field with ``torch.stack``, so stacking into the shared buffer gives
    the same values without a batch-sized allocation and a second copy."""
    from torch.utils.data import default_collate
    n, stacked = len(samples), []
    for path in _paths(out):
        ref = B.get_field(out, path)
        fields = [_sample_field(s, path, ref) for s in samples]
        if at + n > ref.shape[0] or any(f is None for f in fields):
            continue  # collated as it is; _write copies it in below if it fits
        try:
            stripped = [B.replace_field(s, path, _NOTHING) for s in samples]
        except TypeError:  # a container that cannot be rebuilt: collated as it is
            continue
        torch.stack(fields, out=ref[at:at + n])
        samples = stripped
        out = B.replace_field(out, path, None)
        stacked.append(path)
    batch = default_collate(samples)
    for path in stacked:
        batch = B.replace_field(batch, path, WRITTEN)
    return _write(out, batch, at)


def _loop(dataset: Any, size: int, collate: Any, tasks: Any, results: Any,
          worker: int = 0, init: Any = None) -> None:
    torch.set_num_threads(1)  # as a DataLoader worker: the processes share the cores
    if init is not None:
        try:
            init(worker)
        except Exception:
            results.put((None, None, f"worker_init_fn({worker}) failed in worker process "
                                     f"{worker}:\n{traceback.format_exc()}"))
            return
    while True:
        task = tasks.get()
        if task is None:
            return
        ticket, kind, indices, seeds, out, at = task
        samples, i = [], None
        try:
            for i, seed in zip(indices, seeds):
                torch.default_generator.manual_seed(seed)
                random.seed(seed)
                samples.append(dataset.low_res(i, size) if kind == "low" else dataset[i])
        except Exception:
            what = f"{type(dataset).__name__}.low_res({i}, {size})" if kind == "low" \
                else f"{type(dataset).__name__}[{i}]"
            results.put((ticket, None, f"{what} failed:\n{traceback.format_exc()}"))
            continue
        try:
            batch = _stack_into(samples, out, at) if out is not None and \
                collate is _default_collate() else _write(out, collate(samples), at)
            results.put((ticket, _pack(batch), None))
        except Exception:
            results.put((ticket, None, f"collate_fn of {len(samples)} samples ({kind}, indices "
                                       f"{indices[0]}..{indices[-1]}) failed:\n"
                                       f"{traceback.format_exc()}"))


def _stop(procs: list, tasks: Any, results: Any) -> None:
    """Stop the processes: a sentinel each, then terminate those still running."""
    for _ in procs:
        try:
            tasks.put_nowait(None)
        except Exception:  # a closed or broken queue: terminate below
            break
    deadline = time.monotonic() + 1.0
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
    for p in procs:
        if p.is_alive():
            p.terminate()
            p.join(2.0)
        if p.is_alive():
            p.kill()
            p.join(2.0)
    for q in (tasks, results):
        q.cancel_join_thread()  # unread results must not block the exit
        q.close()


class SampleWorkers:
    """``workers`` processes loading samples of ``dataset`` (see the module docstring).

    Args:
        dataset: a map-style dataset; ``low_res(index, size)`` is called for ``"low"``.
        workers: the number of processes.
        size: the side passed to ``low_res``.
        collate: collates one ticket's samples in the worker (picklable under ``spawn``).
        timeout_s: the longest :meth:`result` waits for one ticket.
        init: called as ``init(worker_id)`` in each process before its first sample (a
            DataLoader's ``worker_init_fn``); an exception in it fails the next
            :meth:`result` with its traceback.
        context: a multiprocessing context or its name (a DataLoader's
            ``multiprocessing_context``); default ``fork`` where there is one, else
            ``spawn``.
    """

    def __init__(self, dataset: Any, workers: int, size: int, timeout_s: float,
                 collate: Any, init: Any = None, context: Any = None) -> None:
        ctx = _context(context)
        self.timeout_s = timeout_s
        self._tasks = ctx.Queue()
        self._results = ctx.Queue()
        self._procs = [ctx.Process(target=_loop, args=(dataset, size, collate, self._tasks,
                                                       self._results, w, init),
                                   name=f"smartloader-worker-{w}", daemon=True)
                       for w in range(workers)]
        for p in self._procs:
            p.start()
        self._next = 0
        self._done: dict[int, Any] = {}
        self._open: set[int] = set()
        self._finalizer = weakref.finalize(self, _stop, self._procs, self._tasks,
                                           self._results)

    @property
    def pids(self) -> list[int]:
        """The worker processes' ids (for tests and monitoring)."""
        return [p.pid for p in self._procs]

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def submit(self, kind: str, indices: Sequence[int], seeds: Sequence[int],
               out: Any = None, at: int = 0) -> int:
        """Queue the samples ``indices`` (loaded after seeding with ``seeds``); a ticket.

        ``out``: a batch structure of shared-memory tensors (or None): each collated tensor
        field that fits is written into ``out[at:at + len(indices)]`` by the worker and
        comes back as ``WRITTEN``, so the caller need not copy the chunks together."""
        if self.closed:
            raise WorkerError("the worker processes are closed")
        ticket, self._next = self._next, self._next + 1
        self._open.add(ticket)
        self._tasks.put((ticket, kind, list(indices), list(seeds), out, at))
        return ticket

    def result(self, ticket: int) -> Any:
        """The collated samples of ``ticket``, in order; waits at most ``timeout_s`` seconds."""
        if ticket not in self._open:
            raise KeyError(f"ticket {ticket} was never submitted or was already read")
        deadline = time.monotonic() + self.timeout_s
        while ticket not in self._done:
            left = deadline - time.monotonic()
            if left <= 0:
                self.close()
                raise WorkerError(
                    f"pool_source.timeout_s: no result from the worker processes in "
                    f"{self.timeout_s:g} s; a sample that takes that long to load needs a "
                    f"larger timeout_s (or more workers); the workers were stopped")
            try:
                got, samples, error = self._results.get(timeout=min(left, 0.25))
            except queue.Empty:
                dead = [p for p in self._procs if not p.is_alive()]
                if dead:
                    self.close()
                    raise WorkerError(
                        f"worker process {dead[0].name} (pid {dead[0].pid}) exited "
                        f"unexpectedly with code {dead[0].exitcode} (killed, or out of "
                        f"memory); the workers were stopped") from None
                continue
            if error is not None:
                self.close()
                raise WorkerError(error)
            if got in self._open:  # a result of a ticket dropped by discard() is let go
                self._done[got] = samples
        self._open.discard(ticket)
        return self._done.pop(ticket)

    def discard(self, tickets: Sequence[int]) -> None:
        """Tickets whose results are no longer wanted (their results are dropped)."""
        for t in tickets:
            self._open.discard(t)
            self._done.pop(t, None)

    def close(self) -> None:
        """Stop the worker processes (idempotent)."""
        self._finalizer()
