"""Every problem of a config in one run, with key paths, hints and warnings; defaults from
the specs."""
import pickle

import pytest

import smartloader
from smartloader import ConfigError, load_config
from smartloader.__main__ import main
from smartloader.config.keys import TOP, TOP_KEYS
from smartloader.config.problems import config_problems

ALLOWED_TOP = ", ".join(TOP_KEYS)
PLANTED = """\
total_steps: 1000
pool_factr: 4
score_resolution: 96
score_scale: 0.5
scorer: {type: history}
noisy_guard: {percentile: 1.5}
lr: {type: f1_clr, max_lr: 0.1, warmup_steps: 2000}
phases:
  - {name: warmup, steps: 100, selction: uniform}
  - {name: select, selection: ranked, beta: -1}
  - {name: select, fraction: 0.95, selection: ranked, beta: 1.5, replay: true}
"""
PLANTED_PROBLEMS = [
    # each key on its own, in the order of the file
    f"pool_factr: unknown key (allowed: {ALLOWED_TOP}); did you mean 'pool_factor'?",
    "noisy_guard.percentile: must be < 1, got 1.5",
    "phases[0].selction: unknown key (allowed: name, steps, fraction, selection, beta, "
    "window, replay); did you mean 'selection'?",
    "phases[1].beta: must be >= 0, got -1.0",
    # then the relations between keys that were read without a problem
    "phases[2].name: 'select' is already the name of phases[1]",
    "lr.warmup_steps: must be < total_steps (1000), got 2000",
    "score_scale, score_resolution: give one, not both (score_scale 0.5 follows the training "
    "resolution, score_resolution 96 fixes it)",
    "scorer.type: history keys losses by sample id, so it needs index_key (where the dataset "
    "index is in a batch)",
    "phases[2].replay: true needs a top-level replay: section (capacity, mode, ...; "
    "docs/replay.md)",
    "phases[1] (select): takes the rest of total_steps 1000, but the other phases already use "
    "1050 steps",
]
PLANTED_WARNINGS = [
    "warning: phases[2].beta: 1.5 with pool_factor 2; the paper keeps pool_factor >= 1 + beta"]


def test_one_run_lists_every_planted_problem(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(PLANTED)
    assert config_problems(path) == PLANTED_PROBLEMS + PLANTED_WARNINGS


def test_load_config_raises_one_error_listing_them_all(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(PLANTED)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).splitlines() == PLANTED_PROBLEMS  # warnings are not errors
    assert info.value.problems == tuple(PLANTED_PROBLEMS)
    again = pickle.loads(pickle.dumps(info.value))
    assert str(again) == str(info.value) and again.problems == info.value.problems


def test_validate_cli_prints_them_and_fails(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(PLANTED)
    assert main(["validate", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out.splitlines() == PLANTED_PROBLEMS + PLANTED_WARNINGS
    assert f"{len(PLANTED_PROBLEMS)} problem(s) in {path}" in captured.err


def test_warnings_alone_pass_validation(tmp_path, capsys):
    path = tmp_path / "ok.yaml"
    path.write_text("phases: [{name: s, selection: ranked, beta: 2}]\n")
    assert main(["validate", str(path)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "warning: phases[0].beta: 2 with pool_factor 2; the paper keeps pool_factor >= 1 + "
        "beta", "OK"]
    load_config(path)  # a warning is no error


@pytest.mark.parametrize("raw, message", [
    ({"total_step": 10},
     f"total_step: unknown key (allowed: {ALLOWED_TOP}); did you mean 'total_steps'?"),
    ({"phases": [{"name": "a", "stpes": 5}]},
     "phases[0].stpes: unknown key (allowed: name, steps, fraction, selection, beta, window, "
     "replay); did you mean 'steps'?"),
    ({"replay": {"capacity": 4, "polcy": "fifo"}},
     "replay.polcy: unknown key (allowed: capacity, policy, device, priority, mode, k, "
     "fraction, reaugment, join_pool, importance_weights); did you mean 'policy'?"),
    ({"total_steps": 90, "resolution": {"type": "progressive", "min": 8, "max": 16,
                                       "incremnt": 8}},
     "resolution.incremnt: unknown key (allowed: type, min, max, start, end, increment); "
     "did you mean 'increment'?"),
    ({"phases": [{"name": "a", "selection": "rankd"}]},
     "phases[0].selection: must be one of uniform, ranked, topk, selective_backprop, got "
     "'rankd'; did you mean 'ranked'?"),
    ({"bogus": 1}, f"bogus: unknown key (allowed: {ALLOWED_TOP})"),  # nothing close: no hint
])
def test_misspelt_keys_get_a_hint(raw, message):
    assert config_problems(raw) == [message]
    with pytest.raises(ConfigError) as info:
        load_config(raw)
    assert str(info.value) == message


def test_relations_wait_for_their_keys():
    # a bad total_steps is reported once, not again by every phase length that needs it
    assert config_problems({"total_steps": 0, "phases": [
        {"name": "a", "fraction": 0.5}, {"name": "b"}]}) == ["total_steps: must be >= 1, got 0"]
    # a valid total_steps with two open phases and a fraction under one step
    assert config_problems({"total_steps": 100, "phases": [
        {"name": "a", "fraction": 0.001}, {"name": "b"}, {"name": "c"}]}) == [
        "phases[2]: has no length, but phases[1] already takes the rest; give it steps or "
        "fraction",
        "phases[0].fraction: 0.001 of total_steps 100 is less than one step"]


def test_schedules_and_strategies_relations():
    assert config_problems({
        "resolution": {"type": "progressive", "min": 8, "max": 16},
        "selection_scope": "global", "noisy_guard": {},
        "phases": [{"name": "a", "steps": 2}, {"name": "b", "selection": "topk"}]}) == [
        "resolution.type: progressive follows the fraction of training and needs total_steps "
        "(give the loader a length or set total_steps)",
        "noisy_guard: tracks samples across pools by sample id, so it needs index_key (where "
        "the dataset index is in a batch)",
        "phases[1].selection: selection_scope global supports only ranked, got 'topk'"]
    assert config_problems({"replay": {"capacity": 8, "priority": {"type": "epr"}}}) == [
        "warning: replay.priority.alpha: a decaying alpha needs total_steps; set it, pass "
        "total_steps=N when wrapping, or give a constant alpha"]


def test_defaults_come_from_the_specs():
    from smartloader.config.schema import Config
    from smartloader.replay.config import REPLAY, ReplayConfig
    for name in ("seed", "total_steps", "pool_factor", "score_resolution", "autocast",
                 "input_key", "target_key", "selection_scope"):
        assert getattr(Config(), name) == TOP.default(name), name
        assert getattr(load_config({}), name) == TOP.default(name), name
    replay = ReplayConfig(capacity=1)
    for name in ("policy", "device", "mode", "k", "fraction", "reaugment", "join_pool",
                 "importance_weights"):
        assert getattr(replay, name) == REPLAY.default(name), name


def test_builders_take_defaults_from_the_specs():
    from smartloader.augment.mixing import BATCH_TRANSFORM, build_batch_transform
    from smartloader.scoring.noisy_guard import NOISY_GUARD, build_noisy_guard
    from smartloader.scoring.scorers import SCORER, build_scorer
    from smartloader.selection.rules import WINDOW, build_selector
    guard = build_noisy_guard({})
    assert (guard.percentile, guard.patience, guard.cap_to) == tuple(
        NOISY_GUARD.default(k) for k in ("percentile", "patience", "cap_to"))
    proxy, spec = build_scorer({"type": "proxy"}), SCORER.types["proxy"]
    assert (proxy.features, proxy.lr, proxy.refresh_every, proxy.bank) == tuple(
        spec.default(k) for k in ("features", "lr", "refresh_every", "bank"))
    for kind in ("mixup", "cutmix"):
        assert build_batch_transform({"type": kind}).alpha == \
            BATCH_TRANSFORM.types[kind].default("alpha")
    assert build_selector({"type": "selective_backprop"}).window == WINDOW.default
    cfg = load_config({"total_steps": 100, "phases": [{"name": "s", "selection": "ranked"}],
                       "index_key": 2, "scorer": {"type": "proxy"}})
    assert cfg.phases[0].beta == TOP.field("phases").section.default("beta")
    assert dict(cfg.strategies["scorer"]) == {"type": "proxy", **{
        k: spec.default(k) for k in spec.keys}}
    assert cfg.strategies["index_key"] == (2,)
    assert cfg.to_dict()["scorer"] == {"type": "proxy"}  # as written


def test_fractional_capacity_without_dataset_size_names_the_key():
    config = smartloader.load_config({"replay": {"capacity": 0.5}}).replay
    with pytest.raises(ConfigError, match=r"^replay\.capacity: 0\.5 is a fraction of the "
                                          r"dataset, but the dataset size is unknown"):
        config.build_memory(None)


def test_keys_command_prints_the_table(capsys):
    from smartloader.tools.keys import keys_table
    assert main(["keys"]) == 0
    assert capsys.readouterr().out == keys_table() + "\n"
