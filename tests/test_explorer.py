"""Tests for attention_book.explorer: a deterministic, self-contained HTML head explorer."""

from __future__ import annotations

import json
import re

import pytest
import torch

from attention_book import explorer


def _maps(T: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, 3, T, T, generator=g).softmax(dim=-1)  # (N, H, T, T)


SENTENCES = {"a <b> c": (["[CLS]", "a", "[SEP]"], _maps(3)), "two": (["x", "y"], _maps(2, 1))}


def test_html_has_every_fixed_id_and_the_weights():
    page = explorer.head_explorer_html(SENTENCES, layer=1, head=2)
    for element in explorer.IDS:
        assert f'id="{element}"' in page
    data = re.search(r'id="head-explorer-data">(.*?)</script>', page).group(1)
    payload = json.loads(data)
    assert len(payload["colors"]) == 101
    first = torch.tensor(payload["sentences"][0]["weights"])  # (N, H, T, T) in hundredths
    assert first.shape == (2, 3, 3, 3)
    assert (first - SENTENCES["a <b> c"][1] * 100).abs().max() <= 0.5
    assert "&lt;b&gt;" in page  # labels are escaped
    assert '<option value="1" selected>' in page and '<option value="2" selected>' in page


def test_html_is_deterministic_and_loads_nothing():
    page = explorer.head_explorer_html(SENTENCES)
    assert page == explorer.head_explorer_html(SENTENCES)
    assert "src=" not in page and "<link" not in page and "import(" not in page
    assert page.count("<script") == 2


def test_html_rejects_bad_input():
    with pytest.raises(ValueError, match="at least one"):
        explorer.head_explorer_html({})
    with pytest.raises(ValueError, match="T=3"):
        explorer.head_explorer_html({"s": (["a", "b", "c"], _maps(2))})
    with pytest.raises(ValueError, match="same"):
        explorer.head_explorer_html({"s": (["a"], _maps(1)), "t": (["a"], torch.ones(1, 1, 1, 1))})
    with pytest.raises(ValueError, match="outside"):
        explorer.head_explorer_html(SENTENCES, layer=2)


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        (torch.full((2, 3, 3, 3), float("nan")), "attention weights"),
        (torch.randn(2, 3, 3, 3) * 5, "not raw scores"),
        (torch.ones(2, 3, 3, 3, dtype=torch.long), "floating-point"),
    ],
)
def test_html_refuses_what_are_not_attention_weights(weights, message):
    with pytest.raises((ValueError, TypeError), match=message):
        explorer.head_explorer_html({"s": (["a", "b", "c"], weights)})


@pytest.mark.parametrize("layer", [1.0, True])
def test_html_refuses_a_float_or_bool_layer(layer):
    with pytest.raises(ValueError, match="layer must be a non-negative int"):
        explorer.head_explorer_html(SENTENCES, layer=layer)
