"""Tests for attention_book.transformer: the layers match torch.nn, causality, padding, training."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

from attention_book import attention, interop, transformer
from attention_book.transformer import (
    DecoderLayer,
    EncoderLayer,
    FeedForward,
    Stack,
    Transformer,
    TransformerConfig,
)

D, H, D_FF = 16, 4, 32


def _padding(lengths: list[int], S: int) -> torch.Tensor:
    """(B, S) bool, True at real tokens."""
    return torch.arange(S)[None, :] < torch.tensor(lengths)[:, None]


def _each_position_changed(after: torch.Tensor, before: torch.Tensor) -> torch.Tensor:
    """(T,) bool for a batch of one: True where the output vector at that position moved."""
    return (after - before).abs().amax(-1)[0] > 1e-6  # (1, T, D) -> (T,)


def _tiny_config(**changes) -> TransformerConfig:
    base = dict(
        src_vocab_size=11,
        tgt_vocab_size=13,
        d_model=16,
        num_heads=2,
        num_encoder_layers=2,
        num_decoder_layers=2,
        d_ff=32,
        max_len=12,
    )
    base.update(changes)
    return TransformerConfig(**base)


# --- FeedForward ---------------------------------------------------------------------------


@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_feedforward_is_position_wise(activation):
    torch.manual_seed(0)
    ff = FeedForward(D, D_FF, activation=activation)
    x = torch.randn(2, 7, D)
    perm = torch.randperm(7)
    assert ff(x).shape == (2, 7, D)
    assert_close(ff(x[:, perm]), ff(x)[:, perm])
    # Each position alone gives the same answer as inside the sequence.
    assert_close(ff(x[:, 3:4]), ff(x)[:, 3:4])
    act = F.relu if activation == "relu" else F.gelu
    assert_close(ff(x), ff.w_2(act(ff.w_1(x))))


def test_feedforward_rejects_bad_arguments():
    with pytest.raises(ValueError, match="activation"):
        FeedForward(D, D_FF, activation="tanh")
    with pytest.raises(ValueError, match="d_ff"):
        FeedForward(D, 0)
    with pytest.raises(ValueError, match="dropout"):
        FeedForward(D, D_FF, dropout=1.5)


# --- EncoderLayer ---------------------------------------------------------------------------


@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("padded", [False, True])
def test_encoder_layer_matches_torch(activation, norm_first, padded):
    torch.manual_seed(0)
    ref = nn.TransformerEncoderLayer(
        D, H, D_FF, dropout=0.1, activation=activation, batch_first=True, norm_first=norm_first
    ).eval()
    ours = interop.from_torch(ref).eval()
    assert ours.norm_first is norm_first and ours.ff.activation == activation
    assert ours.self_attn.dropout == 0.1 and ours.norm1.eps == ref.norm1.eps
    x = torch.randn(3, 6, D)
    keep = _padding([6, 4, 2], 6) if padded else torch.ones(3, 6, dtype=torch.bool)
    expected = ref(x, src_key_padding_mask=~keep if padded else None)  # torch: True = ignore
    got, _ = ours(x, keep[:, None, None, :] if padded else None)  # ours: True = attend
    assert_close(got, expected)


def test_encoder_layer_matches_torch_fast_path_at_real_tokens():
    # In eval mode under no_grad, torch takes its fused fast path, which may leave padded rows
    # zero; real tokens must agree.
    torch.manual_seed(0)
    ref = nn.TransformerEncoderLayer(D, H, D_FF, dropout=0.0, batch_first=True).eval()
    ours = interop.from_torch(ref).eval()
    x = torch.randn(2, 5, D)
    keep = _padding([5, 3], 5)
    with torch.no_grad():
        expected = ref(x, src_key_padding_mask=~keep)
        got, _ = ours(x, keep[:, None, None, :])
    assert_close(got[keep], expected[keep])


def test_encoder_layer_from_sequence_first_torch_layer():
    torch.manual_seed(0)
    ref = nn.TransformerEncoderLayer(D, H, D_FF, dropout=0.0, batch_first=False).eval()
    ours = interop.from_torch(ref)
    x = torch.randn(2, 5, D)
    assert_close(ours(x)[0], ref(x.transpose(0, 1)).transpose(0, 1))


def test_encoder_layer_from_torch_rejects_unsupported_layers():
    with pytest.raises(TypeError, match="TransformerEncoderLayer or TransformerDecoderLayer"):
        interop.from_torch(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="bias"):
        interop.from_torch(nn.TransformerEncoderLayer(D, H, D_FF, bias=False))
    with pytest.raises(ValueError, match="activation"):
        interop.from_torch(nn.TransformerEncoderLayer(D, H, D_FF, activation=torch.tanh))
    with pytest.raises(ValueError, match="activation"):
        interop.from_torch(
            nn.TransformerEncoderLayer(D, H, D_FF, activation=nn.GELU(approximate="tanh"))
        )


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_layer_residual_form(norm_first):
    torch.manual_seed(0)
    layer = EncoderLayer(D, H, D_FF, norm_first=norm_first).eval()
    x = torch.randn(2, 5, D)
    if norm_first:
        h = layer.norm1(x)
        y = x + layer.self_attn(h, h, h)[0]
        expected = y + layer.ff(layer.norm2(y))
    else:
        y = layer.norm1(x + layer.self_attn(x, x, x)[0])
        expected = layer.norm2(y + layer.ff(y))
    assert_close(layer(x)[0], expected)


def test_encoder_layer_recorded_weights_equal_fused_path():
    torch.manual_seed(0)
    layer = EncoderLayer(D, H, D_FF).eval()
    x = torch.randn(2, 5, D)
    mask = _padding([5, 3], 5)[:, None, None, :]
    fused, none = layer(x, mask)
    out, w = layer(x, mask, need_weights=True)
    assert_close(out, fused) and none is None
    assert w.shape == (2, H, 5, 5)
    assert_close(w.sum(-1), torch.ones(2, H, 5))
    assert w[1, :, :, 3:].abs().max() == 0  # padded keys get zero weight


def test_encoder_layer_gradcheck_float64(one_thread):
    torch.manual_seed(0)
    layer = EncoderLayer(4, 2, 8, activation="gelu").double()
    x = torch.randn(1, 3, 4, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([True, True, False])[None, None, None, :]
    assert torch.autograd.gradcheck(lambda t: layer(t, mask)[0], (x,))
    assert torch.autograd.gradcheck(lambda t: layer(t, mask, need_weights=True)[0], (x,))


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_stack_matches_torch(norm_first):
    torch.manual_seed(0)
    proto = nn.TransformerEncoderLayer(
        D, H, D_FF, dropout=0.0, batch_first=True, norm_first=norm_first
    )
    final = nn.LayerNorm(D) if norm_first else None
    ref = nn.TransformerEncoder(proto, 3, norm=final, enable_nested_tensor=False).eval()
    ours = Stack(3, D, H, D_FF, norm_first=norm_first).eval()
    ours.layers = nn.ModuleList(interop.from_torch(layer) for layer in ref.layers)
    assert (ours.norm is None) is (not norm_first)
    if norm_first:
        ours.norm.load_state_dict(ref.norm.state_dict())
    x = torch.randn(2, 6, D)
    keep = _padding([6, 4], 6)
    assert_close(ours(x, keep[:, None, None, :]), ref(x, src_key_padding_mask=~keep))


# --- DecoderLayer ---------------------------------------------------------------------------


@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_layer_matches_torch(activation, norm_first):
    torch.manual_seed(0)
    ref = nn.TransformerDecoderLayer(
        D, H, D_FF, dropout=0.1, activation=activation, batch_first=True, norm_first=norm_first
    ).eval()
    ours = interop.from_torch(ref).eval()
    assert ours.cross_attn.dropout == 0.1 and ours.norm3.eps == ref.norm3.eps
    x, memory = torch.randn(3, 5, D), torch.randn(3, 7, D)
    causal = attention.causal_mask(5)
    tgt_keep = _padding([5, 5, 3], 5)
    src_keep = _padding([7, 4, 2], 7)
    expected = ref(
        x,
        memory,
        tgt_mask=~causal,
        tgt_key_padding_mask=~tgt_keep,
        memory_key_padding_mask=~src_keep,
    )
    tgt_mask = causal & tgt_keep[:, None, None, :]  # (B, 1, T, T)
    got, _, _ = ours(x, memory, tgt_mask, src_keep[:, None, None, :])
    assert_close(got, expected)


def test_decoder_layer_from_torch_rejects_unsupported_layers():
    assert isinstance(interop.from_torch(nn.TransformerEncoderLayer(D, H, D_FF)), EncoderLayer)
    with pytest.raises(ValueError, match="bias"):
        interop.from_torch(nn.TransformerDecoderLayer(D, H, D_FF, bias=False))
    with pytest.raises(ValueError, match="activation"):
        interop.from_torch(nn.TransformerDecoderLayer(D, H, D_FF, activation=torch.tanh))
    with pytest.raises(ValueError, match="activation"):
        interop.from_torch(
            nn.TransformerDecoderLayer(D, H, D_FF, activation=nn.GELU(approximate="tanh"))
        )


@pytest.mark.parametrize("training", [False, True])
def test_from_torch_keeps_the_training_mode(training):
    enc = nn.TransformerEncoderLayer(D, H, D_FF, dropout=0.1, batch_first=True).train(training)
    dec = nn.TransformerDecoderLayer(D, H, D_FF, dropout=0.1, batch_first=True).train(training)
    for ours in (interop.from_torch(enc), interop.from_torch(dec)):
        assert ours.training is training
        assert all(m.training is training for m in ours.modules())


def test_decoder_layer_gradcheck_float64(one_thread):
    torch.manual_seed(0)
    layer = DecoderLayer(4, 2, 8, activation="gelu").double()
    x = torch.randn(1, 3, 4, dtype=torch.float64, requires_grad=True)
    memory = torch.randn(1, 2, 4, dtype=torch.float64, requires_grad=True)
    causal = attention.causal_mask(3)
    src_mask = torch.tensor([True, False])[None, None, None, :]  # (1, 1, 1, S)
    assert torch.autograd.gradcheck(lambda t, m: layer(t, m, causal, src_mask)[0], (x, memory))
    layer.norm_first = True
    explicit = lambda t, m: layer(t, m, causal, src_mask, need_weights=True)[0]  # noqa: E731
    assert torch.autograd.gradcheck(explicit, (x, memory))


def test_decoder_layer_gives_padded_target_keys_zero_weight():
    torch.manual_seed(0)
    layer = DecoderLayer(D, H, D_FF).eval()
    x, memory = torch.randn(2, 5, D), torch.randn(2, 4, D)
    tgt_keep = _padding([5, 3], 5)  # the second target has two padded positions
    tgt_mask = attention.causal_mask(5) & tgt_keep[:, None, None, :]  # (B, 1, T, T)
    out, w, _ = layer(x, memory, tgt_mask, need_weights=True)  # w: (B, H, T, T)
    assert w[1, :, :, 3:].abs().max() == 0  # no query reads a padded target key
    assert_close(w.sum(-1), torch.ones(2, H, 5))
    # Whatever sits at the padded target positions, the real positions' outputs are the same.
    x_other = x.clone()
    x_other[1, 3:] = 100 * torch.randn(2, D)
    assert_close(layer(x_other, memory, tgt_mask)[0][tgt_keep], out[tgt_keep])


def test_recorded_weights_in_training_mode_are_after_dropout():
    torch.manual_seed(0)
    p = 0.5
    layer = EncoderLayer(D, H, D_FF, dropout=p).eval()
    x = torch.randn(2, 5, D)
    _, softmax_w = layer(x, need_weights=True)  # (B, H, T, T), rows sum to 1
    layer.train()
    # post-LN: self-attention sees x itself, so only dropout differs
    _, dropped = layer(x, need_weights=True)
    kept = dropped != 0
    assert 0 < kept.float().mean() < 1  # some weights dropped, some kept
    assert_close(dropped[kept], softmax_w[kept] / (1 - p))  # the kept ones are rescaled


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_stack_matches_torch(norm_first):
    torch.manual_seed(0)
    proto = nn.TransformerDecoderLayer(
        D, H, D_FF, dropout=0.0, batch_first=True, norm_first=norm_first
    )
    # Post-LN: compare with norm=None (ours adds no final norm); pre-LN: both end with one.
    final = nn.LayerNorm(D) if norm_first else None
    ref = nn.TransformerDecoder(proto, 3, norm=final).eval()
    ours = Stack(3, D, H, D_FF, norm_first=norm_first, cross_attention=True).eval()
    ours.layers = nn.ModuleList(interop.from_torch(layer) for layer in ref.layers)
    if norm_first:
        ours.norm.load_state_dict(ref.norm.state_dict())
    x, memory = torch.randn(2, 5, D), torch.randn(2, 6, D)
    causal = attention.causal_mask(5)
    tgt_keep, src_keep = _padding([5, 3], 5), _padding([6, 4], 6)
    expected = ref(
        x,
        memory,
        tgt_mask=~causal,
        tgt_key_padding_mask=~tgt_keep,
        memory_key_padding_mask=~src_keep,
    )
    got = ours(x, causal & tgt_keep[:, None, None, :], memory, src_keep[:, None, None, :])
    assert_close(got, expected)


def test_decoder_layer_recorded_weights_equal_fused_path():
    torch.manual_seed(0)
    layer = DecoderLayer(D, H, D_FF).eval()
    x, memory = torch.randn(2, 4, D), torch.randn(2, 6, D)
    src_mask = _padding([6, 2], 6)[:, None, None, :]
    fused, none, none_too = layer(x, memory, attention.causal_mask(4), src_mask)
    assert none is None and none_too is None
    out, self_w, cross_w = layer(x, memory, attention.causal_mask(4), src_mask, need_weights=True)
    assert_close(out, fused)
    assert self_w.shape == (2, H, 4, 4) and cross_w.shape == (2, H, 4, 6)
    assert torch.triu(self_w, diagonal=1).abs().max() == 0  # no weight on the future
    assert cross_w[1, :, :, 2:].abs().max() == 0  # no weight on source padding
    assert_close(cross_w.sum(-1), torch.ones(2, H, 4))


def test_decoder_layer_is_causal():
    torch.manual_seed(0)
    layer = DecoderLayer(D, H, D_FF).eval()
    x, memory = torch.randn(1, 6, D), torch.randn(1, 4, D)
    mask = attention.causal_mask(6)
    before = layer(x, memory, mask)[0]
    x2 = x.clone()
    x2[:, 4:] = torch.randn(1, 2, D)  # change the future (positions 4 and 5)
    after = layer(x2, memory, mask)[0]
    assert_close(after[:, :4], before[:, :4])
    assert _each_position_changed(after, before).tolist() == [False] * 4 + [True] * 2


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_stack_shapes_and_final_norm(norm_first):
    dec = Stack(2, D, H, D_FF, norm_first=norm_first, cross_attention=True)
    assert len(dec.layers) == 2 and (dec.norm is not None) is norm_first
    out = dec(torch.randn(2, 3, D), attention.causal_mask(3), torch.randn(2, 5, D))
    assert out.shape == (2, 3, D)


def test_layers_reject_bad_sizes():
    with pytest.raises(ValueError, match="divisible"):
        EncoderLayer(10, 3, 8)
    with pytest.raises(ValueError, match="divisible"):
        DecoderLayer(10, 4, 8)
    with pytest.raises(ValueError, match="activation"):
        EncoderLayer(8, 2, 8, activation="swish")
    with pytest.raises(ValueError, match="num_layers"):
        Stack(0, 8, 2, 8)
    with pytest.raises(ValueError, match="d_model"):
        EncoderLayer(8, 2, 8)(torch.randn(2, 3, 6))  # post-LN: the attention names the width


@pytest.mark.parametrize("cls", [EncoderLayer, DecoderLayer])
@pytest.mark.parametrize("bad", [1, 0, "no", None, torch.tensor(True)])
def test_layers_require_a_bool_norm_first(cls, bad):
    with pytest.raises(TypeError, match="norm_first must be a bool"):
        cls(8, 2, 8, norm_first=bad)


@pytest.mark.parametrize("cross_attention", [False, True])
def test_stacks_require_a_bool_norm_first(cross_attention):
    with pytest.raises(TypeError, match="norm_first must be a bool"):
        Stack(2, 8, 2, 8, norm_first=1, cross_attention=cross_attention)


# --- Transformer ---------------------------------------------------------------------------


def test_transformer_shapes_and_masks():
    torch.manual_seed(0)
    model = Transformer(_tiny_config()).eval()
    src = torch.tensor([[3, 4, 5, 0, 0], [6, 7, 8, 9, 10]])
    tgt = torch.tensor([[1, 2, 3], [1, 4, 0]])
    memory, src_mask = model.encode(src)
    assert memory.shape == (2, 5, 16) and src_mask.shape == (2, 1, 1, 5)
    assert src_mask.dtype == torch.bool and src_mask[0, 0, 0].tolist() == [1, 1, 1, 0, 0]
    assert model.decode(tgt, memory, src_mask).shape == (2, 3, 13)
    assert model(src, tgt).shape == (2, 3, 13)
    assert model.target_mask(tgt).shape == (2, 1, 3, 3)
    assert model.target_mask(tgt[:1]).shape == (1, 1, 3, 3)  # one shape, padding or not
    assert model.target_mask(tgt[:1])[0, 0].tolist() == attention.causal_mask(3).tolist()
    assert model.target_mask(tgt)[1, 0, 2].tolist() == [True, True, False]
    assert model.pe.shape == (12, 16)
    assert model.src_embed.padding_idx == 0 and model.tgt_embed.weight[0].abs().max() == 0


def test_transformer_ignores_source_padding():
    torch.manual_seed(0)
    model = Transformer(_tiny_config()).eval()
    src = torch.tensor([[3, 4, 5]])
    tgt = torch.tensor([[1, 2, 6, 7]])
    padded = torch.tensor([[3, 4, 5, 0, 0, 0]])
    assert_close(model(padded, tgt), model(src, tgt))


@pytest.mark.parametrize("norm_first", [False, True])
def test_transformer_decode_is_causal(norm_first):
    torch.manual_seed(0)
    model = Transformer(_tiny_config(norm_first=norm_first)).eval()
    src = torch.tensor([[3, 4, 5, 6]])
    memory, src_mask = model.encode(src)
    tgt = torch.tensor([[1, 2, 3, 4, 5]])
    changed = torch.tensor([[1, 2, 3, 9, 12]])  # the last two tokens differ
    before = model.decode(tgt, memory, src_mask)
    after = model.decode(changed, memory, src_mask)
    assert_close(after[:, :3], before[:, :3])
    assert _each_position_changed(after, before).tolist() == [False] * 3 + [True] * 2
    # Teacher forcing equals feeding the prefixes one at a time.
    for t in range(1, 6):
        assert_close(model.decode(tgt[:, :t], memory, src_mask)[:, -1], before[:, t - 1])


def test_cross_attention_weights():
    torch.manual_seed(0)
    model = Transformer(_tiny_config(num_decoder_layers=3)).eval()
    src = torch.tensor([[3, 4, 5, 0], [6, 7, 8, 9]])
    tgt = torch.tensor([[1, 2, 3], [1, 4, 5]])
    weights = model.cross_attention_weights(src, tgt)
    assert len(weights) == 3
    for w in weights:
        assert w.shape == (2, 2, 3, 4)
        assert_close(w.sum(-1), torch.ones(2, 2, 3))
        assert w[0, :, :, 3].abs().max() == 0
    # No hidden state: the weights are returned, not stored, and the logits stay the same.
    before = model(src, tgt)
    assert_close(model.cross_attention_weights(src, tgt)[2], weights[2])
    assert_close(model(src, tgt), before)
    assert not any(hasattr(layer, "cross_weights") for layer in model.decoder.layers)


@pytest.fixture
def one_thread():
    # A model this small gains nothing from threads, and on a busy machine they cost a lot.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_transformer_overfits_a_few_pairs(one_thread):
    torch.manual_seed(0)
    model = Transformer(_tiny_config(src_vocab_size=10, tgt_vocab_size=10))
    # Reverse a sequence: target = BOS(1) + reversed source + EOS(2).
    src = torch.tensor([[3, 4, 5, 6], [7, 8, 9, 0], [5, 3, 8, 0], [9, 9, 4, 6]])
    lengths = (src != 0).sum(1).tolist()
    tgt = torch.zeros(4, 6, dtype=torch.long)
    for i, n in enumerate(lengths):
        seq = [1, *src[i, :n].flip(0).tolist(), 2]
        tgt[i, : len(seq)] = torch.tensor(seq)
    tgt_in, tgt_out = tgt[:, :-1], tgt[:, 1:]
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(100):
        logits = model(src, tgt_in)
        loss = F.cross_entropy(logits.reshape(-1, 10), tgt_out.reshape(-1), ignore_index=0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.02
    model.eval()
    assert (model(src, tgt_in).argmax(-1)[tgt_out != 0] == tgt_out[tgt_out != 0]).all()


def test_count_parameters_matches_torch_transformer():
    model = Transformer(_tiny_config())
    ref = nn.Transformer(16, 2, 2, 2, 32, batch_first=True)
    # torch.nn.Transformer also puts a final LayerNorm after each post-LN stack: 2 x 2D more.
    body = transformer.count_parameters(model.encoder) + transformer.count_parameters(model.decoder)
    assert body == transformer.count_parameters(ref) - 4 * 16
    embeddings = (11 + 13) * 16
    generator = 16 * 13 + 13
    assert transformer.count_parameters(model) == body + embeddings + generator
    with pytest.raises(TypeError, match="nn.Module"):
        transformer.count_parameters("model")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"d_model": 10, "num_heads": 4}, "divisible"),
        ({"d_model": 9, "num_heads": 3}, "even"),
        ({"activation": "tanh"}, "activation"),
        ({"dropout": 1.0}, "dropout"),
        ({"num_encoder_layers": 0}, "num_encoder_layers"),
        ({"src_vocab_size": 0}, "src_vocab_size"),
        ({"max_len": 2.5}, "max_len"),
        ({"pad_id": 11}, "pad_id"),
        ({"pad_id": -1}, "pad_id"),
    ],
)
def test_config_rejects_bad_values(changes, message):
    with pytest.raises(ValueError, match=message):
        _tiny_config(**changes)


def test_config_and_layers_refuse_a_non_bool_norm_first_with_one_error():
    # One mistake, one error type: a TypeError from the config as from the layers.
    with pytest.raises(TypeError, match="norm_first must be a bool, got 'yes'"):
        _tiny_config(norm_first="yes")
    with pytest.raises(TypeError, match="norm_first must be a bool, got 'yes'"):
        EncoderLayer(D, H, D_FF, norm_first="yes")


def test_config_is_frozen_and_model_needs_one():
    config = _tiny_config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.d_model = 32
    with pytest.raises(TypeError, match="TransformerConfig"):
        Transformer({"d_model": 16})


def test_transformer_rejects_bad_inputs():
    model = Transformer(_tiny_config())
    ok = torch.tensor([[1, 2, 3]])
    with pytest.raises(ValueError, match="13 > max_len=12"):
        model(torch.ones(1, 13, dtype=torch.long), ok)
    with pytest.raises(ValueError, match="max_len"):
        model(ok, torch.ones(1, 13, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 11\)"):
        model(torch.tensor([[1, 11]]), ok)
    with pytest.raises(ValueError, match=r"\[-1, 2\]"):
        model(ok, torch.tensor([[-1, 2]]))
    with pytest.raises(TypeError, match="LongTensor"):
        model(ok.float(), ok)
    with pytest.raises(ValueError, match=r"\(B, length\)"):
        model(torch.tensor([1, 2]), ok)
    memory, src_mask = model.encode(ok)
    with pytest.raises(ValueError, match="memory"):
        model.decode(torch.tensor([[1], [1]]), memory, src_mask)
    with pytest.raises(ValueError, match=r"d_model=16.*\(1, 3, 8\)"):
        model.decode(ok, memory[..., :8], src_mask)
    with pytest.raises(ValueError, match=r"src_mask must be \(B, 1, 1, S\) = \(1, 1, 1, 3\)"):
        model.decode(ok, memory, src_mask[:, :, :, :2])
    with pytest.raises(ValueError, match=r"got \(1, 3\)"):
        model.decode(ok, memory, src_mask[:, 0, 0])
    with pytest.raises(ValueError, match="src_mask"):
        model.decode(ok, memory, None)


# --- issue 9: edges --------------------------------------------------------------------------


def test_target_mask_has_one_shape_and_a_clear_error_past_max_len():
    model = Transformer(_tiny_config())
    with pytest.raises(ValueError, match="13 > max_len=12"):
        model.target_mask(torch.ones(1, 13, dtype=torch.long))
    tgt = torch.tensor([[1, 2, 3], [1, 4, 5]])  # no padding: still (B, 1, T, T)
    assert model.target_mask(tgt).shape == (2, 1, 3, 3)


def test_a_long_max_len_holds_no_causal_buffer():
    model = Transformer(_tiny_config(max_len=20000))
    buffers = dict(model.named_buffers())
    assert set(buffers) == {"pe"}  # the (max_len, D) encoding only: no (max_len, max_len) mask
    assert sum(b.numel() * b.element_size() for b in buffers.values()) < 2_000_000
    ids = torch.tensor([[1, 2, 3]])
    assert model(ids, ids).shape == (1, 3, 13)


def test_an_empty_batch_gives_empty_results():
    model = Transformer(_tiny_config()).eval()
    src, tgt = torch.zeros(0, 4, dtype=torch.long), torch.zeros(0, 3, dtype=torch.long)
    memory, src_mask = model.encode(src)
    assert memory.shape == (0, 4, 16) and src_mask.shape == (0, 1, 1, 4)
    assert model.decode(tgt, memory, src_mask).shape == (0, 3, 13)
    assert model(src, tgt).shape == (0, 3, 13)
    assert [w.shape for w in model.cross_attention_weights(src, tgt)] == [(0, 2, 3, 4)] * 2


def test_inputs_are_checked_once_at_the_edge_and_inner_layers_trust_their_callers():
    model = Transformer(_tiny_config())
    ok = torch.tensor([[1, 2, 3]])
    memory, src_mask = model.encode(ok)
    with pytest.raises(TypeError, match="memory must be a floating-point tensor"):
        model.decode(ok, memory.long(), src_mask)
    with pytest.raises(ValueError, match=r"memory must be \(B, length, d_model=16\)"):
        model.decode(ok, memory[0], src_mask)
    enc = EncoderLayer(D, H, D_FF)  # post-LN: the attention, the first thing run, checks
    with pytest.raises(ValueError, match=r"query must be \(B, len, d_model=16\)"):
        enc(torch.randn(2, 3, 8))
    with pytest.raises(ValueError, match=r"got query \(3, 16\)"):
        enc(torch.randn(3, D))
    ff = FeedForward(D, D_FF)  # an inner layer: torch's own error, no check of its own
    with pytest.raises(RuntimeError):
        ff(torch.randn(2, 3, 8))


def test_layers_return_one_type_whatever_their_flags():
    torch.manual_seed(0)
    enc, dec = EncoderLayer(D, H, D_FF).eval(), DecoderLayer(D, H, D_FF).eval()
    x, memory = torch.randn(2, 5, D), torch.randn(2, 4, D)
    for need_weights in (False, True):
        out = enc(x, need_weights=need_weights)
        assert isinstance(out, tuple) and len(out) == 2
        out = dec(x, memory, need_weights=need_weights)
        assert isinstance(out, tuple) and len(out) == 3
        assert (out[1] is None) is (not need_weights)


def test_layers_return_the_weights_they_are_asked_for_and_store_nothing():
    torch.manual_seed(0)
    layer = EncoderLayer(D, H, D_FF, norm_first=True).eval()
    x = torch.randn(2, 5, D)
    out, w = layer(x, need_weights=True)
    assert_close(out, layer(x)[0])
    assert w.shape == (2, H, 5, 5) and not hasattr(layer, "record_weights")


def test_dates_config_holds_the_chapter_11_model_settings():
    import dataclasses

    from attention_book import dates

    config = transformer.dates_config()
    assert config.src_vocab_size == len(dates.SOURCE_VOCAB)
    assert config.tgt_vocab_size == len(dates.TARGET_VOCAB)
    assert config.max_len == dates.MAX_SOURCE_LEN and config.pad_id == dates.PAD_ID
    assert transformer.count_parameters(transformer.Transformer(config)) == 172_942
    assert transformer.dates_config(dataclasses.replace(dates.RECIPE, d_model=32)).d_model == 32
    with pytest.raises(TypeError, match="recipe must be a dates.Recipe, got dict"):
        transformer.dates_config({"d_model": 32})
