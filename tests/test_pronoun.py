"""Tests for attention_book.pronoun: the tiny attention model of chapter 6."""

import pytest
import torch

from attention_book import attention, data, pronoun, train


def _model(num_layers: int = 2, seed: int = 0) -> pronoun.PronounAttender:
    torch.manual_seed(seed)
    return pronoun.PronounAttender(
        len(data.PRONOUN_VOCAB), data.SENTENCE_LENGTH, d_model=16, num_layers=num_layers
    )


def _examples(n: int = 8, seed: int = 0) -> data.PronounExamples:
    return data.pronoun_dataset(n, torch.Generator().manual_seed(seed), split="train")


def test_layer_is_residual_attention_by_hand():
    torch.manual_seed(0)
    layer = pronoun.SelfAttentionLayer(8)
    x = torch.randn(3, 5, 8)  # (B, T, D)
    out, w = layer(x)
    q, k, v = x @ layer.w_q.weight.T, x @ layer.w_k.weight.T, x @ layer.w_v.weight.T
    w_ref = torch.softmax(q @ k.transpose(-2, -1) / 8**0.5, dim=-1)  # (B, T, T)
    torch.testing.assert_close(w, w_ref)
    torch.testing.assert_close(out, x + w_ref @ v)
    torch.testing.assert_close(w.sum(-1), torch.ones(3, 5))


def test_layer_mask_gives_masked_keys_zero_weight():
    torch.manual_seed(0)
    layer = pronoun.SelfAttentionLayer(4)
    mask = torch.arange(5) != 2  # (S,): key 2 hidden from every query
    _, w = layer(torch.randn(2, 5, 4), mask)
    assert (w[..., 2] == 0).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 5))


def test_attender_shapes_and_states_agree_with_forward():
    model, ex = _model(), _examples()
    weights = model(ex.tokens)
    assert len(weights) == 2 and all(w.shape == (8, 10, 10) for w in weights)
    x, weights2 = model.states(ex.tokens)
    assert x.shape == (8, 10, 16)
    for a, b in zip(weights, weights2, strict=True):
        torch.testing.assert_close(a, b)


def test_attender_is_embeddings_then_layers():
    model, ex = _model(num_layers=1), _examples()
    x0 = model.embed(ex.tokens) + model.position.weight  # (N, T, D)
    x1, w1 = model.layers[0](x0)
    x, (w,) = model.states(ex.tokens)
    torch.testing.assert_close(x, x1)
    torch.testing.assert_close(w, w1)


def test_attender_causality_with_a_causal_mask():
    model, ex = _model(), _examples()
    causal = attention.causal_mask(data.SENTENCE_LENGTH)
    changed = ex.tokens.clone()
    changed[:, -1] = (changed[:, -1] + 1) % len(data.PRONOUN_VOCAB)  # change the last token
    x, _ = model.states(ex.tokens, [causal, causal])
    x2, _ = model.states(changed, [causal, causal])
    torch.testing.assert_close(x[:, :-1], x2[:, :-1])
    assert not torch.allclose(x[:, -1], x2[:, -1])


def test_gradcheck_float64():
    torch.manual_seed(0)
    layer = pronoun.SelfAttentionLayer(4).double()
    x = torch.randn(1, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: layer(x)[0], (x,))


def test_two_layers_overfit_a_few_examples():
    model, ex = _model(), _examples(16)

    def loss_fn(m: torch.nn.Module, step: int) -> torch.Tensor:
        row = m(ex.tokens)[-1][torch.arange(len(ex)), ex.it_position]  # (N, S)
        return -row.gather(1, ex.referent_position[:, None]).log().mean()

    history = train.fit(model, loss_fn, 100, lr=1e-2, progress=False)
    assert history.final_loss < 0.1


def test_bad_input_raises_clear_errors():
    model = _model()
    with pytest.raises(TypeError, match="LongTensor"):
        model(torch.zeros(2, 10))
    with pytest.raises(ValueError, match="max_len"):
        model(torch.zeros(2, 11, dtype=torch.long))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model(torch.full((2, 10), 1000))
    with pytest.raises(ValueError, match="1 entries for 2 layers"):
        model(_examples().tokens, [None])
    with pytest.raises(ValueError, match="d_model"):
        pronoun.SelfAttentionLayer(0)
