"""Tests for attention_book.diagnostics: attention entropy and the softmax Jacobian."""

import math

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from attention_book import attention, diagnostics


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# --- attention_entropy ---------------------------------------------------------------------


def test_entropy_of_uniform_is_log_n_and_of_one_hot_is_zero():
    uniform = torch.full((3, 8), 1 / 8)
    one_hot = torch.eye(5)
    assert_close(diagnostics.attention_entropy(uniform), torch.full((3,), math.log(8)))
    assert_close(diagnostics.attention_entropy(one_hot), torch.zeros(5))


def test_entropy_matches_the_formula_and_torch_distributions():
    w = attention.softmax(torch.randn(4, 6, 7, dtype=torch.float64))
    expected = -(w * w.log()).sum(-1)
    assert_close(diagnostics.attention_entropy(w), expected)
    assert_close(
        diagnostics.attention_entropy(w), torch.distributions.Categorical(probs=w).entropy()
    )


def test_entropy_along_another_dim():
    w = attention.softmax(torch.randn(5, 3), dim=0)
    assert diagnostics.attention_entropy(w, dim=0).shape == (3,)
    assert_close(diagnostics.attention_entropy(w, dim=0), diagnostics.attention_entropy(w.T))


def test_entropy_ignores_masked_keys_and_fully_masked_rows():
    scores = torch.tensor([[1.0, 2.0, float("-inf")], [float("-inf")] * 3])
    w = attention.softmax(scores)
    h = diagnostics.attention_entropy(w)
    assert torch.isfinite(h).all()
    assert_close(h[0], diagnostics.attention_entropy(attention.softmax(scores[0, :2])))
    assert h[1].item() == 0.0


def test_entropy_gradient_is_finite_with_zero_weights():
    w = torch.tensor([0.5, 0.5, 0.0], dtype=torch.float64, requires_grad=True)
    diagnostics.attention_entropy(w).backward()
    assert torch.isfinite(w.grad).all()


def test_entropy_gradcheck_through_softmax():
    x = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda t: diagnostics.attention_entropy(attention.softmax(t)), (x,)
    )


def test_entropy_rejects_bad_input():
    with pytest.raises(TypeError, match="torch.Tensor"):
        diagnostics.attention_entropy([0.5, 0.5])
    with pytest.raises(TypeError, match="floating-point"):
        diagnostics.attention_entropy(torch.tensor([1, 0]))
    with pytest.raises(ValueError, match="scalar"):
        diagnostics.attention_entropy(torch.tensor(1.0))
    with pytest.raises(ValueError, match="out of range"):
        diagnostics.attention_entropy(torch.full((2, 2), 0.5), dim=2)
    with pytest.raises(ValueError, match="non-negative"):
        diagnostics.attention_entropy(torch.tensor([1.5, -0.5]))
    with pytest.raises(ValueError, match=r"sum to 1.*shape \(2, 3\)"):
        diagnostics.attention_entropy(torch.randn(2, 3).abs() + 1)


# --- softmax_jacobian ----------------------------------------------------------------------


def test_jacobian_matches_autograd():
    x = torch.randn(6, dtype=torch.float64)
    expected = torch.autograd.functional.jacobian(attention.softmax, x)
    assert_close(diagnostics.softmax_jacobian(attention.softmax(x)), expected)


def test_jacobian_is_batched_symmetric_and_rows_and_columns_sum_to_zero():
    s = attention.softmax(torch.randn(2, 3, 5, dtype=torch.float64))
    jac = diagnostics.softmax_jacobian(s)
    assert jac.shape == (2, 3, 5, 5)
    assert_close(jac, jac.transpose(-2, -1))
    assert_close(jac.sum(-1), torch.zeros(2, 3, 5, dtype=torch.float64))
    assert_close(jac.sum(-2), torch.zeros(2, 3, 5, dtype=torch.float64))
    for idx in [(0, 0), (1, 2)]:
        x_row = torch.log(s[idx])
        expected = torch.autograd.functional.jacobian(attention.softmax, x_row)
        assert_close(jac[idx], expected)


def test_jacobian_vanishes_for_one_hot_and_zero_rows():
    assert_close(diagnostics.softmax_jacobian(torch.eye(4)), torch.zeros(4, 4, 4))
    assert_close(diagnostics.softmax_jacobian(torch.zeros(3)), torch.zeros(3, 3))


def test_jacobian_keeps_the_diagonal_of_a_saturated_row():
    # In float64 s_0 rounds to exactly 1, so the textbook diagonal s_0 (1 - s_0) is 0.
    s = attention.softmax(torch.tensor([0.0, -40.0, -50.0], dtype=torch.float64))
    assert s[0].item() == 1.0 and s[1].item() > 0
    naive = torch.diag(s) - torch.outer(s, s)
    assert naive[0, 0].item() == 0.0 and naive.sum(dim=1)[0].item() < 0  # row 0 no longer sums to 0
    jac = diagnostics.softmax_jacobian(s)
    exact = math.exp(-40) + math.exp(-50)  # s_0 (1 - s_0) to a relative error of about e^-40
    assert math.isclose(jac[0, 0].item(), exact, rel_tol=1e-12)
    assert_close(jac.sum(dim=1), torch.zeros(3, dtype=torch.float64), atol=1e-30, rtol=0)
    assert math.isclose(jac.norm().item(), 2 * math.exp(-40), rel_tol=1e-4)  # e^-10 corrections


def test_jacobian_rejects_bad_input():
    with pytest.raises(TypeError, match="torch.Tensor"):
        diagnostics.softmax_jacobian([0.5, 0.5])
    with pytest.raises(ValueError, match="non-negative"):
        diagnostics.softmax_jacobian(torch.tensor([2.0, -1.0]))
    with pytest.raises(ValueError, match="sum to 1"):
        diagnostics.softmax_jacobian(torch.tensor([3.0, 1.0]))


def test_entropy_takes_an_integer_like_dim_and_refuses_others():
    w = torch.tensor([[0.5, 1.0], [0.5, 0.0]])
    assert torch.equal(
        diagnostics.attention_entropy(w, dim=np.int64(0)), diagnostics.attention_entropy(w, 0)
    )
    for bad in (0.5, True, "0"):
        with pytest.raises(ValueError, match="dim must be an int, got .* of type"):
            diagnostics.attention_entropy(w, dim=bad)
