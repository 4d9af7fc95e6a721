"""The first batch: find its input and target fields, and probe the model on two samples.

So that a wrong key, a model that cannot take the input, or a loss that cannot use the
model's output fails at the first step, before any training, not when selection starts.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch

from smartloader.common import batch as B
from smartloader.common.fields import detect_fields
from smartloader.config.schema import Config
from smartloader.errors import ConfigError, ProbeError
from smartloader.scoring.model import LossShapeError, ModelHandle, OutputError, head

__all__ = ["inspect_first"]


def inspect_first(batch: Any, cfg: Config, handle: ModelHandle, selects: bool
                  ) -> tuple[tuple, int]:
    """Find the input/target fields and probe the loss on the first batch, so that a
    wrong key, a model that cannot take the input or a loss that cannot use the model's
    output fails at the first step, before any training, not when selection starts."""
    if cfg.input_key is None or cfg.target_key is None:
        if isinstance(batch, (list, tuple, Mapping)) and not B.is_plain_list(batch):
            ik, tk, _ = detect_fields(batch)
        else:
            ik, tk = B.resolve_key(batch, None, "input"), None
        ik = cfg.input_key or ik
        tk = cfg.target_key or tk
    else:
        ik, tk = cfg.input_key, cfg.target_key
    ik = B.resolve_key(batch, ik, "input")
    tk = B.resolve_key(batch, tk, "target")
    inputs = B.get_field(batch, ik)
    n = B.batch_size_of(inputs)
    if not selects:
        return (ik, tk), n
    keywords = isinstance(inputs, Mapping)
    if keywords:  # model(**inputs): every value a tensor
        bad = [k for k, v in inputs.items() if not isinstance(v, torch.Tensor)]
        if bad:
            raise TypeError(f"input_key {list(ik)}: a mapping input is passed to the model as "
                            f"keyword arguments, so every value must be a tensor; "
                            f"{bad[0]!r} is {type(inputs[bad[0]]).__name__}")
    elif not isinstance(inputs, torch.Tensor):
        raise TypeError(f"input_key {list(ik)}: selection scores the input with the "
                        f"model, so it must be a tensor (or a mapping of tensors, passed as "
                        f"keyword arguments), got {type(inputs).__name__}")
    targets = B.get_field(batch, tk)
    probe = min(n, 2)
    t = targets[:probe] if isinstance(targets, torch.Tensor) else targets
    try:
        handle.losses(head(inputs, probe), t, eager=True)  # a compiled model: no throwaway graph
    except (OutputError, LossShapeError):
        raise
    except Exception as exc:
        raise _probe_error(exc, handle, inputs, ik, tk, cfg) from exc
    return (ik, tk), n


def _probe_error(exc: Exception, handle: ModelHandle, inputs: torch.Tensor, ik: tuple,
                 tk: tuple, cfg: Config) -> Exception:
    """The error for a first batch the model could not score: a ConfigError naming
    ``score_resolution`` when only the configured size fails, else a ProbeError naming the
    field that went into the model."""
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    res = handle.resolution
    if isinstance(inputs, Mapping):
        if isinstance(res, int):
            return ConfigError(
                f"score_resolution: {res} resizes NCHW image batches; the input field "
                f"{list(ik)} holds keyword inputs ({', '.join(map(str, inputs))}), scored as "
                f"loaded: set score_resolution: null")
        fields = ", ".join(f"{k} ({v.dtype}, shape {tuple(v.shape)})" for k, v in inputs.items())
        return ProbeError(
            f"smartloader could not score the first batch: the model was called with the "
            f"keyword inputs of field {list(ik)} ({fields}) and failed with: "
            f"{type(exc).__name__}: {msg}. If the model needs other inputs, set input_key "
            f"(and target_key, now {list(tk)}) in the config; if the loss needs something "
            f"else, pass loss_fn= to wrap()")
    if isinstance(res, int) and inputs.dim() == 4 and min(inputs.shape[-2:]) > res:
        if handle.accepts(inputs[:2]):  # the full size works: the configured one is the problem
            return ConfigError(
                f"score_resolution: the model cannot score inputs resized to {res} px (it "
                f"fails with: {msg}); use score_resolution: auto (the smallest size the model "
                f"takes), null (full size), or a size the model accepts")
    field = (f"input field {list(ik)} ({inputs.dtype}, shape {tuple(inputs.shape)})")
    return ProbeError(
        f"smartloader could not score the first batch: the model was given the {field} and "
        f"failed with: {type(exc).__name__}: {msg}. If that is not the model's input, set "
        f"input_key (and target_key, now {list(tk)}) in the config; if the model needs "
        f"something else, pass loss_fn= to wrap()")
