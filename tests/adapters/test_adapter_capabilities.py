"""Capabilities and the build-time check; needs neither ffcv nor DALI."""
from __future__ import annotations

import subprocess
import sys

import pytest

from smartloader.adapters import Capabilities, change_level, check_capabilities
from smartloader.errors import ConfigError

FFCV = Capabilities(resolution="epoch", magnitude="never", sample_ids=True, distributed=True)


def test_change_level_exact_values():
    assert change_level([1, 1, 1, 1], 2) == ("never", None)
    assert change_level([1, 1, 2, 2, 3, 3], 2) == ("epoch", 2)
    assert change_level([1, 1, 2, 2, 3, 3], 3) == ("iteration", 2)
    assert change_level([1, 1, 1, 2], 3) == ("epoch", 3)
    assert change_level([1, 1, 1, 2, 2], 4) == ("iteration", 3)
    with pytest.raises(ValueError):
        change_level([1], 0)


def test_message_names_key_adapter_step_and_remedy():
    with pytest.raises(ConfigError) as err:
        check_capabilities(FFCV, {"resolution": {"changes": "iteration", "step": 37}}, "ffcv")
    assert str(err.value) == (
        "resolution: the ffcv adapter can change resolution only between epochs "
        "(resolution: epoch), but the schedule changes it within an epoch at step 37; "
        "use a schedule that changes only at epoch boundaries, or restart the epoch at the new "
        "size with adapter.set_resolution(r, now=True)")


def test_allowed_wants_pass():
    check_capabilities(FFCV, {"resolution": "epoch", "magnitude": "never",
                              "sample_ids": True, "distributed": True}, "ffcv")
    check_capabilities(FFCV, {}, "ffcv")


@pytest.mark.parametrize("wants, start", [
    ({"magnitude": "epoch"}, "magnitude: the ffcv adapter cannot change magnitude"),
    ({"sample_ids": True}, "sample_ids: the x adapter"),
    ({"distributed": True}, "distributed: the x adapter"),
    ({"resolution": "sometimes"}, "resolution: must be one of"),
    ({"speed": "fast"}, "speed: unknown capability"),
])
def test_violations_raise_config_error_with_key_path(wants, start):
    caps = FFCV if "magnitude" in wants else Capabilities()
    name = "ffcv" if "magnitude" in wants else "x"
    with pytest.raises(ConfigError) as err:
        check_capabilities(caps, wants, name)
    assert str(err.value).startswith(start)


def test_capabilities_validate_and_are_frozen():
    with pytest.raises(ValueError):
        Capabilities(resolution="always")
    with pytest.raises(AttributeError):
        FFCV.resolution = "iteration"


def test_importing_adapters_does_not_import_ffcv_or_dali():
    code = ("import sys, smartloader.adapters; "
            "print(any(m == 'ffcv' or m.startswith('nvidia.dali') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
