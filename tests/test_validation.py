"""Tests for attention_book.validation."""

import pytest

from attention_book import validation


@pytest.mark.parametrize("good", [1, 2, 10_000])
def test_check_positive_int_accepts_positive_ints(good):
    assert validation.check_positive_int("steps", good) is None


@pytest.mark.parametrize("bad", [0, -3, 2.0, True, "4", None])
def test_check_positive_int_names_the_argument_and_value(bad):
    with pytest.raises(ValueError, match=rf"steps must be a positive int, got {bad!r}"):
        validation.check_positive_int("steps", bad)
