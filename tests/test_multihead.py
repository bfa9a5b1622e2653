"""Tests for attention_book.multihead.MultiHeadAttention: torch equivalence, masks, errors."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.testing import assert_close

from attention_book import attention, generation, interop, multihead, positional

B, T, S, D, H = 2, 5, 7, 16, 4


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _pair(bias=True, dropout=0.0, batch_first=True):
    """A torch module and our copy of it, both in eval mode."""
    ref = nn.MultiheadAttention(D, H, bias=bias, dropout=dropout, batch_first=batch_first)
    ref.eval()
    ours = interop.from_torch(ref).eval()
    return ref, ours


def _torch(ref, q, k, v, attn_mask=None, key_padding_mask=None):
    """torch's output and per-head weights; its boolean masks use True = blocked."""
    return ref(
        q,
        k,
        v,
        attn_mask=attn_mask,
        key_padding_mask=key_padding_mask,
        need_weights=True,
        average_attn_weights=False,
    )


def _both_paths(m, q, k, v, mask=None):
    out, w = m(q, k, v, mask=mask, need_weights=True)
    fused, none = m(q, k, v, mask=mask, need_weights=False)
    assert none is None
    assert_close(fused, out)  # the fused kernel equals the explicit path
    return out, w


# --- shapes and the two paths ---------------------------------------------------------------


def test_shapes_and_weights_sum_to_one():
    m = multihead.MultiHeadAttention(D, H).eval()
    q, kv = torch.randn(B, T, D), torch.randn(B, S, D)
    out, w = m(q, kv, kv, need_weights=True)
    assert out.shape == (B, T, D) and w.shape == (B, H, T, S)
    assert (m.d_model, m.num_heads, m.d_k, m.dropout) == (D, H, D // H, 0.0)
    assert_close(w.sum(-1), torch.ones(B, H, T))


def test_self_attention_does_not_depend_on_passing_one_tensor_three_times():
    m = multihead.MultiHeadAttention(D, H).eval()
    x = torch.randn(B, T, D)
    same, _ = m(x, x, x)  # query is key is value
    copies, _ = m(x, x.clone(), x.clone())  # three tensors with the same values
    assert torch.equal(same, copies)  # one design, three projections: bit for bit the same


def test_parameter_count_does_not_depend_on_heads():
    counts = {
        h: sum(p.numel() for p in multihead.MultiHeadAttention(D, h).parameters())
        for h in (1, 2, 4, 8, 16)
    }
    assert set(counts.values()) == {4 * (D * D + D)}
    no_bias = multihead.MultiHeadAttention(D, H, bias=False)
    assert sum(p.numel() for p in no_bias.parameters()) == 4 * D * D
    assert all(lin.bias is None for lin in (no_bias.w_q, no_bias.w_k, no_bias.w_v, no_bias.w_o))


def test_one_head_is_plain_attention_between_projections():
    m = multihead.MultiHeadAttention(D, 1).eval()
    q, kv = torch.randn(B, T, D), torch.randn(B, S, D)
    out, w = m(q, kv, kv, need_weights=True)
    heads, w_ref = attention.scaled_dot_product_attention(m.w_q(q), m.w_k(kv), m.w_v(kv))
    assert_close(w, w_ref[:, None])
    assert_close(out, m.w_o(heads))


def test_heads_are_independent_attentions_on_slices():
    m = multihead.MultiHeadAttention(D, H).eval()
    x = torch.randn(B, T, D)
    out, w = m(x, x, x, need_weights=True)
    d_k = D // H
    q, k, v = m.w_q(x), m.w_k(x), m.w_v(x)  # (B, T, D)
    heads = []
    for h in range(H):
        cols = slice(h * d_k, (h + 1) * d_k)
        head, w_h = attention.scaled_dot_product_attention(q[..., cols], k[..., cols], v[..., cols])
        assert_close(w[:, h], w_h)
        heads.append(head)
    assert_close(out, m.w_o(torch.cat(heads, dim=-1)))


# --- equality with torch.nn.MultiheadAttention ---------------------------------------------


@pytest.mark.parametrize("bias", [True, False])
def test_matches_torch_self_attention(bias):
    ref, ours = _pair(bias=bias)
    x = torch.randn(B, T, D)
    out_ref, w_ref = _torch(ref, x, x, x)
    out, w = _both_paths(ours, x, x, x)
    assert_close(out, out_ref)
    assert_close(w, w_ref)


def test_matches_torch_cross_attention_with_s_not_t():
    ref, ours = _pair()
    q, k, v = torch.randn(B, T, D), torch.randn(B, S, D), torch.randn(B, S, D)
    out_ref, w_ref = _torch(ref, q, k, v)
    out, w = _both_paths(ours, q, k, v)
    assert w.shape == (B, H, T, S)
    assert_close(out, out_ref)
    assert_close(w, w_ref)


def test_matches_torch_with_attention_mask():
    ref, ours = _pair()
    q, kv = torch.randn(B, T, D), torch.randn(B, S, D)
    mask = torch.rand(T, S) < 0.7
    mask[:, 0] = True  # every query may attend to something (torch gives NaN otherwise)
    out_ref, w_ref = _torch(ref, q, kv, kv, attn_mask=~mask)  # torch: True = blocked
    out, w = _both_paths(ours, q, kv, kv, mask=mask)
    assert_close(out, out_ref)
    assert_close(w, w_ref)
    assert (w.masked_select(~mask.expand(B, H, T, S)) == 0).all()


def test_matches_torch_with_padding_mask():
    ref, ours = _pair()
    q, kv = torch.randn(B, T, D), torch.randn(B, S, D)
    lengths = torch.tensor([S, 3])
    keep = torch.arange(S) < lengths[:, None]  # (B, S), True = a real token
    out_ref, w_ref = _torch(ref, q, kv, kv, key_padding_mask=~keep)  # torch: True = ignore
    out, w = _both_paths(ours, q, kv, kv, mask=keep[:, None, None, :])  # (B, 1, 1, S)
    assert_close(out, out_ref)
    assert_close(w, w_ref)
    assert (w[1, :, :, 3:] == 0).all()


def test_padding_does_not_change_the_output():
    m = multihead.MultiHeadAttention(D, H).eval()
    q, kv = torch.randn(1, T, D), torch.randn(1, S, D)
    keep = torch.arange(S) < 4
    padded, _ = m(q, kv, kv, mask=keep[None, None, None, :])
    short, _ = m(q, kv[:, :4], kv[:, :4])
    assert_close(padded, short)


def test_matches_torch_with_causal_mask():
    ref, ours = _pair()
    x = torch.randn(B, T, D)
    causal = attention.causal_mask(T)
    out_ref, w_ref = _torch(ref, x, x, x, attn_mask=~causal)
    out, w = _both_paths(ours, x, x, x, mask=causal)
    assert_close(out, out_ref)
    assert_close(w, w_ref)
    assert (w.triu(diagonal=1) == 0).all()


def test_causal_output_ignores_the_future():
    m = multihead.MultiHeadAttention(D, H).eval()
    x = torch.randn(1, T, D)
    changed = x.clone()
    changed[:, 3:] = torch.randn(1, T - 3, D)
    causal = attention.causal_mask(T)
    for need_weights in (True, False):
        a, _ = m(x, x, x, mask=causal, need_weights=need_weights)
        b, _ = m(changed, changed, changed, mask=causal, need_weights=need_weights)
        assert_close(a[:, :3], b[:, :3])
        assert not torch.allclose(a[:, 3:], b[:, 3:])


def test_matches_torch_with_both_masks_together():
    ref, ours = _pair()
    x = torch.randn(B, T, D)
    causal = attention.causal_mask(T)
    keep = torch.tensor([[True] * T, [True] * 3 + [False] * (T - 3)])
    out_ref, w_ref = _torch(ref, x, x, x, attn_mask=~causal, key_padding_mask=~keep)
    mask = causal & keep[:, None, None, :]  # (T, T) & (B, 1, 1, T) -> (B, 1, T, T)
    out, w = _both_paths(ours, x, x, x, mask=mask)
    assert_close(out, out_ref)
    assert_close(w, w_ref)


@pytest.mark.parametrize("need_weights", [True, False])  # the explicit and the fused path
def test_matches_torch_gradients(need_weights):
    ref, ours = _pair()
    x_ref = torch.randn(B, T, D, requires_grad=True)
    x = x_ref.detach().clone().requires_grad_()
    causal = attention.causal_mask(T)
    ref(x_ref, x_ref, x_ref, attn_mask=~causal, need_weights=need_weights)[
        0
    ].square().sum().backward()
    ours(x, x, x, mask=causal, need_weights=need_weights)[0].square().sum().backward()
    assert_close(x.grad, x_ref.grad)
    w_q, w_k, w_v = ref.in_proj_weight.grad.chunk(3)  # (3D, D) -> 3 x (D, D)
    b_q, b_k, b_v = ref.in_proj_bias.grad.chunk(3)  # (3D,) -> 3 x (D,)
    assert_close(ours.w_q.weight.grad, w_q)
    assert_close(ours.w_k.weight.grad, w_k)
    assert_close(ours.w_v.weight.grad, w_v)
    assert_close(ours.w_q.bias.grad, b_q)
    assert_close(ours.w_k.bias.grad, b_k)
    assert_close(ours.w_v.bias.grad, b_v)
    assert_close(ours.w_o.weight.grad, ref.out_proj.weight.grad)
    assert_close(ours.w_o.bias.grad, ref.out_proj.bias.grad)


def test_matches_torch_gradients_in_cross_attention_with_padding():
    ref, ours = _pair()
    q_ref, kv_ref = (
        torch.randn(B, T, D, requires_grad=True),
        torch.randn(B, S, D, requires_grad=True),
    )
    q, kv = (t.detach().clone().requires_grad_() for t in (q_ref, kv_ref))
    keep = torch.arange(S) < torch.tensor([S, 4])[:, None]  # (B, S), True = a real token
    ref(q_ref, kv_ref, kv_ref, key_padding_mask=~keep)[0].square().sum().backward()
    ours(q, kv, kv, mask=keep[:, None, None, :])[0].square().sum().backward()  # explicit path
    assert_close(q.grad, q_ref.grad)
    assert_close(kv.grad, kv_ref.grad)
    assert (kv.grad[1, 4:] == 0).all()  # padded keys and values get no gradient
    assert_close(ours.w_k.weight.grad, ref.in_proj_weight.grad.chunk(3)[1])
    assert_close(ours.w_o.weight.grad, ref.out_proj.weight.grad)


def test_from_torch_works_for_a_sequence_first_module_too():
    ref, ours = _pair(batch_first=False)  # the weights do not depend on the layout
    x = torch.randn(B, T, D)
    out_ref, _ = ref(x.transpose(0, 1), x.transpose(0, 1), x.transpose(0, 1))  # (T, B, D)
    out, _ = ours(x, x, x)
    assert_close(out, out_ref.transpose(0, 1))


def test_from_torch_copies_dropout_dtype_and_bias():
    ref = nn.MultiheadAttention(D, H, dropout=0.25, bias=False, batch_first=True).double()
    ours = interop.from_torch(ref)
    assert ours.dropout == 0.25 and ours.w_q.bias is None
    assert ours.w_q.weight.dtype == torch.float64
    assert_close(ours.w_k.weight, ref.in_proj_weight[D : 2 * D])


def test_dropout_in_eval_mode_matches_torch():
    ref, ours = _pair(dropout=0.5)  # both in eval mode: dropout is off
    x = torch.randn(B, T, D)
    out_ref, w_ref = _torch(ref, x, x, x)
    out, w = _both_paths(ours, x, x, x)
    assert_close(out, out_ref)
    assert_close(w, w_ref)


def test_dropout_zero_in_training_mode_equals_eval_mode():
    m = multihead.MultiHeadAttention(D, H, dropout=0.0)
    x = torch.randn(B, T, D)
    train_out, _ = m.train()(x, x, x)
    eval_out, _ = m.eval()(x, x, x)
    assert_close(train_out, eval_out)


@pytest.mark.parametrize("need_weights", [True, False])
def test_dropout_in_training_mode_is_random_and_unbiased(need_weights):
    m = multihead.MultiHeadAttention(D, H, dropout=0.5).train()
    x = torch.randn(1, T, D)
    a, _ = m(x, x, x, need_weights=need_weights)
    b, _ = m(x, x, x, need_weights=need_weights)
    assert not torch.allclose(a, b)
    mean = torch.stack([m(x, x, x, need_weights=need_weights)[0] for _ in range(2000)]).mean(0)
    assert_close(mean, m.eval()(x, x, x)[0], rtol=0, atol=0.05)  # dropout rescales by 1/(1-p)


def test_dropped_weights_are_returned_in_training_mode():
    m = multihead.MultiHeadAttention(D, H, dropout=0.5).train()
    x = torch.randn(B, T, D)
    _, w = m(x, x, x, need_weights=True)
    _, w_eval = m.eval()(x, x, x, need_weights=True)
    kept = w != 0
    assert (~kept).any() and kept.any()
    assert_close(w[kept], 2 * w_eval[kept])  # survivors are scaled by 1 / (1 - p)


# --- fully masked rows and gradients -------------------------------------------------------


@pytest.mark.parametrize("need_weights", [True, False])
def test_fully_masked_rows_give_zeros_and_finite_gradients(need_weights):
    m = multihead.MultiHeadAttention(D, H)
    q = torch.randn(B, T, D, requires_grad=True)
    kv = torch.randn(B, S, D, requires_grad=True)
    mask = torch.ones(B, 1, T, S, dtype=torch.bool)
    mask[0, :, 2] = False  # query 2 of the first sequence may attend to nothing
    mask[1] = False  # the second sequence may attend to nothing at all
    out, w = m(q, kv, kv, mask=mask, need_weights=need_weights)
    assert torch.isfinite(out).all()
    # nothing is mixed in, so only the output projection's bias is left
    assert_close(out[0, 2], m.w_o.bias)
    assert_close(out[1], m.w_o.bias.expand(T, D))
    if need_weights:
        assert (w[0, :, 2] == 0).all() and (w[1] == 0).all()
    out.square().sum().backward()
    grads = [q.grad, kv.grad] + [p.grad for p in m.parameters()]
    assert all(torch.isfinite(g).all() for g in grads)
    assert (kv.grad[1] == 0).all()  # keys no one may attend to get no gradient


def test_fully_masked_rows_agree_between_paths():
    m = multihead.MultiHeadAttention(D, H).eval()
    x = torch.randn(B, T, D)
    mask = attention.causal_mask(T).clone()
    mask[3] = False
    _both_paths(m, x, x, x, mask=mask)


@pytest.mark.parametrize("need_weights", [True, False])
def test_gradcheck_float64(need_weights):
    m = multihead.MultiHeadAttention(4, 2).double()
    q = torch.randn(1, 3, 4, dtype=torch.float64, requires_grad=True)
    kv = torch.randn(1, 2, 4, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[True, False], [True, True], [False, True]])

    def f(q, kv):
        return m(q, kv, kv, mask=mask, need_weights=need_weights)[0]

    assert torch.autograd.gradcheck(f, (q, kv))


def test_gradcheck_float64_parameters():
    m = multihead.MultiHeadAttention(4, 2).double()
    x = torch.randn(1, 3, 4, dtype=torch.float64)
    params = tuple(m.parameters())

    def f(*weights):
        named = dict(zip([n for n, _ in m.named_parameters()], weights, strict=True))
        return torch.func.functional_call(m, named, (x, x, x))[0]

    assert torch.autograd.gradcheck(f, params)


# --- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(("d_model", "num_heads"), [(10, 4), (16, 3), (7, 2)])
def test_heads_must_divide_width(d_model, num_heads):
    with pytest.raises(
        ValueError, match=f"d_model={d_model} is not divisible by num_heads={num_heads}"
    ):
        multihead.MultiHeadAttention(d_model, num_heads)


@pytest.mark.parametrize(
    ("args", "message"),
    [((0, 1), "positive"), ((8, 0), "positive"), ((8, 2, True, 1.0), "dropout")],
)
def test_rejects_bad_constructor_arguments(args, message):
    with pytest.raises(ValueError, match=message):
        multihead.MultiHeadAttention(*args)


def test_bad_shapes_raise_value_error_naming_them():
    m = multihead.MultiHeadAttention(D, H)
    x = torch.randn(B, T, D)
    with pytest.raises(ValueError, match=r"query \(2, 5, 15\)"):
        m(torch.randn(B, T, D - 1), x, x)
    with pytest.raises(ValueError, match=r"key \(5, 16\)"):
        m(x, torch.randn(T, D), x)
    with pytest.raises(ValueError, match=r"key \(2, 7, 16\), value \(2, 6, 16\)"):
        m(x, torch.randn(B, S, D), torch.randn(B, S - 1, D))
    with pytest.raises(ValueError, match=r"query \(2, 5, 16\), key \(3, 7, 16\)"):
        m(x, torch.randn(3, S, D), torch.randn(3, S, D))


def test_bad_mask_raises():
    m = multihead.MultiHeadAttention(D, H)
    x = torch.randn(B, T, D)
    with pytest.raises(ValueError, match=r"mask of shape \(5, 4\).*\(2, 4, 5, 5\)"):
        m(x, x, x, mask=torch.ones(T, T - 1, dtype=torch.bool))
    with pytest.raises(ValueError, match="does not broadcast"):
        m(
            x, x, x, mask=torch.ones(B, T, dtype=torch.bool)
        )  # a (B, S) padding mask needs (B, 1, 1, S)
    with pytest.raises(TypeError, match="torch.bool"):
        m(x, x, x, mask=torch.ones(T, T))


def test_bad_types_raise_type_error():
    m = multihead.MultiHeadAttention(D, H)
    x = torch.randn(B, T, D)
    with pytest.raises(TypeError, match="query must be a torch.Tensor, got list"):
        m(x.tolist(), x, x)
    with pytest.raises(TypeError, match="value must be a floating-point tensor"):
        m(x, x, x.long())


def test_from_torch_rejects_what_it_cannot_copy():
    with pytest.raises(TypeError, match="torch.nn.MultiheadAttention"):
        interop.from_torch(nn.Linear(D, D))
    with pytest.raises(ValueError, match="kdim == vdim == embed_dim"):
        interop.from_torch(nn.MultiheadAttention(D, H, kdim=8, vdim=8))
    with pytest.raises(ValueError, match="add_bias_kv"):
        interop.from_torch(nn.MultiheadAttention(D, H, add_bias_kv=True))
    with pytest.raises(ValueError, match="add_zero_attn"):
        interop.from_torch(nn.MultiheadAttention(D, H, add_zero_attn=True))


# --- learning ------------------------------------------------------------------------------


def test_a_tiny_model_overfits_a_copy_task():
    # copy the token one to the left: attention has to find position t - 1
    vocab, length = 6, 6
    tokens = torch.randint(vocab, (8, length))
    embed, pos = nn.Embedding(vocab, D), nn.Embedding(length, D)
    mha, head = multihead.MultiHeadAttention(D, H), nn.Linear(D, vocab)
    params = [*embed.parameters(), *pos.parameters(), *mha.parameters(), *head.parameters()]
    opt = torch.optim.Adam(params, lr=1e-2)
    for _ in range(300):
        x = embed(tokens) + pos.weight  # (B, L, D)
        logits = head(mha(x, x, x)[0])  # (B, L, V)
        loss = nn.functional.cross_entropy(
            logits[:, 1:].reshape(-1, vocab), tokens[:, :-1].reshape(-1)
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05


def test_cache_path_attends_over_cached_and_new_positions():
    torch.manual_seed(0)
    mha = multihead.MultiHeadAttention(16, 4).eval()
    x = torch.randn(2, 7, 16)
    full, _ = mha(x, x, x, attention.causal_mask(7))  # (2, 7, 16)
    cache = generation.KVCache(1)
    first, _ = mha(x[:, :5], x[:, :5], x[:, :5], attention.causal_mask(5), cache=cache)
    last = x[:, 5:]  # two new positions
    mask = attention.causal_mask(7)[5:]  # (2, 7): the new queries over all keys
    rest, w = mha(last, last, last, mask, need_weights=True, cache=cache)
    torch.testing.assert_close(torch.cat([first, rest], dim=1), full)
    assert w.shape == (2, 4, 2, 7) and cache.length == 7


def test_from_torch_keeps_the_training_mode():
    torch_mha = torch.nn.MultiheadAttention(8, 2, dropout=0.5, batch_first=True).eval()
    ours = interop.from_torch(torch_mha)
    assert not ours.training
    x = torch.randn(2, 5, 8)
    first, second = ours(x, x, x)[0], ours(x, x, x)[0]
    torch.testing.assert_close(first, second)  # no dropout in evaluation mode
    assert interop.from_torch(torch_mha.train()).training


# --- issue 9: the accepted mask shapes, and the two paths agree on every input -------------


def test_a_two_d_mask_is_always_t_by_s_and_a_b_by_s_padding_mask_is_refused():
    m = multihead.MultiHeadAttention(D, H).eval()
    x = torch.randn(B, T, D)
    for bad in (torch.ones(B, T, dtype=torch.bool), torch.ones(1, T, dtype=torch.bool)):
        for need_weights in (True, False):
            with pytest.raises(ValueError, match=r"\(T, S\) = \(5, 5\) exactly.*\(B, 1, 1, S\)"):
                m(x, x, x, mask=bad, need_weights=need_weights)
    with pytest.raises(ValueError, match="2-D mask must be"):  # 3-D masks are refused too
        m(x, x, x, mask=torch.ones(B, T, T, dtype=torch.bool))
    # B == T: a (T, S) mask is read as (T, S), one row per query, never as per-example padding.
    square = torch.randn(T, T, D)  # B = T = 5
    rows = torch.rand(T, S) > 0.3
    rows[:, 0] = True
    kv = torch.randn(T, S, D)
    out, w = _both_paths(m, square, kv, kv, rows)
    assert_close(out, m(square, kv, kv, rows[None, None])[0])  # the same as (1, 1, T, S)
    assert (w[:, :, ~rows] == 0).all()


@pytest.mark.parametrize("need_weights", [True, False])
def test_both_paths_refuse_a_one_d_mask_with_the_same_error(need_weights):
    m = multihead.MultiHeadAttention(D, H).eval()
    x, kv = torch.randn(B, T, D), torch.randn(B, S, D)
    with pytest.raises(ValueError, match=r"mask of shape \(7,\) does not broadcast"):
        m(x, kv, kv, mask=torch.ones(S, dtype=torch.bool), need_weights=need_weights)


@pytest.mark.parametrize("name", ["query", "key", "value"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_both_paths_refuse_non_finite_input_with_the_same_error(name, bad):
    m = multihead.MultiHeadAttention(D, H).eval()
    inputs = {"query": torch.randn(B, T, D), "key": torch.randn(B, S, D)}
    inputs["value"] = torch.randn(B, S, D)
    inputs[name][1, 2, 3] = bad
    errors = []
    for need_weights in (True, False):
        with pytest.raises(ValueError, match="finite") as raised:
            m(**inputs, need_weights=need_weights)
        errors.append(str(raised.value))
    assert errors[0] == errors[1]  # the same error, whichever path


@pytest.mark.parametrize("masked", [True, False])
def test_both_paths_agree_on_a_nan_key_hidden_by_the_mask_or_not(masked):
    m = multihead.MultiHeadAttention(D, H).eval()
    x, key, value = torch.randn(B, T, D), torch.randn(B, S, D), torch.randn(B, S, D)
    key[0, 6] = float("nan")  # the last key of the first example (its value is finite)
    mask = torch.ones(B, 1, 1, S, dtype=torch.bool)
    mask[0, ..., 6] = not masked
    if masked:  # no query may read that key: both paths ignore it and agree
        out, _ = _both_paths(m, x, key, value, mask)
        assert torch.isfinite(out).all()
    else:
        for need_weights in (True, False):
            with pytest.raises(ValueError, match="finite"):
                m(x, key, value, mask, need_weights=need_weights)


def test_both_paths_agree_with_dropout_in_training_mode():
    m = multihead.MultiHeadAttention(D, H, dropout=0.3).train()
    x, kv = torch.randn(B, T, D), torch.randn(B, S, D)
    torch.manual_seed(1)
    out, w = m(x, kv, kv, need_weights=True)
    torch.manual_seed(1)
    fast, none = m(x, kv, kv, need_weights=False)
    assert none is None
    assert_close(fast, out)  # one seed, one result, whichever path
    assert_close(out, m.w_o((w @ m._split(m.w_v(kv), H)).transpose(1, 2).reshape(B, T, D)))


def test_mixed_dtypes_are_a_type_error_naming_both():
    m = multihead.MultiHeadAttention(D, H)
    x = torch.randn(B, T, D)
    with pytest.raises(TypeError, match=r"query torch.float32, key torch.float64"):
        m(x, x.double(), x.double())
    with pytest.raises(TypeError, match=r"module's dtype torch.float32.*query torch.float64"):
        m(x.double(), x.double(), x.double())


@pytest.mark.parametrize("need_weights", [True, False])
def test_no_keys_gives_the_output_bias_on_both_paths(need_weights):
    m = multihead.MultiHeadAttention(D, H).eval()
    empty = torch.randn(B, 0, D)  # S = 0: nothing to attend to, so every head outputs zeros
    out, w = m(torch.randn(B, T, D), empty, empty, need_weights=need_weights)
    assert_close(out, m.w_o.bias.expand(B, T, D))
    assert w is None or w.shape == (B, H, T, 0)


# --- one module for every model: grouped-query attention, rotary positions, the cache ------


def test_as_many_kv_heads_as_heads_is_ordinary_multi_head_attention():
    torch.manual_seed(0)
    plain = multihead.MultiHeadAttention(24, 4, bias=False).eval()
    torch.manual_seed(0)
    same = multihead.MultiHeadAttention(24, 4, bias=False, num_kv_heads=4).eval()
    x = torch.randn(2, 7, 24)
    mask = attention.causal_mask(7)
    for need_weights in (True, False):
        assert_close(same(x, x, x, mask, need_weights)[0], plain(x, x, x, mask, need_weights)[0])


def test_grouped_query_attention_equals_mha_with_shared_key_value_heads():
    torch.manual_seed(0)
    D, H, H_kv = 24, 6, 2
    gqa = multihead.MultiHeadAttention(D, H, bias=False, num_kv_heads=H_kv).eval()
    mha = multihead.MultiHeadAttention(D, H, bias=False).eval()
    d_k = D // H
    with torch.no_grad():
        for name in ("w_k", "w_v"):  # query heads 0-2 read kv head 0, heads 3-5 kv head 1
            w = getattr(gqa, name).weight.view(H_kv, 1, d_k, D).expand(H_kv, H // H_kv, d_k, D)
            getattr(mha, name).weight.copy_(w.reshape(D, D))
        mha.w_q.weight.copy_(gqa.w_q.weight)
        mha.w_o.weight.copy_(gqa.w_o.weight)
    x = torch.randn(2, 5, D)
    mask = attention.causal_mask(5)
    expected, expected_w = mha(x, x, x, mask, need_weights=True)
    out, w = gqa(x, x, x, mask, need_weights=True)
    assert_close(out, expected)
    assert_close(w, expected_w)
    assert_close(gqa(x, x, x, mask, need_weights=False)[0], expected)  # the fused path
    assert sum(p.numel() for p in gqa.parameters()) == 2 * D * D + 2 * D * (D * H_kv // H)
    assert gqa.w_k.weight.shape == (H_kv * d_k, D)


def test_repeat_kv_shares_each_head_with_consecutive_query_heads():
    x = torch.arange(2 * 3 * 1 * 1.0).view(2, 3, 1, 1)
    out = multihead.repeat_kv(x, 2)
    assert out.shape == (2, 6, 1, 1)
    assert out[0, :, 0, 0].tolist() == [0.0, 0.0, 1.0, 1.0, 2.0, 2.0]
    with pytest.raises(ValueError, match="repeats must be a positive int, got 0"):
        multihead.repeat_kv(x, 0)  # an empty tensor would be a silent wrong answer


def test_one_new_token_takes_the_grouped_fast_path_like_the_explicit_path():
    torch.manual_seed(0)
    gqa = multihead.MultiHeadAttention(24, 6, bias=False, num_kv_heads=2).eval()
    x = torch.randn(2, 1, 24)
    cache = generation.KVCache(1)
    cache.update(0, torch.randn(2, 2, 7, 4), torch.randn(2, 2, 7, 4))
    fast, _ = gqa(x, x, x, need_weights=False, cache=cache)
    cache.keys[0], cache.values[0] = cache.keys[0][:, :, :7], cache.values[0][:, :, :7]
    explicit, w = gqa(x, x, x, need_weights=True, cache=cache)
    assert w.shape == (2, 6, 1, 8)
    assert_close(fast, explicit)


def test_rope_rotates_queries_and_keys_so_scores_depend_on_offsets_only():
    torch.manual_seed(0)
    m = multihead.MultiHeadAttention(16, 2, bias=False).eval()
    x = torch.randn(1, 1, 16).expand(1, 4, 16)  # one token, repeated at four positions
    rope = positional.rope_cos_sin(torch.arange(4), 8)
    _, w = m(x, x, x, need_weights=True, rope=rope)
    scores_far = w[0, :, 3, 0] / w[0, :, 3, 3]  # offset 3 against offset 0
    _, w_plain = m(x, x, x, need_weights=True)
    assert torch.allclose(w_plain, torch.full_like(w_plain, 0.25))  # no positions: uniform
    assert not torch.allclose(scores_far, torch.ones(2))  # RoPE told the positions apart
    shifted = positional.rope_cos_sin(torch.arange(10, 14), 8)
    assert_close(m(x, x, x, need_weights=True, rope=shifted)[1], w)  # only offsets matter


def test_each_module_finds_its_cache_entry_by_its_own_layer_index():
    torch.manual_seed(0)
    layers = [multihead.MultiHeadAttention(8, 2, layer_idx=i).eval() for i in range(3)]
    cache = generation.KVCache(3)
    x = torch.randn(1, 4, 8)
    layers[2](x, x, x, cache=cache)
    assert cache.keys[0] is None and cache.keys[2].shape == (1, 2, 4, 4)
    with pytest.raises(ValueError, match="layer 2 is outside this cache of 1 layers"):
        layers[2](x, x, x, cache=generation.KVCache(1))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"bias": "no"}, TypeError, "bias must be a bool"),
        ({"num_kv_heads": 3}, ValueError, "num_kv_heads=3 must divide num_heads=4"),
        ({"num_kv_heads": 0}, ValueError, "num_kv_heads must be a positive int"),
        ({"dropout": 1.0}, ValueError, r"dropout must be in \[0, 1\)"),
        ({"layer_idx": -1}, ValueError, "layer_idx must be a non-negative int"),
    ],
)
def test_settings_that_would_be_wrong_are_refused(kwargs, error, message):
    with pytest.raises(error, match=message):
        multihead.MultiHeadAttention(8, 4, **kwargs)


def test_numpy_settings_are_accepted_like_python_ones():
    m = multihead.MultiHeadAttention(np.int64(8), 2, bias=np.bool_(False), dropout=np.float32(0.5))
    assert m.w_q.bias is None and m.dropout == 0.5


@pytest.mark.parametrize("need_weights", [True, False])
def test_a_float_mask_is_refused_on_every_path(need_weights):
    m = multihead.MultiHeadAttention(D, H).eval()
    x = torch.randn(B, T, D)
    additive = torch.zeros(T, T).masked_fill(~attention.causal_mask(T), float("-inf"))
    with pytest.raises(TypeError, match="torch.bool.*m == 0"):
        m(x, x, x, additive, need_weights=need_weights)


def test_a_two_d_input_is_a_clear_error():
    m = multihead.MultiHeadAttention(D, H)
    x = torch.randn(T, D)
    with pytest.raises(ValueError, match=r"query must be \(B, len, d_model=16\)"):
        m(x, x, x)
