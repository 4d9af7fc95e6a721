"""``smartloader plan``, ``validate`` and ``keys``: look at a config before training."""
from __future__ import annotations

import argparse
import dataclasses
import sys

from smartloader.errors import ConfigError
from smartloader.config.strategies import scored_by

__all__ = ["plan_main", "validate_main", "keys_main", "preset_main", "plan_inputs"]


def plan_inputs(config) -> dict:
    """Keyword arguments of :func:`smartloader.tools.plan.format_plan` for a loaded Config.

    Without ``score_resolution`` and ``score_scale`` the core scores at the loaded (full)
    resolution, which the plan models as ``score_scale`` 1.0.
    """
    if config.total_steps is None:
        raise ConfigError("total_steps: required to plan a run (the plan covers "
                          "range(total_steps))")
    schedules = config.schedules
    if (config.score_resolution is None and schedules.score_scale is None
            and config.selects):
        schedules = dataclasses.replace(schedules, score_scale=1.0)
    from smartloader.tools.plan import PlanPhase
    phases = tuple(PlanPhase(p.name, p.start, p.stop, p.selection,
                             p.beta if p.selects else None) for p in config.resolve_phases())
    return {"total_steps": config.total_steps, "phases": phases,
            "schedules": schedules, "pool_factor": config.pool_factor,
            "score_resolution": _scoring_size(config), "scored_by": scored_by(config)}


def _scoring_size(config):
    """The fixed scoring size: pool_source two_resolution scores its views at their size."""
    src = config.pool_source
    if src is not None and src["type"] == "two_resolution":
        return src["size"]
    return config.score_resolution


def _describe(config) -> list[str]:
    s = config.schedules
    lines = [f"total_steps {config.total_steps}, pool_factor {config.pool_factor}, "
             f"seed {config.seed}"]
    for name in ("resolution", "augment", "lr"):
        value = getattr(s, name)
        lines.append(f"{name}: {'-' if value is None else value}")
    scoring = (f"score_scale {s.score_scale}" if s.score_scale is not None else
               "score_resolution auto (about half the side; the first batch probes which "
               "size the model takes, so the sizes below are the first tried)"
               if config.score_resolution == "auto" else
               f"score_resolution {config.score_resolution}"
               if config.score_resolution is not None else "scoring at full resolution")
    how = scored_by(config)
    if how != "forward":
        scoring = {"table": "a loss table (no forward of the model)",
                   "proxy": "a small co-trained proxy network (its cost is measured in "
                            "StepStats.scorer_train_time_s and score_time_s)"}[how]
    src = config.pool_source
    if src is not None and src["type"] == "two_resolution":
        workers = ("the DataLoader's num_workers (2 without)" if src["workers"] == "auto"
                   else str(src["workers"]))
        if src["cache"] and src["cache_dir"]:
            cache = (f"views cached in {src['cache_dir']} (on disk; smartloader views fills "
                     f"it before training)")
        elif src["cache"]:
            cache = f"views cached in memory, at most {src['cache_max_gb']:g} GiB"
        else:
            cache = "views not cached: every pool decodes its views; cache: true loads each once"
        scoring = (f"low_res views at {src['size']} px (pool_source two_resolution: {workers} "
                   f"worker process(es) load the views and then only the chosen samples at "
                   f"full resolution; each pool is scored one step ahead; {cache})")
    lines.append(f"scoring: {scoring}")
    return lines


def plan_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="smartloader plan",
        description="Print the phases and schedules of a config step range by step range, "
                    "the distinct input shapes and the estimated compute.")
    parser.add_argument("config", help="YAML config file (needs total_steps, or total_epochs "
                                       "with --batches-per-epoch)")
    parser.add_argument("--batches-per-epoch", type=int, metavar="N",
                        help="len() of the wrapped loader: turns total_epochs into total_steps "
                             "as wrap() does")
    parser.add_argument("--plot", metavar="PNG", help="also save a figure (needs matplotlib)")
    parser.add_argument("--arch", choices=("cnn", "vit"), default="cnn",
                        help="scoring cost model: pixels^2 (cnn) or ^3 (vit); default cnn")
    from smartloader.tools.plan import BASE_RESOLUTION, format_plan, plot_plan
    parser.add_argument("--base-resolution", type=int, default=BASE_RESOLUTION, metavar="N",
                        help="training resolution when the config has no resolution "
                             f"schedule (default {BASE_RESOLUTION})")
    parser.add_argument("--batch-size", type=int, metavar="N",
                        help="samples per wrapped batch: the batch dimension of the planned "
                             "model input shapes (torch.compile graphs)")
    parser.add_argument("--image-size", metavar="H[xW]",
                        help="size the wrapped loader yields (default: the resolution "
                             "schedule's max, else --base-resolution)")
    parser.add_argument("--samples-per-epoch", type=int, metavar="N",
                        help="samples in an epoch (with --batch-size): plans the short last "
                             "batch and the short pools at each epoch's end")
    parser.add_argument("--drop-last", action="store_true",
                        help="the wrapped loader drops its short last batch")
    args = parser.parse_args(argv)
    from smartloader.config.schema import load_config
    try:
        config = load_config(args.config)
        if config.total_epochs is not None:
            if not args.batches_per_epoch:
                raise ConfigError(f"total_epochs: {config.total_epochs} epochs; give "
                                  f"--batches-per-epoch N (len() of the wrapped loader) to "
                                  f"plan them")
            from smartloader.config.steps import steps_for_epochs
            steps = steps_for_epochs(config, config.total_epochs, args.batches_per_epoch)
            config = config.with_length(total_steps=steps)
        inputs = plan_inputs(config)
        shapes = _shapes(config, args)
    except ConfigError as exc:
        print(f"smartloader plan: {exc}", file=sys.stderr)
        return 1
    print("\n".join(_describe(config)))
    print()
    print(format_plan(**inputs, arch=args.arch, base_resolution=args.base_resolution))
    print()
    print(shapes)
    if args.plot:
        plot_plan(inputs["total_steps"], inputs["phases"], inputs["schedules"], args.plot,
                  base_resolution=args.base_resolution)
        print(f"plot saved to {args.plot}")
    return 0


def _shapes(config, args) -> str:
    """The planned model input shapes for ``plan``'s options, as text."""
    from smartloader.config.shapes import format_shapes, planned_shapes
    bs = args.batch_size
    if bs is not None and bs < 1:
        raise ConfigError(f"--batch-size: must be >= 1, got {bs}")
    size = args.image_size
    if size is not None:
        try:
            parts = [int(p) for p in size.lower().split("x")]
        except ValueError:
            parts = []
        if len(parts) not in (1, 2) or min(parts) < 1:
            raise ConfigError(f"--image-size: H or HxW in px, got {size!r}")
        size = (parts[0], parts[-1])
    elif config.schedules.resolution is None:
        size = (args.base_resolution, args.base_resolution)
    per_epoch = last = None
    if args.samples_per_epoch is not None:
        if bs is None:
            raise ConfigError("--samples-per-epoch: needs --batch-size")
        n = args.samples_per_epoch
        if n < bs:
            raise ConfigError(f"--samples-per-epoch: {n} is less than one batch ({bs})")
        per_epoch = n // bs if args.drop_last else -(-n // bs)
        last = None if args.drop_last or n % bs == 0 else n % bs
    text = format_shapes(planned_shapes(config, bs, image_size=size,
                                        batches_per_epoch=per_epoch, last_batch=last))
    if bs is None:
        text += ("\n  (B: give --batch-size N, and --samples-per-epoch N for the short last "
                 "batches)")
    return text


def validate_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="smartloader validate",
        description="Check a config file and list every problem with its key path.")
    parser.add_argument("config", help="YAML config file")
    args = parser.parse_args(argv)
    from smartloader.config.problems import WARNING, config_problems
    lines = config_problems(args.config)
    for line in lines:
        print(line)
    errors = [line for line in lines if not line.startswith(WARNING)]
    if errors:
        print(f"{len(errors)} problem(s) in {args.config}", file=sys.stderr)
        return 1
    print("OK")
    return 0


def keys_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="smartloader keys",
        description="Print every config key (path, type, default, allowed values, meaning) "
                    "as the markdown table of docs/config.md, read from the specs.")
    parser.parse_args(argv)
    from smartloader.tools.keys import keys_table
    print(keys_table())
    return 0


def preset_main(argv: list[str]) -> int:
    from smartloader.config.presets import PRESETS, preset
    parser = argparse.ArgumentParser(
        prog="smartloader preset",
        description="Print a shipped configuration as YAML, to save and edit "
                    "(smartloader preset combined --side 32 --index-key 2 > smartloader.yaml).")
    parser.add_argument("name", choices=sorted(PRESETS))
    parser.add_argument("--side", type=int, required=True,
                        help="the images' side in px as the loader yields them")
    parser.add_argument("--index-key", metavar="KEY",
                        help="where the sample ids are in a batch (an integer position or a "
                             "field name): turns on the history scorer, which needs "
                             "loader.report_losses() in the loop; without it the pool is "
                             "scored by the model's low-resolution forward")
    parser.add_argument("--total-steps", type=int, help="add total_steps")
    args = parser.parse_args(argv)
    key = args.index_key
    if key is not None and key.lstrip("-").isdigit():
        key = int(key)
    try:
        cfg = preset(args.name, side=args.side, index_key=key)
    except ValueError as exc:
        parser.error(str(exc))
    if args.total_steps is not None:
        cfg["total_steps"] = args.total_steps
    from smartloader.config.schema import load_config
    load_config(cfg)   # a shipped preset always validates; this keeps it so
    import yaml
    print(f"# smartloader preset {args.name} --side {args.side}"
          + (f" --index-key {args.index_key}" if args.index_key is not None else ""))
    print(yaml.safe_dump(cfg, sort_keys=False).rstrip())
    return 0
