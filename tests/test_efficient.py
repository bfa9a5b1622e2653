"""Tests for attention_book.efficient: blockwise attention agrees with the explicit one."""

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close
from torch.utils import flop_counter

from attention_book import attention, efficient, measure

NAN, INF = float("nan"), float("inf")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def explicit(q, k, v, mask=None, causal=False):
    """The reference: attention.scaled_dot_product_attention with the causal mask spelled out."""
    if causal:
        tril = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool).tril()  # (T, S)
        mask = tril if mask is None else mask & tril
    return attention.scaled_dot_product_attention(q, k, v, mask)[0]


def outcome(fn):
    """("raise", message) or ("value", tensor), to compare two implementations on any input."""
    try:
        return "value", fn()
    except ValueError as e:
        return "raise", str(e)


@pytest.mark.parametrize("block_size", [1, 3, 16, 64, 1000])
@pytest.mark.parametrize("causal", [False, True])
def test_blockwise_equals_explicit_for_odd_sizes(block_size, causal):
    q, k, v = torch.randn(2, 3, 37, 7), torch.randn(2, 3, 53, 7), torch.randn(2, 3, 53, 5)
    out = efficient.blockwise_attention(q, k, v, causal=causal, block_size=block_size)
    assert_close(out, explicit(q, k, v, causal=causal))


@pytest.mark.parametrize("block_size", [1, 4, 13, 100])
def test_blockwise_with_mask_and_causal_combined(block_size):
    q, k, v = torch.randn(2, 13, 4), torch.randn(2, 13, 4), torch.randn(2, 13, 3)
    mask = torch.rand(2, 1, 13) > 0.3  # (B, 1, S): padding-like, broadcast over queries
    for causal in (False, True):
        out = efficient.blockwise_attention(q, k, v, mask, causal=causal, block_size=block_size)
        assert_close(out, explicit(q, k, v, mask, causal=causal))


@pytest.mark.parametrize("T, S", [(5, 9), (9, 5), (64, 64)])
def test_causal_is_top_left_aligned_like_torch(T, S):
    q, k, v = torch.randn(1, 2, T, 8), torch.randn(1, 2, S, 8), torch.randn(1, 2, S, 8)
    out = efficient.blockwise_attention(q, k, v, causal=True, block_size=4)
    assert_close(out, F.scaled_dot_product_attention(q, k, v, is_causal=True))


def test_blockwise_broadcasts_batch_dimensions():
    q, k, v = torch.randn(2, 1, 10, 4), torch.randn(1, 3, 12, 4), torch.randn(3, 12, 6)
    out = efficient.blockwise_attention(q, k, v, causal=True, block_size=5)
    assert out.shape == (2, 3, 10, 6)
    assert_close(out, explicit(q, k, v, causal=True))


def test_fully_masked_rows_give_zero_not_nan():
    q, k, v = torch.randn(1, 12, 4), torch.randn(1, 12, 4), torch.randn(1, 12, 3)
    mask = torch.ones(12, 12, dtype=torch.bool)
    mask[5] = False  # a query that may attend to nothing
    for causal, block_size in ((False, 4), (True, 4), (True, 1), (True, 64)):
        out = efficient.blockwise_attention(q, k, v, mask, causal=causal, block_size=block_size)
        assert_close(out, explicit(q, k, v, mask, causal=causal))
        assert (out[0, 5] == 0).all() and torch.isfinite(out).all()


def test_no_keys_gives_zeros():
    out = efficient.blockwise_attention(torch.randn(3, 4), torch.randn(0, 4), torch.randn(0, 2))
    assert out.shape == (3, 2) and (out == 0).all()


def test_blockwise_is_stable_for_large_scores():
    q, k, v = torch.full((1, 2, 4), 30.0), torch.full((1, 6, 4), 30.0), torch.randn(1, 6, 2)
    out = efficient.blockwise_attention(q, k, v, block_size=2)
    assert torch.isfinite(out).all()
    assert_close(out, v.mean(dim=1, keepdim=True).expand(1, 2, 2))


def poisoned(where: str, value: float, row: int):
    """q, k, v of shape (6, 3), (6, 3), (6, 2) with one entry replaced by NaN or +-inf."""
    q, k, v = torch.randn(6, 3), torch.randn(6, 3), torch.randn(6, 2)
    {"q": q, "k": k, "v": v}[where][row, 0] = value
    return q, k, v


@pytest.mark.parametrize("where", ["q", "k", "v"])
@pytest.mark.parametrize("value", [NAN, INF, -INF])
@pytest.mark.parametrize("row", [0, 5])
@pytest.mark.parametrize("causal", [False, True])
def test_nan_and_inf_behave_exactly_like_explicit(where, value, row, causal):
    q, k, v = poisoned(where, value, row)
    for block_size in (1, 2, 4, 8):
        want = outcome(lambda: explicit(q, k, v, causal=causal))  # noqa: B023
        got = outcome(
            lambda: efficient.blockwise_attention(q, k, v, causal=causal, block_size=block_size)  # noqa: B023
        )
        assert got[0] == want[0], (where, value, row, causal, block_size, want, got)
        if want[0] == "value":
            assert_close(got[1], want[1], equal_nan=True)
        else:
            assert "NaN or +inf" in got[1]


def test_nan_key_hidden_by_the_mask_is_ignored_as_in_explicit():
    q, k, v = poisoned("k", NAN, 5)  # only the last query may see key 5 under a causal mask
    mask = torch.ones(6, 6, dtype=torch.bool).tril()
    mask[5, 5] = False
    out = efficient.blockwise_attention(q, k, v, mask, causal=True, block_size=2)
    assert_close(out, explicit(q, k, v, mask))
    assert torch.isfinite(out).all()


def test_overflowing_scores_raise_as_in_explicit():
    q, k, v = 1e20 * torch.randn(4, 3), 1e20 * torch.randn(4, 3), torch.randn(4, 2)
    with pytest.raises(ValueError, match="NaN or \\+inf"):
        explicit(q, k, v)
    with pytest.raises(ValueError, match="NaN or \\+inf"):
        efficient.blockwise_attention(q, k, v, block_size=2)


def test_causal_never_allocates_t_by_s():
    T, d = 512, 16
    q, k, v = torch.randn(1, T, d), torch.randn(1, T, d), torch.randn(1, T, d)
    peak = measure.peak_memory(efficient.blockwise_attention, q, k, v, causal=True, block_size=32)
    explicit_peak = measure.peak_memory(explicit, q, k, v, causal=True)
    assert peak < T * T  # less than one byte per (query, key) pair: not even a bool mask
    assert explicit_peak > 2 * T * T * 4  # several float32 (T, T) matrices
    assert peak >= T * d * 4  # the output itself is counted


def matmul_flops(fn) -> int:
    with flop_counter.FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


@pytest.mark.parametrize("T, block_size", [(256, 64), (250, 64), (96, 32)])
def test_causal_skips_the_tiles_above_the_diagonal(T, block_size):
    q, k, v = torch.randn(T, 8), torch.randn(T, 8), torch.randn(T, 8)
    full = matmul_flops(lambda: efficient.blockwise_attention(q, k, v, block_size=block_size))
    causal = matmul_flops(
        lambda: efficient.blockwise_attention(q, k, v, causal=True, block_size=block_size)
    )
    assert full == 2 * 2 * T * T * 8  # q kᵀ and p v, a multiply and an add each
    # A query tile [q0, q1) visits the keys 0 .. q1 - 1: the tiles on and below the diagonal.
    visited = sum(
        (min(q0 + block_size, T) - q0) * min(q0 + block_size, T) for q0 in range(0, T, block_size)
    )
    assert causal == 2 * 2 * visited * 8
    n = T // block_size
    if T % block_size == 0:
        assert causal * n * n == full * n * (n + 1) // 2  # n (n + 1) / 2 of the n² tiles


def test_nan_in_v_is_not_hidden_by_skipping():
    q, k, v = torch.randn(8, 4), torch.randn(8, 4), torch.randn(8, 2)
    v[7, 1] = NAN  # sits in a tile that a causal query of the first tile would skip
    for fn in (
        lambda: explicit(q, k, v, causal=True),
        lambda: efficient.blockwise_attention(q, k, v, causal=True, block_size=2),
    ):
        with pytest.raises(ValueError, match="not finite"):
            fn()


def test_blockwise_gradients_match_explicit():
    q, k, v = (torch.randn(1, 7, 4, dtype=torch.float64, requires_grad=True) for _ in range(3))
    assert torch.autograd.gradcheck(
        lambda q, k, v: efficient.blockwise_attention(q, k, v, causal=True, block_size=3),
        (q, k, v),
    )
    grads = torch.autograd.grad(
        efficient.blockwise_attention(q, k, v, causal=True, block_size=3).sum(), (q, k, v)
    )
    want = torch.autograd.grad(explicit(q, k, v, causal=True).sum(), (q, k, v))
    for g, w in zip(grads, want, strict=True):
        assert_close(g, w)


def test_blockwise_rejects_bad_input():
    q, k, v = torch.randn(2, 4), torch.randn(3, 4), torch.randn(3, 2)
    with pytest.raises(ValueError, match="block_size"):
        efficient.blockwise_attention(q, k, v, block_size=0)
    with pytest.raises(ValueError, match="d_k"):
        efficient.blockwise_attention(q, torch.randn(3, 5), v)
    with pytest.raises(TypeError, match="causal must be a bool"):
        efficient.blockwise_attention(q, k, v, causal="yes")
    with pytest.raises(TypeError):
        efficient.blockwise_attention(q, k, v, None, 16)  # block_size is keyword-only


def test_attention_matrix_bytes():
    assert efficient.attention_matrix_bytes(1, 1, 2, 3) == 24
    _, w = attention.scaled_dot_product_attention(
        torch.randn(2, 4, 16, 8), torch.randn(2, 4, 16, 8), torch.randn(2, 4, 16, 8)
    )
    assert efficient.attention_matrix_bytes(2, 4, 16, 16) == w.numel() * w.element_size()
    with pytest.raises(ValueError, match="T must be a positive int"):
        efficient.attention_matrix_bytes(1, 1, 0, 3)
