"""Tests for attention_book.train.fit and History."""

import numpy as np
import pytest
import torch
from torch import nn

from attention_book import train


def test_fit_overfits_a_tiny_regression():
    torch.manual_seed(0)
    x = torch.randn(16, 3)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]])
    model = nn.Linear(3, 1)

    def loss_fn(m, step):
        return nn.functional.mse_loss(m(x), y)

    history = train.fit(model, loss_fn, steps=300, lr=0.05, progress=False)
    assert len(history.losses) == 300
    assert history.losses[0] > 0.5
    assert history.final_loss < 1e-3
    assert not model.training


def test_fit_rejects_bad_steps_and_non_scalar_loss():
    model = nn.Linear(2, 1)
    with pytest.raises(ValueError, match="positive int"):
        train.fit(model, lambda m, s: m(torch.ones(1, 2)).sum(), steps=0)
    with pytest.raises(ValueError, match="scalar"):
        train.fit(model, lambda m, s: m(torch.ones(3, 2)), steps=1, progress=False)


def test_fit_stops_on_nan_loss():
    model = nn.Linear(2, 1)
    with pytest.raises(FloatingPointError, match="nan"):
        train.fit(
            model, lambda m, s: m(torch.ones(1, 2)).sum() * float("nan"), steps=1, progress=False
        )


def test_history_final_loss():
    assert train.History(losses=[4.0] * 9 + [1.0] * 1).final_loss == 1.0
    with pytest.raises(ValueError, match="no training step"):
        _ = train.History().final_loss


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"clip_grad_norm": -1.0}, ValueError, "clip_grad_norm must be a positive finite"),
        ({"clip_grad_norm": 0.0}, ValueError, "None turns clipping off"),
        ({"clip_grad_norm": float("nan")}, ValueError, "clip_grad_norm must be a number, got NaN"),
        ({"clip_grad_norm": True}, TypeError, "of type bool"),
        ({"clip_grad_norm": "1"}, TypeError, "of type str"),
        ({"lr": -0.1}, ValueError, "lr must be a positive finite"),
        ({"lr": 0.0}, ValueError, "lr must be"),
    ],
)
def test_fit_rejects_a_clip_or_rate_that_would_not_learn(kwargs, error, message):
    """-1 would ascend the gradient and 0 would freeze the model: refuse both before training."""
    model = nn.Linear(2, 1)
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(error, match=message):
        train.fit(model, lambda m, s: m(torch.ones(1, 2)).sum(), steps=3, progress=False, **kwargs)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_fit_takes_integer_like_steps_and_no_clipping():
    model = nn.Linear(2, 1)
    history = train.fit(
        model,
        lambda m, s: m(torch.ones(1, 2)).pow(2).sum(),
        np.int64(3),
        clip_grad_norm=None,
        progress=False,
    )
    assert len(history.losses) == 3
