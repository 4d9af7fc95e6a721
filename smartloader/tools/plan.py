"""Preview a run without training: what each step range does and what it costs.

:func:`plan_rows` splits ``range(total_steps)`` into segments wherever the phase or the
training resolution changes; :func:`plan_summary` estimates the compute;
:func:`format_plan` prints both as a table; :func:`plot_plan` draws the schedules.

Cost model (thesis Ch. 4 and Eq. 3.9), all relative to one training step at
full resolution ``r_max``:

* training step at resolution ``r_t``: ``(r_t / r_max) ** 2`` (compute ~ pixels);
* scoring overhead of a selection step, relative to that step's own training cost:
  ``pool_factor * (1/3) * (r_hat / r_t) ** p`` with ``p = 2`` for CNNs and ``p = 3`` for
  ViTs (``arch="vit"``; the token count and attention grow faster than pixels) -- a forward
  pass costs about 1/3 of a forward+backward step;
* relative compute = mean over all steps of ``(r_t / r_max) ** 2 * (1 + overhead_t)``.

A phase scores (and pays the overhead) unless its ``selection`` is ``"uniform"`` or
``None``. Steps that no phase covers are reported as uniform with phase ``"-"``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Sequence

from smartloader.config.keys import TOP
from smartloader.schedules import Schedules
from smartloader.schedules.resolution import score_resolution as _scaled
from smartloader.scoring.model import auto_candidates

UNIFORM = ("uniform", None)
#: Training resolution (px) the plan assumes without a resolution schedule (ImageNet's).
BASE_RESOLUTION = 224


class PhaseLike(Protocol):
    """What the plan needs from a phase (the core passes its own phase objects)."""

    name: str
    start: int  # first step, inclusive
    stop: int  # last step, exclusive
    selection: str | None
    beta: float | None


@dataclass(frozen=True)
class PlanPhase:
    """A minimal :class:`PhaseLike` for tests and scripts."""

    name: str
    start: int
    stop: int
    selection: str | None = "uniform"
    beta: float | None = None


_GAP = PlanPhase("-", 0, 0, "uniform", None)


def _phase_at(total_steps: int, phases: Sequence[PhaseLike]) -> list[tuple[int, int, Any]]:
    """Sorted, validated (start, stop, phase) covering ``range(total_steps)``."""
    spans = sorted(((p.start, p.stop, p) for p in phases), key=lambda s: s[0])
    out, cursor = [], 0
    for start, stop, phase in spans:
        if start < cursor or stop <= start or stop > total_steps:
            raise ValueError(f"phase {phase.name!r} [{start}, {stop}) overlaps another or "
                             f"leaves [0, {total_steps})")
        if start > cursor:
            out.append((cursor, start, _GAP))
        out.append((start, stop, phase))
        cursor = stop
    if cursor < total_steps:
        out.append((cursor, total_steps, _GAP))
    return out


def _resolution(schedules: Schedules, step: int, base_resolution: int) -> int:
    return base_resolution if schedules.resolution is None else schedules.resolution(step)


def _r_max(schedules: Schedules, base_resolution: int) -> int:
    return base_resolution if schedules.resolution is None else schedules.resolution.maximum


def _score_res(schedules: Schedules, r: int, score_resolution: int | str | None) -> int:
    if score_resolution == "auto" and schedules.score_scale is None:
        return auto_candidates(r)[0]  # the first size auto tries; the model may need more
    if isinstance(score_resolution, int):
        return score_resolution
    if schedules.score_scale is not None:
        return _scaled(r, schedules.score_scale)
    raise ValueError("selection phases need score_resolution or schedules.score_scale")


def _value(schedule: Any, step: int) -> float | None:
    return None if schedule is None else float(schedule(step))


def plan_rows(total_steps: int, phases: Sequence[PhaseLike], schedules: Schedules,
              pool_factor: float = TOP.default("pool_factor"),
              score_resolution: int | None = None, arch: str = "cnn",
              base_resolution: int = BASE_RESOLUTION,
              scored_by: str = "forward") -> list[dict[str, Any]]:
    """One dict per segment of constant phase and resolution.

    Keys: ``start``, ``stop`` (steps, stop exclusive), ``phase``, ``selection``, ``beta``,
    ``resolution``, ``score_resolution`` (None in uniform phases), ``magnitude`` and ``lr``
    (pairs: value at the first and at the last step of the segment; None without that
    schedule), ``overhead`` (scoring overhead per step, relative to the step's training
    cost) and ``cost`` (mean relative compute per step, 1.0 = uniform full resolution).
    ``score_resolution`` fixes the scoring resolution; when None it follows
    ``schedules.score_scale``. ``base_resolution`` is used when there is no resolution
    schedule. ``scored_by``: ``"forward"`` (the live model's scoring forward, the default
    scorer), ``"table"`` (a loss table: ``history``, learnability from history and best
    past loss) or ``"proxy"`` (a small co-trained network); only a forward is modelled as
    overhead, the others score with no forward of the live model (``score_resolution``
    None; a proxy's own cost depends on its size and is measured in ``StepStats``).
    """
    if scored_by not in ("forward", "table", "proxy"):
        raise ValueError(f"scored_by must be 'forward', 'table' or 'proxy', got {scored_by!r}")
    if arch not in ("cnn", "vit"):
        raise ValueError(f"arch must be 'cnn' or 'vit', got {arch!r}")
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    power = 2 if arch == "cnn" else 3
    r_max = _r_max(schedules, base_resolution)
    rows: list[dict[str, Any]] = []
    for start, stop, phase in _phase_at(total_steps, phases):
        selecting = phase.selection not in UNIFORM
        seg_start = start
        current = _resolution(schedules, start, base_resolution)
        for step in range(start + 1, stop + 1):
            r = _resolution(schedules, step, base_resolution) if step < stop else None
            if r == current:
                continue
            forward = selecting and scored_by == "forward"
            r_hat = _score_res(schedules, current, score_resolution) if forward else None
            overhead = pool_factor / 3.0 * (r_hat / current) ** power if forward else 0.0
            rows.append({
                "start": seg_start, "stop": step, "phase": phase.name,
                "selection": phase.selection, "beta": phase.beta,
                "resolution": current, "score_resolution": r_hat,
                "scored_by": scored_by if selecting else None,
                "magnitude": (_value(schedules.augment, seg_start),
                              _value(schedules.augment, step - 1)),
                "lr": (_value(schedules.lr, seg_start), _value(schedules.lr, step - 1)),
                "overhead": overhead,
                "cost": (current / r_max) ** 2 * (1.0 + overhead),
            })
            seg_start, current = step, r
    return rows


def plan_summary(rows: list[dict[str, Any]], base_resolution: int | None = None
                 ) -> dict[str, Any]:
    """Totals over :func:`plan_rows`' output.

    ``resolution_factor``: mean over steps of ``(r_t / r_max) ** 2`` (1.0 = no saving from
    resolution); ``scoring_overhead``: mean over *all* steps of the per-step overhead;
    ``relative_compute``: mean per-step cost, 1.0 = uniform training at full resolution;
    ``train_resolutions`` / ``score_resolutions``: the distinct sizes;
    ``distinct_shapes``: their total count (training and scoring batches differ in batch
    size, so each is its own shape for cudnn autotuning / ``torch.compile``).
    """
    total = rows[-1]["stop"] - rows[0]["start"]
    r_max = max(r["resolution"] for r in rows)
    weight = lambda r: r["stop"] - r["start"]  # noqa: E731
    train = sorted({r["resolution"] for r in rows})
    score = sorted({r["score_resolution"] for r in rows if r["score_resolution"]})
    return {
        "total_steps": total,
        "resolution_factor": sum(weight(r) * (r["resolution"] / r_max) ** 2
                                 for r in rows) / total,
        "scoring_overhead": sum(weight(r) * r["overhead"] for r in rows) / total,
        "relative_compute": sum(weight(r) * r["cost"] for r in rows) / total,
        "train_resolutions": train,
        "score_resolutions": score,
        "distinct_shapes": len(train) + len(score),
    }


def _pair(pair: tuple[float | None, float | None], fmt: str) -> str:
    a, b = pair
    if a is None:
        return "-"
    return format(a, fmt) if a == b else f"{format(a, fmt)}->{format(b, fmt)}"


def format_plan(total_steps: int, phases: Sequence[PhaseLike], schedules: Schedules,
                pool_factor: float = TOP.default("pool_factor"),
                score_resolution: int | None = None, arch: str = "cnn",
                base_resolution: int = BASE_RESOLUTION, scored_by: str = "forward") -> str:
    """The plan as a text table followed by the compute summary."""
    rows = plan_rows(total_steps, phases, schedules, pool_factor, score_resolution, arch,
                     base_resolution, scored_by)
    s = plan_summary(rows)
    header = ("steps", "phase", "selection", "beta", "res", "score", "magnitude", "lr",
              "cost")
    table = [header] + [(
        f"{r['start']}-{r['stop'] - 1}", str(r["phase"]), str(r["selection"]),
        "-" if r["beta"] is None else f"{r['beta']:g}", str(r["resolution"]),
        (r["scored_by"] or "-") if r["score_resolution"] is None else str(r["score_resolution"]),
        _pair(r["magnitude"], ".2f"), _pair(r["lr"], ".4g"), f"{r['cost']:.3f}",
    ) for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip()
             for line in table]
    lines.append(f"distinct input shapes: {s['distinct_shapes']} (training "
                 f"{s['train_resolutions']}, scoring {s['score_resolutions']})")
    lines.append(f"compute vs uniform full resolution: {s['relative_compute']:.3f} "
                 f"(resolution factor {s['resolution_factor']:.3f}, scoring overhead "
                 f"{100 * s['scoring_overhead']:+.1f}% of step cost, {arch})")
    return "\n".join(lines)


def plot_plan(total_steps: int, phases: Sequence[PhaseLike], schedules: Schedules,
              path: str, base_resolution: int = BASE_RESOLUTION, points: int = 2000) -> None:
    """Save a figure of resolution, magnitude and lr against step, with phase bands.

    Needs matplotlib (``pip install smartloader[plot]``); uses no global pyplot state.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError("plot_plan needs matplotlib: pip install smartloader[plot]") from exc
    stride = max(1, total_steps // points)
    steps = list(range(0, total_steps, stride)) + [total_steps - 1]
    series = [("resolution (px)", lambda t: _resolution(schedules, t, base_resolution))]
    if schedules.augment is not None:
        series.append(("magnitude m", schedules.augment))
    if schedules.lr is not None:
        series.append(("learning rate", schedules.lr))
    fig = Figure(figsize=(8, 2.2 * len(series)))
    axes = fig.subplots(len(series), 1, sharex=True, squeeze=False)[:, 0]
    spans = _phase_at(total_steps, phases)
    for ax, (label, fn) in zip(axes, series):
        ax.plot(steps, [fn(t) for t in steps], drawstyle="steps-post")
        ax.set_ylabel(label)
        for i, (start, stop, phase) in enumerate(spans):
            if phase is not _GAP:
                ax.axvspan(start, stop, alpha=0.12, color=f"C{i % 10}",
                           label=phase.name if ax is axes[0] else None)
    if any(p is not _GAP for _, _, p in spans):
        axes[0].legend(loc="lower right", fontsize="small")
    axes[-1].set_xlabel("step")
    fig.tight_layout()
    fig.savefig(path)
