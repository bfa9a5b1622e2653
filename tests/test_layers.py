"""Tests for attention_book.layers: the feed-forward networks and RMSNorm."""

import pytest
import torch
from torch.testing import assert_close

from attention_book import layers


def test_feedforward_is_w2_act_w1_at_every_position():
    torch.manual_seed(0)
    ff = layers.FeedForward(6, 10, activation="gelu")
    x = torch.randn(2, 3, 6)
    expected = torch.nn.functional.gelu(x @ ff.w_1.weight.T + ff.w_1.bias) @ ff.w_2.weight.T
    assert_close(ff(x), expected + ff.w_2.bias)
    assert_close(ff(x[:, 1:2]), ff(x)[:, 1:2])  # position-wise
    with pytest.raises(ValueError, match="activation must be one of"):
        layers.FeedForward(6, 10, activation="swish")


def test_swiglu_matches_its_formula_and_refuses_an_empty_hidden_layer():
    torch.manual_seed(0)
    ffn = layers.SwiGLU(6, 10)
    x = torch.randn(2, 3, 6)
    g, u = x @ ffn.w_gate.weight.T, x @ ffn.w_up.weight.T
    assert_close(ffn(x), (g * torch.sigmoid(g) * u) @ ffn.w_down.weight.T)
    with pytest.raises(ValueError, match="d_ff must be a positive int, got 0"):
        layers.SwiGLU(8, 0)  # it would return zeros


def test_rmsnorm_matches_its_formula():
    torch.manual_seed(0)
    norm = layers.RMSNorm(8, eps=1e-5).double()
    with torch.no_grad():
        norm.weight.normal_()
    x = torch.randn(3, 4, 8, dtype=torch.float64)
    expected = x / torch.sqrt((x**2).mean(dim=-1, keepdim=True) + 1e-5) * norm.weight
    assert_close(norm(x), expected)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_rmsnorm_in_half_precision_does_not_overflow_to_zeros(dtype):
    norm = layers.RMSNorm(8).to(dtype)
    x = torch.full((2, 8), 300.0, dtype=dtype)  # 300 ** 2 overflows float16
    out = norm(x)
    assert out.dtype == dtype
    assert_close(out.float(), torch.ones(2, 8), atol=1e-2, rtol=0)


@pytest.mark.parametrize("eps", [-1, 0, float("inf"), float("nan"), "1e-5"])
def test_rmsnorm_refuses_an_eps_that_is_not_a_small_positive_number(eps):
    with pytest.raises((ValueError, TypeError), match="eps"):
        layers.RMSNorm(8, eps=eps)


def test_norm_layer_and_feed_forward_pick_the_parts_by_name():
    assert isinstance(layers.norm_layer("rms", 4, 1e-6), layers.RMSNorm)
    assert layers.norm_layer("layer", 4, 1e-12).eps == 1e-12
    assert isinstance(layers.feed_forward(4, 8, 0.0, "swiglu"), layers.SwiGLU)
    assert isinstance(layers.feed_forward(4, 8, 0.1, "relu"), layers.FeedForward)
    with pytest.raises(ValueError, match="norm must be one of"):
        layers.norm_layer("batch", 4, 1e-5)


def test_xavier_init_redraws_matrices_only():
    torch.manual_seed(0)
    ff = layers.FeedForward(64, 256)
    bias = ff.w_1.bias.clone()
    torch.manual_seed(1)
    layers.xavier_init(ff)
    bound = (6 / (64 + 256)) ** 0.5
    assert ff.w_1.weight.abs().max() <= bound and ff.w_1.weight.abs().max() > 0.9 * bound
    assert torch.equal(ff.w_1.bias, bias)
