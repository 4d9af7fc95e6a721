"""parse_replay: defaults, building the memory and scheduler, and one test per error class."""
import pytest
import torch

from smartloader.errors import ConfigError
from smartloader.replay import AlphaSchedule, ReplayConfig, parse_replay


def test_absent_section_gives_none():
    assert parse_replay(None) is None


def test_defaults():
    config = parse_replay({"capacity": 100})
    assert config == ReplayConfig(capacity=100, policy="reservoir", device="cpu",
                                  priority="uniform", alpha=None, mode="steps", k=1,
                                  fraction=0.25, reaugment=True, join_pool=False,
                                  importance_weights=True)


def test_full_example_and_builders():
    config = parse_replay({
        "capacity": 0.05, "policy": "fifo", "device": "model",
        "priority": {"type": "epr", "alpha": {"start": 1.0, "end": 0.0}},
        "mode": "steps", "k": 3, "reaugment": False, "join_pool": True,
        "importance_weights": False})
    assert config.alpha == AlphaSchedule(1.0, 0.0, "linear")
    memory = config.build_memory(60000, model_device="cpu", seed=5)
    assert memory.capacity == 3000 and memory.policy == "fifo" and memory.priority == "epr"
    assert memory.device == torch.device("cpu")
    scheduler = config.build_scheduler(batch_size=32)
    assert (scheduler.mode, scheduler.k, scheduler.batch_size) == ("steps", 3, 32)
    with pytest.raises(ValueError, match="model_device"):
        config.build_memory(60000)


def test_epr_alpha_forms():
    assert parse_replay({"capacity": 1, "priority": {"type": "epr"}}).alpha == \
        AlphaSchedule(1.0, 0.0, "linear")
    assert parse_replay({"capacity": 1, "priority": {"type": "epr", "alpha": 0.6}}).alpha == \
        AlphaSchedule(0.6)
    cosine = {"type": "epr", "alpha": {"start": 0.9, "end": 0.1, "decay": "cosine"}}
    assert parse_replay({"capacity": 1, "priority": cosine}).alpha == AlphaSchedule(0.9, 0.1, "cosine")


def test_int_capacity_is_samples_and_float_is_fraction():
    assert parse_replay({"capacity": 1}).capacity == 1
    assert isinstance(parse_replay({"capacity": 1.0}).capacity, float)
    assert parse_replay({"capacity": 1.0}).build_memory(50).capacity == 50


@pytest.mark.parametrize("section, message", [
    # not a mapping
    ([1, 2], "replay: must be a mapping"),
    # unknown key
    ({"capacity": 1, "capcity": 2}, "replay.capcity: unknown key"),
    # missing required key
    ({"policy": "fifo"}, "replay.capacity: is required"),
    # number out of range
    ({"capacity": 0}, "replay.capacity: must be >= 1, got 0"),
    ({"capacity": 1.5}, "replay.capacity: must be <= 1, got 1.5"),
    # wrong type
    ({"capacity": "5%"}, "replay.capacity: must be an integer (samples) or a float"),
    ({"capacity": True}, "replay.capacity: must be an integer"),
    ({"capacity": 1, "reaugment": "yes"}, "replay.reaugment: must be true or false"),
    # not one of the choices
    ({"capacity": 1, "policy": "lru"}, "replay.policy: must be one of reservoir, fifo"),
    ({"capacity": 1, "device": "gpu"}, "replay.device: must be one of cpu, cuda, model"),
    ({"capacity": 1, "mode": "both"}, "replay.mode: must be one of steps, mix"),
    # nested paths
    ({"capacity": 1, "priority": {"type": "per"}}, "replay.priority.type: must be one of"),
    ({"capacity": 1, "priority": {}}, "replay.priority.type: is required"),
    ({"capacity": 1, "priority": {"type": "epr", "alpha": 2}},
     "replay.priority.alpha: must be <= 1"),
    ({"capacity": 1, "priority": {"type": "epr", "alpha": {"start": 1.0}}},
     "replay.priority.alpha.end: is required"),
    ({"capacity": 1, "priority": {"type": "epr", "alpha": {"start": 1, "end": 0, "decay": "step"}}},
     "replay.priority.alpha.decay: must be one of linear, cosine"),
    # key that does not apply
    ({"capacity": 1, "priority": {"type": "uniform", "alpha": 0.5}},
     "replay.priority.alpha: only valid with type: epr"),
    ({"capacity": 1, "mode": "mix", "k": 3}, "replay.k: only valid with mode: steps"),
    ({"capacity": 1, "fraction": 0.5}, "replay.fraction: only valid with mode: mix"),
    ({"capacity": 1, "k": 0}, "replay.k: must be >= 1, got 0"),
    ({"capacity": 1, "mode": "mix", "fraction": 1.0}, "replay.fraction: must be < 1"),
])
def test_bad_config_names_the_key_path(section, message):
    with pytest.raises(ConfigError) as info:
        parse_replay(section)
    assert str(info.value).startswith(message), str(info.value)


def test_custom_path_prefix():
    with pytest.raises(ConfigError, match=r"^phases\[0\]\.replay\.k: "):
        parse_replay({"capacity": 1, "k": -1}, path="phases[0].replay")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error")
def test_cuda_device_without_cuda_fails_when_built():
    with pytest.raises(ValueError, match="CUDA is not available"):
        parse_replay({"capacity": 4, "device": "cuda"}).build_memory()
