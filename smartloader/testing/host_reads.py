"""Find host reads (device-to-host synchronisations) in code that runs on the CPU.

On a GPU the check is ``torch.cuda.set_sync_debug_mode("error")``: every call that makes the
host wait for the device raises. It only works on CUDA. :func:`record_host_reads` is a CPU
proxy for it: a ``TorchDispatchMode`` that records each aten op which, given CUDA tensors,
has to read device memory on the host before it can return:

- ``aten._local_scalar_dense``: what ``.item()``, ``bool(t)``, ``int(t)``, ``float(t)``
  and ``if t:`` call;
- ops whose output size depends on the values: ``nonzero``, ``masked_select``,
  ``unique`` (``_unique``, ``_unique2``, ``unique_dim``, ``unique_consecutive``),
  ``bincount``, ``repeat_interleave`` with a tensor of repeats and no ``output_size``, and
  indexing or index assignment with a boolean mask (``t[mask]``, ``t[mask] = v``:
  ``aten.index`` / ``aten.index_put`` with a bool index, which run ``nonzero``);
- ``is_nonzero`` and ``equal``, which answer a Python bool;
- a copy between a device and the host (``.cpu()``, ``.to("cpu")``, a blocking
  ``.to("cuda")``): recorded when one side is not the CPU, so never in a CPU-only run.

Each record names the op and where it was called from (the first stack frame inside the
``smartloader`` package, else the first outside torch), so a failing check says which line
to look at.

What it cannot see:

- copies to the host on CPU tensors: ``.cpu()``, ``.tolist()``, ``.numpy()`` are no-ops
  or never reach the dispatcher there. Keep them out of hot code by review (grep for them);
  ``tests/pipeline/test_no_host_sync.py`` checks the selection path's source for them;
- ops whose CUDA kernels synchronise for reasons of their own: only the ops above are
  recorded;
- anything that does not go through aten (NumPy, Python lists).

Usage::

    with record_host_reads() as reads:
        batch = next(it)
    assert not reads, "\\n".join(map(str, reads))
"""
from __future__ import annotations

import contextlib
import os
import traceback
from dataclasses import dataclass
from typing import Any, Iterator

import torch
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["HostRead", "record_host_reads", "reads_host"]

_aten = torch.ops.aten
#: Ops that always read the device on the host.
_ALWAYS = {_aten._local_scalar_dense, _aten.nonzero, _aten.masked_select, _aten.is_nonzero,
           _aten.equal, _aten._unique, _aten._unique2, _aten.unique_dim,
           _aten.unique_consecutive, _aten.bincount}
#: Indexing ops that read the device only with a boolean mask among their indices.
_INDEXING = {_aten.index, _aten.index_put, _aten.index_put_, _aten._index_put_impl_}
_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_TORCH = os.path.dirname(os.path.abspath(torch.__file__)) + os.sep


@dataclass(frozen=True)
class HostRead:
    """One recorded op: its name and the call site (``smartloader/x.py:12 in f``)."""
    op: str
    where: str

    def __str__(self) -> str:
        return f"{self.op} at {self.where}"


def _device(x: Any) -> torch.device | None:
    return x.device if isinstance(x, torch.Tensor) else None


def reads_host(func: Any, args: tuple, kwargs: dict) -> bool:
    """Whether the aten call ``func(*args, **kwargs)`` reads device memory on the host."""
    packet = func.overloadpacket
    if packet in _ALWAYS:
        return True
    if packet in _INDEXING:
        indices = args[1] if len(args) > 1 else kwargs.get("indices", ())
        return any(isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8)
                   for i in indices)
    if packet is _aten.repeat_interleave and func is not _aten.repeat_interleave.self_int:
        return kwargs.get("output_size") is None
    if packet is _aten._to_copy:
        src, dst = _device(args[0]), kwargs.get("device")
        return _crosses_host(src, torch.device(dst) if dst is not None else src,
                             kwargs.get("non_blocking", False))
    if packet is _aten.copy_:
        return _crosses_host(_device(args[1]), _device(args[0]),
                             args[2] if len(args) > 2 else kwargs.get("non_blocking", False))
    return False


def _crosses_host(src: torch.device | None, dst: torch.device | None,
                  non_blocking: bool) -> bool:
    if src is None or dst is None or src == dst or (src.type == dst.type == "cpu"):
        return False
    # device -> host: the host needs the data; host -> device: only a blocking copy waits
    return dst.type == "cpu" or (src.type == "cpu" and not non_blocking)


def _call_site() -> str:
    frames = [f for f in traceback.extract_stack() if f.filename != __file__]
    inside = [f for f in frames if f.filename.startswith(_PACKAGE)]
    outside = [f for f in frames if not f.filename.startswith(_TORCH)]
    frame = (inside or outside or frames)[-1]  # the innermost such frame
    name = frame.filename
    if name.startswith(_PACKAGE):
        name = "smartloader/" + name[len(_PACKAGE):]
    return f"{name}:{frame.lineno} in {frame.name}"


class _Recorder(TorchDispatchMode):
    def __init__(self, reads: list[HostRead]) -> None:
        super().__init__()
        self.reads = reads

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if reads_host(func, args, kwargs):
            self.reads.append(HostRead(str(func), _call_site()))
        return func(*args, **kwargs)


@contextlib.contextmanager
def record_host_reads() -> Iterator[list[HostRead]]:
    """Record every op inside the ``with`` block that would read the device on the host
    (see the module docstring); yields the list the records are appended to."""
    reads: list[HostRead] = []
    with _Recorder(reads):
        yield reads
