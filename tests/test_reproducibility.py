"""Tests for attention_book.reproducibility.set_seed."""

import random

import numpy as np
import pytest
import torch

from attention_book import reproducibility


def test_set_seed_repeats_every_generator():
    draws = []
    for _ in range(2):
        reproducibility.set_seed(123)
        draws.append(
            (
                random.random(),
                np.random.rand(),  # noqa: NPY002
                torch.rand(1).item(),
            )
        )
    assert draws[0] == draws[1]


def test_set_seed_fixes_threads():
    reproducibility.set_seed(0, threads=2)
    assert torch.get_num_threads() == 2
    reproducibility.set_seed(0)
    assert torch.get_num_threads() == reproducibility.DEFAULT_THREADS == 1


def test_the_environment_can_change_the_default_threads(monkeypatch):
    monkeypatch.setenv(reproducibility.THREADS_ENV, "2")
    reproducibility.set_seed(0)
    assert torch.get_num_threads() == reproducibility.default_threads() == 2
    reproducibility.set_seed(0, threads=1)  # an explicit count wins
    assert torch.get_num_threads() == 1


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5", ""])
def test_a_bad_thread_variable_is_named(monkeypatch, value):
    monkeypatch.setenv(reproducibility.THREADS_ENV, value)
    with pytest.raises(ValueError, match="ATTENTION_BOOK_THREADS must be a positive integer"):
        reproducibility.set_seed(0)


@pytest.mark.parametrize("seed, threads", [(-1, 2), (1.5, 2), (0, 0), (0, "2")])
def test_set_seed_rejects_bad_arguments(seed, threads):
    with pytest.raises(ValueError):
        reproducibility.set_seed(seed, threads)


def test_rounded_gives_short_floats():
    t = torch.tensor([[0.24, 0.019999], [2.0, -0.00001]])
    assert reproducibility.rounded(t, 3) == [[0.24, 0.02], [2.0, 0.0]]
    assert reproducibility.rounded(torch.tensor(1 / 3), 2) == 0.33
    assert reproducibility.rounded([1 / 3, [2 / 3]], 1) == [0.3, [0.7]]
    assert str(reproducibility.rounded(torch.tensor([0.24]), 2)) == "[0.24]"


def test_rounded_rejects_non_numbers():
    with pytest.raises(TypeError, match="str"):
        reproducibility.rounded("0.5")


@pytest.mark.parametrize("seed", [2**32, True, False, -1, 0.0])
def test_a_rejected_seed_changes_no_global_state(seed):
    reproducibility.set_seed(7, threads=1)
    state = (random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state())  # noqa: NPY002
    with pytest.raises(ValueError, match="seed must be"):
        reproducibility.set_seed(seed, threads=2)
    assert random.getstate() == state[0]
    assert np.array_equal(np.random.get_state()[1], state[1])  # noqa: NPY002
    assert torch.equal(torch.get_rng_state(), state[2])
    assert torch.get_num_threads() == 1
    reproducibility.set_seed()


def test_set_seed_takes_the_largest_seed_and_integer_like_values():
    reproducibility.set_seed(reproducibility.MAX_SEED)
    reproducibility.set_seed(np.int64(5), threads=np.int64(1))
    first = random.random(), torch.rand(1).item()
    reproducibility.set_seed(5, threads=1)
    assert first == (random.random(), torch.rand(1).item())
    assert torch.get_num_threads() == 1
    reproducibility.set_seed()


def test_rounded_refuses_a_bool_number_of_digits_and_takes_numpy_numbers():
    with pytest.raises(ValueError, match="digits must be an int, got True"):
        reproducibility.rounded(0.123, digits=True)  # it used to round to 0.1
    assert reproducibility.rounded(np.float32(0.25), 2) == 0.25
