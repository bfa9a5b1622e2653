"""Tests for attention_book.measure: peak memory, timing and log-log slopes."""

import math
import time

import pytest
import torch

from attention_book import measure


def test_peak_memory_counts_what_the_call_allocates():
    assert measure.peak_memory(torch.empty, 1000, 250) == 1_000_000  # float32: 4 bytes each


def test_peak_memory_sees_temporaries_that_are_freed():
    def two_temporaries() -> torch.Tensor:
        a = torch.ones(1000, 250)  # 1 MB
        b = a * 2  # another 1 MB while a is alive
        return b.sum()  # a and b are freed on return

    peak = measure.peak_memory(two_temporaries)
    assert 2_000_000 <= peak < 2_001_000


def test_peak_memory_ignores_inputs_and_takes_arguments():
    x = torch.ones(1000, 1000)
    assert measure.peak_memory(torch.sum, x) < 1_000  # only the 0-d result
    assert measure.peak_memory(torch.mul, x, other=2.0) >= 4_000_000  # a new (1000, 1000)


def test_peak_memory_rejects_a_non_callable():
    with pytest.raises(TypeError, match="callable"):
        measure.peak_memory(3)


def test_time_calls_interleaves_and_returns_medians():
    order = []
    calls = {
        "short": lambda: order.append(("short", time.sleep(0.001))),
        "long": lambda: order.append(("long", time.sleep(0.02))),
    }
    seconds = measure.time_calls(calls, repeat=3, warmup=1)
    assert [name for name, _ in order] == ["short", "long"] * 4
    assert set(seconds) == {"short", "long"}
    assert 0.001 <= seconds["short"] < seconds["long"] < 1.0


def test_time_calls_rejects_bad_arguments():
    with pytest.raises(ValueError, match="repeat"):
        measure.time_calls({"a": time.time}, repeat=0)
    with pytest.raises(ValueError, match="warmup"):
        measure.time_calls({"a": time.time}, warmup=-1)
    with pytest.raises(TypeError, match="callable"):
        measure.time_calls({"a": None})


def test_loglog_slope_recovers_a_power_law():
    xs = [256, 512, 1024, 2048]
    assert math.isclose(measure.loglog_slope(xs, [3 * x**2 for x in xs]), 2.0)
    assert math.isclose(measure.loglog_slope(xs, [0.5 * x for x in xs]), 1.0)


def test_loglog_slope_rejects_bad_input():
    with pytest.raises(ValueError, match="equal-length"):
        measure.loglog_slope([1, 2], [1])
    with pytest.raises(ValueError, match="positive"):
        measure.loglog_slope([1, 2], [0, 1])
    with pytest.raises(ValueError, match="different"):
        measure.loglog_slope([2, 2], [1, 3])


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_loglog_slope_refuses_nan_and_inf_instead_of_returning_nan(bad):
    with pytest.raises(ValueError, match="finite number"):
        measure.loglog_slope([1.0, 2.0, 4.0], [1.0, bad, 16.0])
