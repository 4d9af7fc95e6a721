"""Batch field operations on tiny data with exact expected values: find a field, read it,
replace it, the batch size, concatenate batches into a pool, subset a pool."""
from __future__ import annotations

from collections import OrderedDict, namedtuple

import numpy as np
import pytest
import torch

from smartloader.common.batch import (batch_size_of, concat_batches, get_field, replace_field,
                                      resolve_key, take)
from resume_harness import assert_same

Pair = namedtuple("Pair", ["x", "y"])
X = torch.arange(6)                      # six samples: 0..5
Y = torch.arange(10, 16)


# -- resolve_key / get_field ------------------------------------------------------------------
@pytest.mark.parametrize("batch, role, key", [
    ((X, Y), "input", (0,)), ((X, Y), "target", (1,)),
    ([X, Y, [1, 2]], "target", (1,)),
    ({"image": X, "label": Y}, "input", ("image",)),
    ({"image": X, "label": Y}, "target", ("label",)),
    (Pair(X, Y), "target", (1,)),
])
def test_resolve_key_defaults(batch, role, key):
    assert resolve_key(batch, None, role) == key


def test_resolve_key_checks_an_explicit_key():
    batch = {"data": {"x": X}, "y": Y}
    assert resolve_key(batch, ("data", "x"), "input") == ("data", "x")
    with pytest.raises(KeyError, match=r"input_key: \['data', 'z'\] does not exist in the "
                                       r"batch \(failed at 'z'\)"):
        resolve_key(batch, ("data", "z"), "input")


@pytest.mark.parametrize("batch, role, message", [
    ({"x": X}, "input", "input_key: the batch is a mapping without key 'image' \\(keys: x\\); "
                        "set input_key in the config"),
    ((X,), "target", "target_key: the batch has 1 element\\(s\\), no position 1; set "
                     "target_key in the config"),
    (X, "input", "input_key: cannot find the input in a batch of type Tensor"),
    (["a", "b"], "input", "input_key: cannot find the input in a batch of type list"),
])
def test_resolve_key_says_which_key_to_set(batch, role, message):
    with pytest.raises(KeyError, match=message):
        resolve_key(batch, None, role)


def test_get_field_walks_tuples_mappings_and_namedtuples():
    batch = (X, {"meta": Pair(Y, ["a", "b"])})
    assert get_field(batch, (0,)) is X
    assert get_field(batch, (1, "meta", "x")) is Y
    assert get_field(batch, (1, "meta", 1)) == ["a", "b"]
    assert get_field(batch, ()) is batch
    with pytest.raises(KeyError, match=r"index_key: \[1, 'meta', 'z'\] does not exist in the "
                                       r"batch \(failed at 'z'\)"):
        get_field(batch, (1, "meta", "z"), "index_key")
    with pytest.raises(KeyError, match=r"failed at 5"):
        get_field(batch, (5,))


# -- batch_size_of ----------------------------------------------------------------------------
def test_batch_size_of():
    assert batch_size_of(torch.zeros(4, 3)) == 4
    assert batch_size_of(np.zeros((5, 2))) == 5
    assert batch_size_of(["a", "b"]) == 2 and batch_size_of(("a",)) == 1
    assert batch_size_of(torch.zeros(0, 3)) == 0
    for bad in (torch.tensor(1.0), np.float32(1.0), 3):
        with pytest.raises(TypeError, match="the input must be a tensor, array or list with a "
                                            "batch dimension"):
            batch_size_of(bad)


# -- concat_batches ---------------------------------------------------------------------------
def test_concat_tuple_of_tensors_strings_and_constants():
    first = (X[:4], Y[:4], ["a", "b", "c", "d"], 7, torch.tensor(0.5), torch.ones(2))
    second = (X[4:], Y[4:], ["e", "f"], 8, torch.tensor(0.25), torch.zeros(2))
    pool = concat_batches([first, second], [4, 2])
    assert type(pool) is tuple and len(pool) == 6
    assert_same(pool[0], torch.arange(6))
    assert_same(pool[1], torch.arange(10, 16))
    assert pool[2] == ["a", "b", "c", "d", "e", "f"]
    # not per-sample: a scalar, a 0-d tensor, a tensor whose length is not the batch's
    assert pool[3] == 7 and pool[4] is first[4] and pool[5] is first[5]


def test_concat_dicts_nested_namedtuples_numpy_and_tuples_of_strings():
    def batch(lo, hi):
        return OrderedDict(image=X[lo:hi].float().view(-1, 1),
                           meta={"index": Pair(Y[lo:hi], np.arange(lo, hi) * 2),
                                 "name": tuple(f"n{i}" for i in range(lo, hi)),
                                 "ids": list(range(lo, hi))})
    pool = concat_batches([batch(0, 2), batch(2, 3), batch(3, 6)], [2, 1, 3])
    assert type(pool) is OrderedDict and list(pool) == ["image", "meta"]
    assert_same(pool["image"], torch.arange(6.0).view(6, 1))
    index = pool["meta"]["index"]
    assert type(index) is Pair
    assert_same(index.x, torch.arange(10, 16))
    assert_same(index.y, np.arange(6) * 2)
    assert pool["meta"]["name"] == ("n0", "n1", "n2", "n3", "n4", "n5")
    assert pool["meta"]["ids"] == [0, 1, 2, 3, 4, 5]


def test_concat_lists_of_tensors_stay_lists():
    pool = concat_batches([[X[:3], Y[:3]], [X[3:], Y[3:]]], [3, 3])
    assert type(pool) is list
    assert_same(pool, [torch.arange(6), torch.arange(10, 16)])


def test_concat_a_leaf_of_another_length_in_one_batch_is_not_per_sample():
    # the first batch's [3]-tensor looks per-sample, the second's [3] is not (batch of 2)
    pool = concat_batches([(X[:3], torch.ones(3)), (X[3:5], torch.zeros(3))], [3, 2])
    assert_same(pool[0], torch.arange(5))
    assert_same(pool[1], torch.ones(3))


@pytest.mark.parametrize("second", [
    {"image": X[3:], "other": Y[3:]}, [X[3:], Y[3:]], (X[3:],), (X[3:], Y[3:], Y[3:])])
def test_concat_refuses_batches_of_different_structures(second):
    first = {"image": X[:3], "label": Y[:3]} if isinstance(second, dict) else (X[:3], Y[:3])
    with pytest.raises(ValueError, match="batches in one pool have different structures"):
        concat_batches([first, second], [3, 3])


# -- take -------------------------------------------------------------------------------------
def test_take_subsets_every_per_sample_field_in_index_order():
    pool = {"image": X.view(6, 1) * 1.5, "label": Y, "name": [f"f{i}" for i in range(6)],
            "tag": tuple("abcdef"), "np": np.arange(6) ** 2, "lr": 0.1,
            "mask": torch.ones(4), "pair": Pair(X, ["p"] * 6)}
    out = take(pool, torch.tensor([4, 0, 2]), 6)
    assert_same(out["image"], torch.tensor([[6.0], [0.0], [3.0]]))
    assert_same(out["label"], torch.tensor([14, 10, 12]))
    assert out["name"] == ["f4", "f0", "f2"] and out["tag"] == ("e", "a", "c")
    assert_same(out["np"], np.array([16, 0, 4]))
    assert out["lr"] == 0.1 and out["mask"] is pool["mask"]     # not per-sample: unchanged
    assert type(out["pair"]) is Pair
    assert_same(out["pair"].x, torch.tensor([4, 0, 2]))
    assert out["pair"].y == ["p", "p", "p"]


def test_take_of_a_tuple_pool_and_an_empty_index():
    out = take((X, Y), torch.tensor([5]), 6)
    assert_same(out, (torch.tensor([5]), torch.tensor([15])))
    empty = take((X, ["a"] * 6), torch.zeros(0, dtype=torch.long), 6)
    assert_same(empty, (torch.zeros(0, dtype=torch.long), []))


def test_take_keeps_dtypes():
    pool = (torch.arange(6, dtype=torch.uint8), torch.arange(6.0, dtype=torch.float16))
    out = take(pool, torch.tensor([1, 3]), 6)
    assert_same(out, (torch.tensor([1, 3], dtype=torch.uint8),
                      torch.tensor([1.0, 3.0], dtype=torch.float16)))


# -- replace_field ----------------------------------------------------------------------------
def test_replace_field_in_tuples_lists_dicts_namedtuples():
    new = torch.zeros(6)
    names = ["a"] * 6
    t = replace_field((X, Y, names), (1,), new)
    assert type(t) is tuple and t[0] is X and t[1] is new and t[2] is names
    lst = replace_field([X, Y], (0,), new)
    assert type(lst) is list and lst[0] is new and lst[1] is Y
    d = replace_field(OrderedDict(image=X, label=Y), ("label",), new)
    assert type(d) is OrderedDict and list(d) == ["image", "label"] and d["label"] is new
    p = replace_field(Pair(X, Y), ("y",), new)
    assert type(p) is Pair and p.x is X and p.y is new
    assert replace_field(Pair(X, Y), (0,), new).x is new      # by position too


def test_replace_field_nested_copies_only_the_path():
    meta = {"index": Y, "name": ["a"] * 6}
    batch = {"image": X, "meta": meta}
    out = replace_field(batch, ("meta", "index"), torch.arange(6) * 0)
    assert out is not batch and out["meta"] is not meta
    assert out["image"] is X and out["meta"]["name"] is meta["name"]
    assert_same(out["meta"]["index"], torch.zeros(6, dtype=torch.long))
    assert batch["meta"]["index"] is Y                          # the original is unchanged
    assert replace_field(batch, (), "whole") == "whole"


def test_replace_field_refuses_a_leaf():
    with pytest.raises(TypeError, match="cannot replace field 0 in a Tensor"):
        replace_field((X, Y), (0, 0), 1)
