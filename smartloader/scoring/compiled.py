"""What ``torch.compile`` made of a model: the compiled code, its graph count, the eager model.

Dynamo keeps its compiled graphs on the *code object* of the first frame it traces, one
cache entry per input signature (shape, grad mode, autocast state, module flags) whose
guards no earlier entry passed. For ``torch.compile(model)`` (an ``OptimizedModule``) and for
``model.compile()`` that frame is the model's ``forward``; for a built-in container such as
``nn.Sequential`` it is a small wrapper function of dynamo's. :func:`compiled_graphs` counts
those entries: the graph variants a forward of this model can reuse without compiling.

Because the cache belongs to the code, every compiled instance of the same class shares it
(a second instance reuses the first one's graphs instead of compiling), so they count
together; so do all compiled built-in containers, which share dynamo's wrapper.
"""
from __future__ import annotations

import types
from typing import Any, Callable

import torch

__all__ = ["is_compiled", "compiled_code", "compiled_graphs", "eager_module",
           "recompile_limit"]


def _plain(model: torch.nn.Module) -> torch.nn.Module:
    parallel = (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)
    while isinstance(model, parallel):
        model = model.module
    return model


def _optimized_module_type() -> type | None:
    try:
        from torch._dynamo.eval_frame import OptimizedModule
    except ImportError:  # a torch without dynamo
        return None
    return OptimizedModule


def is_compiled(model: torch.nn.Module) -> bool:
    """Whether calling ``model`` (through DDP/DataParallel) runs ``torch.compile``'d code:
    the result of ``torch.compile(model)`` or a model after ``model.compile()``."""
    m = _plain(model)
    opt = _optimized_module_type()
    return (opt is not None and isinstance(m, opt)) or \
        getattr(m, "_compiled_call_impl", None) is not None


def compiled_code(model: torch.nn.Module) -> types.CodeType | None:
    """The code object dynamo caches ``model``'s graphs on; ``None`` when not compiled."""
    m = _plain(model)
    opt = _optimized_module_type()
    if opt is not None and isinstance(m, opt):
        fn: Callable = getattr(m.forward, "_torchdynamo_orig_callable", None) or m.forward
        if isinstance(fn, types.MethodType) and fn.__func__ is torch.nn.Module._wrapped_call_impl:
            # Module.__call__ runs hooks outside dynamo and the model's forward is traced
            return _forward_code(m._orig_mod)
        return getattr(fn, "__code__", None)
    if getattr(m, "_compiled_call_impl", None) is not None:   # model.compile()
        return _forward_code(m)
    return None


def _forward_code(module: torch.nn.Module) -> types.CodeType | None:
    fwd = module.forward
    fn = fwd.__func__ if isinstance(fwd, types.MethodType) else fwd
    return getattr(fn, "__code__", None)


def compiled_graphs(model: torch.nn.Module) -> int | None:
    """Graph variants dynamo holds for ``model``'s forward (its cache entries; the first
    compile counts as one); ``None`` when ``model`` is not compiled."""
    code = compiled_code(model)
    if code is None:
        return None
    from torch._dynamo.eval_frame import _debug_get_cache_entry_list
    return len(_debug_get_cache_entry_list(code))


def recompile_limit() -> int:
    """Dynamo's cap on cache entries per code object: past it, new signatures run eagerly."""
    import torch._dynamo.config as dc
    return int(getattr(dc, "recompile_limit", getattr(dc, "cache_size_limit", 8)))


def eager_module(model: torch.nn.Module) -> Callable[..., Any]:
    """Something that runs ``model``'s forward without compiling: the module inside
    ``torch.compile``'s wrapper, the uncompiled ``_call_impl`` after ``model.compile()``,
    else the model itself (DDP/DataParallel removed)."""
    m = _plain(model)
    opt = _optimized_module_type()
    if opt is not None and isinstance(m, opt):
        return m._orig_mod
    if getattr(m, "_compiled_call_impl", None) is not None:
        return m._call_impl
    return m
