"""The ``pool_source:`` key: where a selection pool's samples come from.

``null`` (the default) pools batches of the wrapped loader. ``{type: two_resolution}`` is
:mod:`smartloader.pipeline.two_resolution`: for a ``DataLoader`` over a map-style dataset,
SmartLoader draws the indices itself, scores low-resolution views from the dataset's
``low_res(index, size)`` and loads only the chosen samples at full resolution. The keys are
declared here, with the configuration (the loader reads them, the configuration never reads
the loader); :func:`pool_source_problems` checks what the path does not support yet, so a
config asking for it fails at ``wrap()`` naming the key.
"""
from __future__ import annotations

from typing import Any, Mapping

from smartloader.common.readers import as_int
from smartloader.common.spec import Field, Section, Typed, valid
from smartloader.errors import ConfigError

__all__ = ["POOL_SOURCE", "pool_source_problems", "resolve_workers"]

_LOADER = Section("loader", (), doc="batches of the wrapped loader (the default)")

#: ``workers: auto`` with a DataLoader of ``num_workers=0``
DEFAULT_WORKERS = 2


def _workers(value: Any, path: str) -> Any:
    if value == "auto":
        return value
    if isinstance(value, str):
        raise ConfigError(f"{path}: must be an integer >= 1 or auto, got {value!r}")
    return as_int(value, path, minimum=1)


def resolve_workers(workers: Any, loader: Any) -> int:
    """``pool_source.workers`` for ``loader``: an int as given; auto: its ``num_workers``,
    or :data:`DEFAULT_WORKERS` without any."""
    if workers != "auto":
        return workers
    n = getattr(loader, "num_workers", 0)
    return n if isinstance(n, int) and n > 0 else DEFAULT_WORKERS

_TWO_RESOLUTION = Section("two_resolution", (
    Field("size", "int", 64, minimum=8,
          doc="side (px) of the low-resolution views the pool is scored at: the dataset's "
              "low_res(index, size) returns them; score_resolution is not used"),
    Field("workers", "any", "auto", parse=_workers, type_doc="int or auto",
          bounds_doc=">= 1",
          doc="worker processes that load the views and the chosen full-resolution samples "
              "(started at the first iter(), kept across epochs); auto: the DataLoader's "
              "num_workers, 2 if it has none (the path needs worker processes)"),
    Field("lookahead", "int", 2, minimum=1,
          doc="steps ahead whose samples are being loaded while the current step trains; "
              "the next pool is always scored one step ahead"),
    Field("timeout_s", "float", 120.0, minimum=0.0, min_exclusive=True,
          doc="seconds to wait for one worker result before failing with an error"),
    Field("cache", "bool", False,
          doc="keep every loaded view in main-process memory (about len(dataset) x the "
              "bytes of one view, e.g. 3*size*size for uint8 images) and load only views "
              "not yet cached: from the second epoch on a selection step loads only its "
              "chosen samples; low_res must be deterministic"),
    Field("cache_max_gb", "float", 4.0, minimum=0.0, min_exclusive=True,
          doc="the largest view cache (GiB) allowed in memory; a larger one is an error at "
              "the first pool (raise this, lower size, set cache_dir, or set cache: false); "
              "a cache in cache_dir is on disk and not bounded by it"),
    Field("cache_dir", "str", None, nullable=True,
          doc="with cache: true, keep the views in files in this folder (memory-mapped, "
              "one subfolder per dataset and size) instead of in memory: later runs, "
              "resumed runs and other ranks on the machine reuse them, and smartloader "
              "views fills them before training"),
), doc="SmartLoader draws the dataset indices; pools are scored on low_res views and only "
       "the chosen samples are loaded at full resolution")

#: The ``pool_source:`` section; ``type`` picks the source.
POOL_SOURCE = Typed("pool_source", (("loader", _LOADER), ("two_resolution", _TWO_RESOLUTION)),
                    doc="where pools come from: `loader` (batches of the wrapped loader) or "
                        "`two_resolution` (low-resolution views from the dataset's low_res, "
                        "full resolution for the chosen samples only; docs/two_resolution.md)",
                    type_doc="`loader`: batches of the wrapped loader; `two_resolution`: "
                             "pools scored on the dataset's low_res views, the chosen samples "
                             "loaded at full resolution",
                    required_message="is required (one of {choices})")

#: scorers the two-resolution path is built and tested with
_SCORERS = ("low_res_loss",)


def pool_source_problems(v: Mapping[str, Any], problems: list[str]) -> None:
    """What ``pool_source: {type: two_resolution}`` does not support, against the other
    top-level keys of the read config ``v`` (keys already reported INVALID are skipped)."""
    if not valid(v, "pool_source") or v["pool_source"] is None \
            or v["pool_source"]["type"] != "two_resolution":
        return
    src = v["pool_source"]
    if src["cache_dir"] is not None and not src["cache"]:
        problems.append("pool_source.cache_dir: needs cache: true (the views are cached in "
                        "that folder); add cache: true or remove cache_dir")
    replay = v["replay"] if valid(v, "replay") else None
    if replay is not None and replay["device"] != "cpu":
        problems.append(f"replay.device: {replay['device']} with pool_source two_resolution, "
                        f"whose memory stores dataset indices (16 bytes a sample, on the "
                        f"CPU) and loads replayed samples again; remove replay.device")
    if replay is not None and replay["join_pool"]:
        problems.append("replay.join_pool: not supported with pool_source two_resolution yet "
                        "(memory samples do not join the pool of views); set it to false")
    if valid(v, "score_resolution") and isinstance(v["score_resolution"], int):
        problems.append(f"score_resolution: {v['score_resolution']} with pool_source "
                        f"two_resolution, which scores the low-resolution views as loaded; "
                        f"set the scoring size as pool_source.size and leave "
                        f"score_resolution at auto or null")
    if valid(v, "score_scale") and v.get("score_scale") is not None:
        problems.append("score_scale: not with pool_source two_resolution, which scores the "
                        "low-resolution views as loaded; set the size as pool_source.size")
    scorer = v.get("scorer")
    if valid(v, "scorer") and scorer is not None and scorer["type"] not in _SCORERS:
        problems.append(f"scorer.type: {scorer['type']} is not supported with pool_source "
                        f"two_resolution yet (only {', '.join(_SCORERS)}); remove scorer: "
                        f"or the pool_source key")
