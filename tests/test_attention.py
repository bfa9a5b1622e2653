"""Tests for attention_book.attention: softmax, causal_mask, scaled_dot_product_attention."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from attention_book import attention, validation


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# --- softmax -------------------------------------------------------------------------------


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_softmax_matches_torch(dim):
    x = torch.randn(4, 5, 6)
    assert_close(attention.softmax(x, dim=dim), torch.softmax(x, dim=dim))


def test_softmax_rows_sum_to_one():
    x = 10 * torch.randn(8, 13)
    assert_close(attention.softmax(x).sum(-1), torch.ones(8))


def test_softmax_is_stable_for_huge_scores():
    x = torch.tensor([[1000.0, 1001.0, 1002.0]])
    naive = torch.exp(x) / torch.exp(x).sum(-1, keepdim=True)
    assert torch.isnan(naive).all()  # the failure the stable version avoids
    out = attention.softmax(x)
    assert torch.isfinite(out).all()
    assert_close(out, torch.softmax(x, dim=-1))


def test_softmax_minus_inf_gets_zero_and_all_minus_inf_row_is_zero():
    x = torch.tensor([[0.0, float("-inf"), 0.0], [float("-inf")] * 3])
    out = attention.softmax(x)
    assert_close(out, torch.tensor([[0.5, 0.0, 0.5], [0.0, 0.0, 0.0]]))


def test_softmax_rejects_bad_input():
    with pytest.raises(TypeError, match="torch.Tensor"):
        attention.softmax([1.0, 2.0])
    with pytest.raises(TypeError, match="floating-point"):
        attention.softmax(torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="NaN"):
        attention.softmax(torch.tensor([1.0, float("nan")]))
    with pytest.raises(ValueError, match=r"\+inf"):
        attention.softmax(torch.tensor([1.0, float("inf")]))


def test_softmax_gradcheck():
    x = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(attention.softmax, (x,))


# --- causal_mask ---------------------------------------------------------------------------


def test_causal_mask_values():
    m = attention.causal_mask(3)
    assert m.dtype == torch.bool
    expected = torch.tensor([[1, 0, 0], [1, 1, 0], [1, 1, 1]], dtype=torch.bool)
    assert torch.equal(m, expected)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "3"])
def test_causal_mask_rejects_bad_length(bad):
    with pytest.raises(ValueError, match="positive int"):
        attention.causal_mask(bad)


# --- scaled_dot_product_attention ----------------------------------------------------------


def _qkv(batch=(2, 3), T=4, S=6, d_k=8, d_v=5, dtype=torch.float32):
    q = torch.randn(*batch, T, d_k, dtype=dtype)
    k = torch.randn(*batch, S, d_k, dtype=dtype)
    v = torch.randn(*batch, S, d_v, dtype=dtype)
    return q, k, v


def test_matches_torch_without_mask():
    q, k, v = _qkv()
    out, w = attention.scaled_dot_product_attention(q, k, v)
    assert out.shape == (2, 3, 4, 5) and w.shape == (2, 3, 4, 6)
    assert_close(out, F.scaled_dot_product_attention(q, k, v))
    expected_w = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(8), dim=-1)
    assert_close(w, expected_w)
    assert_close(w.sum(-1), torch.ones(2, 3, 4))


def test_matches_torch_with_causal_mask():
    q, k, v = _qkv(T=5, S=5)
    mask = attention.causal_mask(5)
    out, w = attention.scaled_dot_product_attention(q, k, v, mask=mask)
    assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
    assert_close(out, F.scaled_dot_product_attention(q, k, v, is_causal=True))
    assert (w.masked_select(~mask) == 0).all()


def test_matches_torch_with_broadcast_padding_mask():
    q, k, v = _qkv(batch=(2,), T=4, S=6)
    lengths = torch.tensor([6, 3])
    mask = (torch.arange(6) < lengths[:, None])[:, None, :]  # (B, 1, S) -> broadcasts over T
    out, w = attention.scaled_dot_product_attention(q, k, v, mask=mask)
    assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
    assert (w[1, :, 3:] == 0).all()  # padded keys get zero weight
    assert_close(w.sum(-1), torch.ones(2, 4))


def test_padding_does_not_change_output():
    q, k, v = _qkv(batch=(1,), T=3, S=4)
    mask = torch.tensor([True, True, True, False])
    out_masked, _ = attention.scaled_dot_product_attention(q, k, v, mask=mask)
    out_short, _ = attention.scaled_dot_product_attention(q, k[:, :3], v[:, :3])
    assert_close(out_masked, out_short)


def test_fully_masked_row_gives_zeros_not_nan():
    q, k, v = _qkv(batch=(1,), T=3, S=4)
    mask = torch.ones(3, 4, dtype=torch.bool)
    mask[1] = False  # query 1 may attend to nothing
    out, w = attention.scaled_dot_product_attention(q, k, v, mask=mask)
    assert torch.isfinite(out).all() and torch.isfinite(w).all()
    assert (w[0, 1] == 0).all() and (out[0, 1] == 0).all()
    reference = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    rows = torch.tensor([0, 2])
    assert_close(out[:, rows], reference[:, rows])


def test_broadcasts_keys_over_batch():
    q = torch.randn(2, 4, 8)
    k, v = torch.randn(1, 6, 8), torch.randn(1, 6, 3)
    out, w = attention.scaled_dot_product_attention(q, k, v)
    assert out.shape == (2, 4, 3) and w.shape == (2, 4, 6)


def test_gradcheck_float64_with_mask():
    q, k, v = _qkv(batch=(2,), T=3, S=4, d_k=4, d_v=2, dtype=torch.float64)
    mask = torch.tensor([[True, True, False, True]] * 3)
    inputs = tuple(t.requires_grad_() for t in (q, k, v))

    def f(q, k, v):
        return attention.scaled_dot_product_attention(q, k, v, mask=mask)[0]

    assert torch.autograd.gradcheck(f, inputs)


def test_gradient_of_fully_masked_row_is_finite():
    q, k, v = (t.requires_grad_() for t in _qkv(batch=(1,), T=2, S=3))
    mask = torch.tensor([[True, True, True], [False, False, False]])
    out, _ = attention.scaled_dot_product_attention(q, k, v, mask=mask)
    out.sum().backward()
    for t in (q, k, v):
        assert torch.isfinite(t.grad).all()


def test_rejects_mismatched_d_k():
    q, k, v = torch.randn(2, 4, 8), torch.randn(2, 6, 7), torch.randn(2, 6, 5)
    with pytest.raises(ValueError, match=r"d_k.*q \(2, 4, 8\), k \(2, 6, 7\)"):
        attention.scaled_dot_product_attention(q, k, v)


def test_rejects_mismatched_number_of_keys():
    q, k, v = torch.randn(2, 4, 8), torch.randn(2, 6, 8), torch.randn(2, 5, 5)
    with pytest.raises(ValueError, match=r"number of keys.*v \(2, 5, 5\)"):
        attention.scaled_dot_product_attention(q, k, v)


def test_rejects_batch_dims_that_do_not_broadcast():
    q, k, v = torch.randn(2, 4, 8), torch.randn(3, 6, 8), torch.randn(3, 6, 5)
    with pytest.raises(ValueError, match="batch dimensions"):
        attention.scaled_dot_product_attention(q, k, v)


def test_rejects_one_dimensional_input():
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        attention.scaled_dot_product_attention(torch.randn(8), torch.randn(6, 8), torch.randn(6, 5))


def test_rejects_non_tensor_and_integer_input():
    q, k, v = _qkv()
    with pytest.raises(TypeError, match="q must be a torch.Tensor"):
        attention.scaled_dot_product_attention(q.tolist(), k, v)
    with pytest.raises(TypeError, match="floating-point"):
        attention.scaled_dot_product_attention(q, k.long(), v)


def test_rejects_non_bool_mask():
    q, k, v = _qkv(T=4, S=6)
    with pytest.raises(TypeError, match="torch.bool"):
        attention.scaled_dot_product_attention(q, k, v, mask=torch.ones(4, 6))
    with pytest.raises(TypeError, match="torch.Tensor or None"):
        attention.scaled_dot_product_attention(q, k, v, mask=[[True] * 6] * 4)


def test_rejects_mask_of_wrong_shape():
    q, k, v = _qkv(T=4, S=6)
    with pytest.raises(ValueError, match=r"mask of shape \(4, 5\).*\(2, 3, 4, 6\)"):
        attention.scaled_dot_product_attention(q, k, v, mask=torch.ones(4, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="does not broadcast"):
        bigger = torch.ones(7, 2, 3, 4, 6, dtype=torch.bool)  # would grow the output's batch
        attention.scaled_dot_product_attention(q, k, v, mask=bigger)


# --- edges ---------------------------------------------------------------------------------


def test_float16_scales_before_the_product_like_torch():
    """q kᵀ of 40s with d_k = 64 is 102,400 > 65,504: only q kᵀ / √d_k fits in float16."""
    q = torch.full((1, 2, 5, 64), 40.0, dtype=torch.float16)
    k = torch.full((1, 2, 7, 64), 40.0, dtype=torch.float16)
    v = torch.randn(1, 2, 7, 16).half()
    out, w = attention.scaled_dot_product_attention(q, k, v)
    assert torch.isfinite(out).all() and out.dtype == torch.float16
    assert_close(out, F.scaled_dot_product_attention(q, k, v), atol=2e-3, rtol=2e-3)
    assert_close(w.float(), torch.full((1, 2, 5, 7), 1 / 7), atol=1e-3, rtol=1e-3)


def test_scores_that_overflow_are_named_as_scores():
    q = torch.full((1, 3, 64), 300.0, dtype=torch.float16)
    with pytest.raises(ValueError, match=r"scores q kᵀ / √d_k.*\+inf.*float16"):
        attention.scaled_dot_product_attention(q, q, q)


def test_no_keys_gives_zeros():
    """S = 0: every query has no allowed key, so weights (..., T, 0) and a zero output."""
    q, k, v = torch.randn(2, 3, 4), torch.randn(2, 0, 4), torch.randn(2, 0, 5)
    out, w = attention.scaled_dot_product_attention(q, k, v)
    assert w.shape == (2, 3, 0) and out.shape == (2, 3, 5)
    assert torch.equal(out, torch.zeros(2, 3, 5))
    assert_close(out, F.scaled_dot_product_attention(q, k, v))
    mask = torch.ones(3, 0, dtype=torch.bool)
    assert torch.equal(attention.scaled_dot_product_attention(q, k, v, mask)[0], out)
    assert attention.softmax(torch.empty(2, 3, 0)).shape == (2, 3, 0)
    assert torch.equal(attention.softmax(torch.empty(4, 0), dim=0), torch.empty(4, 0))


def test_no_queries_gives_empty_output():
    q, k, v = torch.randn(2, 0, 4), torch.randn(2, 6, 4), torch.randn(2, 6, 5)
    out, w = attention.scaled_dot_product_attention(q, k, v)
    assert out.shape == (2, 0, 5) and w.shape == (2, 0, 6)


def test_rejects_mixed_dtypes_naming_them():
    q, k, v = _qkv()
    with pytest.raises(TypeError, match="q torch.float32, k torch.float64, v torch.float32"):
        attention.scaled_dot_product_attention(q, k.double(), v)
    with pytest.raises(TypeError, match="one dtype"):
        validation.check_attention_inputs(q, k, v.half())


def test_rejects_empty_d_k():
    q, k, v = _qkv(d_k=0)
    with pytest.raises(ValueError, match="d_k must be at least 1"):
        attention.scaled_dot_product_attention(q, k, v)


def test_non_finite_values_raise_instead_of_giving_nan():
    q, k, v = _qkv()
    v[0, 0, 2, 1] = float("nan")
    with pytest.raises(ValueError, match="v holds NaN or inf"):
        attention.scaled_dot_product_attention(q, k, v)
    q[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        attention.scaled_dot_product_attention(q, k, torch.randn_like(v))


def test_dropout_drops_weights_in_training_only_when_asked():
    q, k, v = _qkv(T=5, S=5)
    torch.manual_seed(0)
    out, w = attention.scaled_dot_product_attention(q, k, v, dropout=0.5)
    kept = w[w > 0]
    plain = attention.scaled_dot_product_attention(q, k, v)[1]
    assert (w == 0).any() and torch.allclose(kept, (plain * 2)[w > 0])  # kept weights / (1 - p)
    torch.testing.assert_close(out, w @ v)
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\)"):
        attention.scaled_dot_product_attention(q, k, v, dropout=1.0)


def test_causal_mask_with_an_offset_reads_every_cached_key():
    m = attention.causal_mask(2, offset=3)  # two new queries after three cached positions
    assert m.shape == (2, 5)
    assert m.tolist() == [[True] * 4 + [False], [True] * 5]
    assert torch.equal(attention.causal_mask(4, 4), attention.causal_mask(4))
    assert attention.causal_mask(3, S=6, offset=1).shape == (3, 6)
    with pytest.raises(ValueError, match="offset must be a non-negative int"):
        attention.causal_mask(2, offset=-1)


def test_causal_mask_takes_integer_like_lengths():
    assert torch.equal(attention.causal_mask(np.int64(3)), attention.causal_mask(3))
    with pytest.raises(ValueError, match="got True of type bool"):
        attention.causal_mask(True)
