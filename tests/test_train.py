"""Tests for attention_book.train: fit, History, and the pieces of sequence-to-sequence training."""

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from seq2seq_stand_ins import (
    BOS,
    EOS,
    PAD,
    RecordingMarkov,
    padded_anywhere,
    random_src,
    small_transformer,
)
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


# --- sequence-to-sequence training (moved here from decoding) ------------------------------


def test_teacher_forcing_shifts_by_one():
    tgt = torch.tensor([[BOS, 5, 6, EOS, PAD]])
    decoder_input, labels = train.teacher_forcing(tgt)
    assert decoder_input.tolist() == [[BOS, 5, 6, EOS]]
    assert labels.tolist() == [[5, 6, EOS, PAD]]
    with pytest.raises(ValueError, match="at least <bos>"):
        train.teacher_forcing(torch.tensor([[BOS]]))
    with pytest.raises(TypeError, match="LongTensor"):
        train.teacher_forcing(torch.zeros(2, 3))


def test_smoothed_targets():
    labels = torch.tensor([[3, 0]])
    q = train.smoothed_targets(labels, num_classes=5, smoothing=0.1)  # (1, 2, 5)
    assert q.shape == (1, 2, 5)
    torch.testing.assert_close(q.sum(-1), torch.ones(1, 2))
    assert math.isclose(q[0, 0, 3].item(), 0.9 + 0.1 / 5, rel_tol=1e-6)
    assert math.isclose(q[0, 0, 1].item(), 0.1 / 5, rel_tol=1e-6)
    torch.testing.assert_close(train.smoothed_targets(labels, 5), F.one_hot(labels, 5).float())
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        train.smoothed_targets(labels, 5, smoothing=1.0)
    with pytest.raises(ValueError, match="must lie in"):
        train.smoothed_targets(labels, 3)


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
def test_sequence_loss_is_cross_entropy_against_the_smoothed_targets(smoothing):
    torch.manual_seed(0)
    logits = torch.randn(3, 4, 6)
    labels = torch.tensor([[4, 5, EOS, PAD], [3, EOS, PAD, PAD], [5, 5, 4, EOS]])
    loss = train.sequence_loss(logits, labels, pad_id=PAD, label_smoothing=smoothing)
    q = train.smoothed_targets(labels, 6, smoothing)  # (3, 4, 6)
    per_token = -(q * F.log_softmax(logits, -1)).sum(-1)  # (3, 4)
    keep = labels != PAD
    torch.testing.assert_close(loss, per_token[keep].mean())


def test_the_smoothed_loss_cannot_reach_zero():
    labels = torch.tensor([[3, 4]])
    q = train.smoothed_targets(labels, 5, 0.1)
    entropy = -(q * q.log()).sum(-1).mean()
    best = train.sequence_loss(q.log(), labels, label_smoothing=0.1)  # predict q itself
    torch.testing.assert_close(best, entropy)
    confident = train.sequence_loss(20.0 * F.one_hot(labels, 5).float(), labels, 0, 0.1)
    assert confident > best > 0.3


def test_sequence_loss_shape_errors():
    with pytest.raises(ValueError, match="need the same"):
        train.sequence_loss(torch.randn(2, 3, 5), torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(B, T, V\)"):
        train.sequence_loss(torch.randn(2, 5), torch.zeros(2, 3, dtype=torch.long))


def test_seq2seq_loss_matches_a_hand_written_forward():
    model = small_transformer()
    src = random_src()
    tgt = torch.tensor([[BOS, 4, 5, EOS]] * src.shape[0])
    logits = model(src, tgt[:, :-1])  # (B, 3, V)
    expected = F.cross_entropy(logits.reshape(-1, 7), tgt[:, 1:].reshape(-1))
    torch.testing.assert_close(train.seq2seq_loss(model, src, tgt), expected)


def test_batch_loss_fn_is_reproducible_and_checks_arguments():
    model = small_transformer()
    src = random_src(batch=20, seed=1)
    tgt = torch.tensor([[BOS, 4, 5, EOS]] * 20)
    a = train.batch_loss_fn(src, tgt, 8, seed=3)
    b = train.batch_loss_fn(src, tgt, 8, seed=3)
    assert [a(model, i).item() for i in range(3)] == [b(model, i).item() for i in range(3)]
    with pytest.raises(ValueError, match="exceeds"):
        train.batch_loss_fn(src, tgt, 21)
    with pytest.raises(ValueError, match="same number of rows"):
        train.batch_loss_fn(src, tgt[:5], 4)


def test_warmup_cosine_schedule():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = train.warmup_cosine_schedule(opt, warmup_steps=4, total_steps=12, final_ratio=0.1)
    lrs = []
    for _ in range(12):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        schedule.step()
    assert lrs[:5] == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0])
    assert all(x >= y for x, y in itertools.pairwise(lrs[4:]))
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="must exceed"):
        train.warmup_cosine_schedule(opt, warmup_steps=5, total_steps=5)


def test_batch_loss_fn_keeps_every_token_however_the_source_is_padded():
    model = RecordingMarkov()
    src = padded_anywhere()
    tgt = torch.tensor([[BOS, 4, EOS]] * 3)
    loss_fn = train.batch_loss_fn(src, tgt, 3, seed=0)
    loss = loss_fn(model, 0)
    (seen,) = model.sources
    assert sorted(seen.tolist()) == sorted(src[:, :5].tolist())
    # Order-blind stand-in: the three rows hold the same tokens, so the loss is that of one.
    torch.testing.assert_close(loss, train.seq2seq_loss(model, src[:1], tgt[:1]))


def test_sequence_loss_refuses_a_batch_of_padding_only():
    labels = torch.full((2, 3), PAD)
    with pytest.raises(ValueError, match="no token to score"):
        train.sequence_loss(torch.randn(2, 3, 5), labels)
    with pytest.raises(ValueError, match="pad_id=4"):
        train.sequence_loss(torch.randn(2, 3, 5), torch.full((2, 3), 4), pad_id=4)
    with pytest.raises(ValueError, match="no token to score"):
        train.seq2seq_loss(
            RecordingMarkov(), random_src(2, vocab=6), torch.tensor([[BOS, PAD]] * 2)
        )
    # One real label is enough, and its loss is finite.
    labels[1, 2] = 3
    assert torch.isfinite(train.sequence_loss(torch.randn(2, 3, 5), labels))


def test_trim_padding_drops_only_columns_of_padding_in_every_row():
    src = torch.tensor([[3, PAD, 4, PAD, PAD], [PAD, 5, PAD, PAD, PAD]])
    assert train.trim_padding(src, PAD).tolist() == [[3, PAD, 4], [PAD, 5, PAD]]
    assert train.trim_padding(torch.full((2, 4), PAD), PAD).shape == (2, 1)
