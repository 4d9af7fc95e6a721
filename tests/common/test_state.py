"""The strict state checks every load_state_dict uses: exact messages, one exception type."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from smartloader.common.state import (StateError, check_bool, check_generator_state,
                                      check_int, check_number, check_same, check_tensor, show,
                                      strict_keys)


def _message(fn, *args, **kwargs) -> str:
    with pytest.raises(StateError) as info:
        fn(*args, **kwargs)
    assert isinstance(info.value, ValueError)
    return str(info.value)


def test_strict_keys_names_missing_and_unknown_keys():
    strict_keys(None, {"a": 1, "b": 2}, {"a", "b"}, "state.x")          # exact: passes
    assert _message(strict_keys, None, {"a": 1, "c": 3}, {"a", "b"}, "state.x") == (
        "state.x: missing keys ['b'], unknown keys ['c'] are unexpected; expected keys "
        "['a', 'b']")
    assert _message(strict_keys, None, {}, ["a"], "p") == "p: missing keys ['a']; expected " \
        "keys ['a']"
    assert _message(strict_keys, None, [1], set(), "p") == "p: must be a dict, got a list " \
        "of length 1"


def test_strict_keys_without_a_path_names_the_owner():
    class Part:
        pass
    assert _message(strict_keys, Part(), {"x": 1}, ()).startswith(
        "Part.load_state_dict: unknown keys ['x']")


@pytest.mark.parametrize("value, kwargs, message", [
    (-1, {}, "p: must be an integer >= 0, got -1"),
    (True, {}, "p: must be an integer >= 0, got True"),
    (2.0, {}, "p: must be an integer >= 0, got 2.0 (float)"),
    (np.int64(2), {}, "p: must be an integer >= 0, got an int64"),
    (5, {"maximum": 4}, "p: must be an integer in [0, 4], got 5"),
    (5, {"minimum": None, "maximum": 4}, "p: must be an integer <= 4, got 5"),
    ("x", {"minimum": None}, "p: must be an integer, got 'x' (str)"),
])
def test_check_int(value, kwargs, message):
    assert _message(check_int, value, "p", **kwargs) == message


def test_check_int_returns_good_values():
    assert check_int(0, "p") == 0 and check_int(4, "p", 0, 4) == 4
    assert check_int(-3, "p", minimum=None) == -3


def test_check_number_and_bool():
    assert check_number(2, "p") == 2.0 and check_number(float("inf"), "p", finite=False)
    assert _message(check_number, float("nan"), "p") == "p: must be a finite number, got " \
        "nan (float)"
    assert _message(check_number, False, "p") == "p: must be a finite number, got False"
    assert check_bool(True, "p") is True
    assert _message(check_bool, 1, "p") == "p: must be True or False, got 1"


def test_check_same():
    check_same(3, 3.0, "p")                    # numbers compare by value
    check_same([1, "a"], [1, "a"], "p")
    assert _message(check_same, 4, 3, "state.capacity", "memory") == (
        "state.capacity: saved 4, this memory has 3; it would continue differently")
    assert _message(check_same, "1", 1, "p", hint=" (why?)") == (
        "p: saved '1', this part has 1; it would continue differently (why?)")
    assert _message(check_same, True, 1, "p").startswith("p: saved True, this part has 1")


def test_check_tensor_dtype_shape_and_values():
    t = torch.tensor([0, 3, 1], dtype=torch.int32)
    assert check_tensor(t, "p", torch.int32, (3,)) is t
    assert check_tensor(t, "p", torch.int32, (None,), minimum=0, maximum=3) is t
    assert _message(check_tensor, t, "p", torch.int64, (3,)) == (
        "p: must be a tensor of dtype int64 and shape (3,), got a tensor of dtype int32 and "
        "shape (3,)")
    assert _message(check_tensor, t, "p", shape=(2, None)) == (
        "p: must be a tensor of shape (2, n), got a tensor of dtype int32 and shape (3,)")
    assert _message(check_tensor, t, "p", ndim=2) == (
        "p: must be a tensor of 2 dimensions, got a tensor of dtype int32 and shape (3,)")
    assert _message(check_tensor, [1], "p") == "p: must be a tensor, got a list of length 1"
    assert _message(check_tensor, t, "p", minimum=1) == "p: values must be >= 1, got 0"
    assert _message(check_tensor, t, "p", maximum=2) == "p: values must be <= 2, got 3"
    f = torch.tensor([1.0, float("inf")])
    assert check_tensor(f, "p", no_nan=True) is f
    assert _message(check_tensor, f, "p", finite=True) == (
        "p: must hold finite values, got NaN or infinity")
    assert _message(check_tensor, f * float("nan"), "p", no_nan=True) == "p: must not hold NaN"
    check_tensor(torch.zeros(0), "p", torch.float32, (0,), finite=True, minimum=1)  # empty


def test_check_generator_state():
    state = torch.Generator().manual_seed(1).get_state()
    assert check_generator_state(state, "p") is state
    assert _message(check_generator_state, state.float(), "p") == (
        "p: must be a torch.Generator state (a 1-D uint8 tensor), got a tensor of dtype "
        "float32 and shape (5056,)")
    assert _message(check_generator_state, None, "p").endswith("got None")
    assert _message(check_generator_state, state[:-1], "p").startswith(
        "p: not a state of a cpu torch.Generator (")
    assert _message(check_generator_state, torch.zeros(5056, dtype=torch.uint8), "p") == (
        "p: not a state of a cpu torch.Generator (Invalid mt19937 state)")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without CUDA")
def test_check_generator_state_for_a_device_that_is_not_here():
    state = torch.Generator().get_state()
    assert _message(check_generator_state, state, "p", "cuda:0") == (
        "p: a generator on cuda:0 is needed to load it, and that device is not available here")


@pytest.mark.gpu
def test_check_generator_state_on_cuda():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    state = torch.Generator(device="cuda").manual_seed(2).get_state()
    assert check_generator_state(state, "p", "cuda") is state
    assert _message(check_generator_state, torch.Generator().get_state(), "p", "cuda"
                    ).startswith("p: not a state of a cuda torch.Generator")


def test_show():
    assert show(torch.zeros(2, 3)) == "a tensor of dtype float32 and shape (2, 3)"
    assert show(np.zeros(2, dtype=np.int8)) == "a numpy array of dtype int8 and shape (2,)"
    assert show("x" * 70) == repr("x" * 56)[:57] + "... (str)"
    assert show({"a": 1}) == "a dict of length 1" and show(None) == "None"
    assert show(object()) == "an object"
