"""Tests for attention_book.efficient."""

import pytest
import torch
from torch.testing import assert_close

from attention_book import attention, efficient


@pytest.mark.parametrize("block_size", [1, 3, 16, 64, 1000])
def test_blockwise_equals_full_attention(block_size):
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 3, 10, 8), torch.randn(2, 3, 37, 8), torch.randn(2, 3, 37, 5)
    expected, _ = attention.scaled_dot_product_attention(q, k, v)
    assert_close(efficient.blockwise_attention(q, k, v, block_size=block_size), expected)


def test_blockwise_with_causal_and_fully_masked_rows():
    torch.manual_seed(1)
    q, k, v = torch.randn(1, 12, 4), torch.randn(1, 12, 4), torch.randn(1, 12, 3)
    mask = attention.causal_mask(12).clone()
    mask[5] = False  # a query that may attend to nothing
    out = efficient.blockwise_attention(q, k, v, mask=mask, block_size=4)
    expected, _ = attention.scaled_dot_product_attention(q, k, v, mask=mask)
    assert_close(out, expected)
    assert (out[0, 5] == 0).all() and torch.isfinite(out).all()


def test_blockwise_is_stable_for_large_scores():
    q = torch.full((1, 2, 4), 30.0)
    k = torch.full((1, 6, 4), 30.0)
    v = torch.randn(1, 6, 2)
    out = efficient.blockwise_attention(q, k, v, block_size=2)
    assert torch.isfinite(out).all()
    assert_close(out, v.mean(dim=1, keepdim=True).expand(1, 2, 2))


def test_blockwise_rejects_bad_input():
    q, k, v = torch.randn(2, 4), torch.randn(3, 4), torch.randn(3, 2)
    with pytest.raises(ValueError, match="block_size"):
        efficient.blockwise_attention(q, k, v, block_size=0)
    with pytest.raises(ValueError, match="d_k"):
        efficient.blockwise_attention(q, torch.randn(3, 5), v)


def test_attention_matrix_bytes():
    assert efficient.attention_matrix_bytes(1, 1, 2, 3) == 24
    _, w = attention.scaled_dot_product_attention(
        torch.randn(2, 4, 16, 8), torch.randn(2, 4, 16, 8), torch.randn(2, 4, 16, 8)
    )
    assert efficient.attention_matrix_bytes(2, 4, 16, 16) == w.numel() * w.element_size()
    with pytest.raises(ValueError, match="T must be a positive int"):
        efficient.attention_matrix_bytes(1, 1, 0, 3)
