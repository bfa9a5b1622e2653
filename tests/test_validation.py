"""Tests for attention_book.validation."""

import numpy as np
import pytest
import torch

from attention_book import validation


@pytest.mark.parametrize("good", [1, 2, 10_000])
def test_check_positive_int_accepts_positive_ints(good):
    assert validation.check_positive_int("steps", good) == good


@pytest.mark.parametrize("bad", [0, -3, 2.0, True, "4", None])
def test_check_positive_int_names_the_argument_and_value(bad):
    with pytest.raises(ValueError, match=rf"steps must be a positive int, got {bad!r}"):
        validation.check_positive_int("steps", bad)


@pytest.mark.parametrize("good", [np.int64(4), np.int32(4), torch.tensor(4), torch.tensor([4])])
def test_integer_like_values_are_accepted_as_python_ints(good):
    """What Python accepts as an index (operator.index) is an int here too."""
    value = validation.check_positive_int("steps", good)
    assert value == 4 and type(value) is int


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.int64(0), "steps must be a positive int, got 0$"),
        (2.0, "got 2.0 of type float"),
        (np.float64(2.0), "of type float64"),
        (torch.tensor(True), "of type Tensor"),
        (torch.tensor(4.0), "of type Tensor"),
        (torch.tensor([1, 2]), "of type Tensor"),
        (True, "got True of type bool"),
    ],
)
def test_a_rejected_value_is_named_with_its_type(bad, message):
    with pytest.raises(ValueError, match=message):
        validation.check_positive_int("steps", bad)


def test_check_int_bounds():
    assert validation.check_non_negative_int("seed", np.uint8(0)) == 0
    assert validation.check_int("offset", -5) == -5
    assert validation.check_int("offset", 7, minimum=7) == 7
    with pytest.raises(ValueError, match="seed must be a non-negative int, got -1"):
        validation.check_non_negative_int("seed", -1)
    with pytest.raises(ValueError, match="offset must be an int >= 7, got 6"):
        validation.check_int("offset", 6, minimum=7)
    with pytest.raises(ValueError, match="offset must be an int, got '1' of type str"):
        validation.check_int("offset", "1")


def test_check_ids_returns_the_ids_or_names_what_is_wrong():
    ids = torch.tensor([[1, 2], [3, 0]])
    assert validation.check_ids("src", ids) is ids
    with pytest.raises(TypeError, match="src must be a LongTensor of token ids, got torch.float32"):
        validation.check_ids("src", ids.float())
    with pytest.raises(TypeError, match="got list"):
        validation.check_ids("src", [[1, 2]])
    with pytest.raises(ValueError, match=r"2 dimensions \(B, length\), got \(2, 0\)"):
        validation.check_ids("src", torch.zeros(2, 0, dtype=torch.long))


def test_check_cache_update_names_the_layer_and_the_shapes():
    k = torch.zeros(1, 2, 3, 4)
    assert validation.check_cache_update(1, 2, k, k, "KVCache") == 1
    with pytest.raises(ValueError, match=r"outside this cache of 2 layers.*KVCache\("):
        validation.check_cache_update(2, 2, k, k, "KVCache")
    with pytest.raises(ValueError, match=r"got \(1, 2, 3, 4\) and \(1, 2, 5, 4\)"):
        validation.check_cache_update(0, 2, k, torch.zeros(1, 2, 5, 4), "SinkCache")
