"""Tests of the sampling rules, the key-value cache and generate(), on a tiny causal model."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attention_book import generation

V, D, MAX_LEN = 11, 16, 40


class TinyLM(nn.Module):
    """One causal attention layer over token + position embeddings; follows the protocol."""

    def __init__(self):
        super().__init__()
        self.config = SimpleNamespace(max_len=MAX_LEN, num_layers=1, vocab_size=V)
        self.tok = nn.Embedding(V, D)
        self.pos = nn.Embedding(MAX_LEN, D)
        self.qkv = nn.Linear(D, 3 * D)
        self.out = nn.Linear(D, V)

    def forward(self, ids, cache=None):
        start = 0 if cache is None else cache.length
        T = ids.shape[1]
        x = self.tok(ids) + self.pos(torch.arange(start, start + T))  # (B, T, D)
        q, k, v = (t[:, None] for t in self.qkv(x).chunk(3, dim=-1))  # (B, 1, T, D) x 3
        if cache is not None:
            k, v = cache.update(0, k, v)  # (B, 1, S, D)
        S = k.shape[-2]
        mask = torch.ones(T, S, dtype=torch.bool).tril(diagonal=S - T)  # (T, S)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)[:, 0]  # (B, T, D)
        return self.out(x + y)  # (B, T, V)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return TinyLM().eval()


def test_cache_update_appends_and_reports_length():
    cache = generation.KVCache(2)
    assert cache.length == 0
    k, v = cache.update(0, torch.zeros(2, 3, 4, 5), torch.ones(2, 3, 4, 5))
    assert cache.length == 4 and k.shape == (2, 3, 4, 5)
    k, v = cache.update(0, torch.zeros(2, 3, 1, 5), torch.ones(2, 3, 1, 5))
    assert cache.length == 5 and k.shape == v.shape == (2, 3, 5, 5)
    assert cache.memory_bytes() == 2 * 2 * 3 * 5 * 5 * 4


def test_cache_rejects_bad_shapes_and_sizes():
    with pytest.raises(ValueError, match="num_layers"):
        generation.KVCache(0)
    with pytest.raises(ValueError, match="num_layers must be a positive int, got 1.5"):
        generation.KVCache(1.5)
    cache = generation.KVCache(np.int64(1))
    with pytest.raises(ValueError, match="B, H_kv, T_new"):
        cache.update(0, torch.zeros(2, 3, 5), torch.zeros(2, 3, 5))
    cache.update(0, torch.zeros(2, 3, 4, 5), torch.zeros(2, 3, 4, 5))
    with pytest.raises(ValueError, match="do not continue"):
        cache.update(0, torch.zeros(1, 3, 1, 5), torch.zeros(1, 3, 1, 5))
    with pytest.raises(ValueError, match="layer 1 is outside this cache of 1 layers"):
        cache.update(1, torch.zeros(2, 3, 1, 5), torch.zeros(2, 3, 1, 5))
    with pytest.raises(ValueError, match="layer must be a non-negative int, got -1"):
        cache.update(-1, torch.zeros(2, 3, 1, 5), torch.zeros(2, 3, 1, 5))  # not the last layer
    assert cache.num_layers == 1 and cache.length == 4


def test_cached_forward_equals_full_forward(model):
    ids = torch.randint(0, V, (3, 9))
    full = model(ids)  # (3, 9, V)
    cache = generation.KVCache(1)
    parts = [model(ids[:, :5], cache=cache)] + [
        model(ids[:, t : t + 1], cache=cache) for t in range(5, 9)
    ]
    torch.testing.assert_close(torch.cat(parts, dim=1), full)


def test_greedy_with_and_without_cache_agree_with_unequal_finishing(model):
    torch.manual_seed(1)
    ids = torch.randint(0, V, (6, 4))
    plain = generation.generate(model, ids, 20, temperature=0)
    eos = int(plain[0, 6])  # a token row 0 emits, so that rows finish at different steps
    a = generation.generate(model, ids, 20, temperature=0, eos_id=eos, use_cache=True)
    b = generation.generate(model, ids, 20, temperature=0, eos_id=eos, use_cache=False)
    assert torch.equal(a, b)
    finished = [(row[4:] == eos).nonzero() for row in a]
    firsts = {int(f[0]) for f in finished if len(f)}
    assert len(firsts) >= 2, "rows should finish at different steps"
    for row, f in zip(a, finished, strict=True):
        if len(f):  # after its first eos a row holds only eos
            assert (row[4 + int(f[0]) :] == eos).all()


def test_greedy_matches_argmax_of_each_step(model):
    ids = torch.randint(0, V, (2, 3))
    out = generation.generate(model, ids, 5, temperature=0)
    assert out.shape == (2, 8) and torch.equal(out[:, :3], ids)
    for t in range(3, 8):
        assert torch.equal(out[:, t], model(out[:, :t])[:, -1].argmax(-1))


def test_generation_stops_when_every_row_has_finished(model):
    ids = torch.randint(0, V, (2, 3))
    first = generation.generate(model, ids, 1, temperature=0)[:, -1]
    if first[0] == first[1]:
        out = generation.generate(model, ids, 10, temperature=0, eos_id=int(first[0]))
        assert out.shape == (2, 4)
    out = generation.generate(model, ids[:1], 10, temperature=0, eos_id=int(first[0]))
    assert out.shape == (1, 4)


def test_top_k_one_equals_greedy(model):
    ids = torch.randint(0, V, (4, 3))
    greedy = generation.generate(model, ids, 8, temperature=0)
    g = torch.Generator().manual_seed(0)
    sampled = generation.generate(model, ids, 8, temperature=1.3, top_k=1, generator=g)
    assert torch.equal(greedy, sampled)


def test_same_seed_same_tokens_and_cache_does_not_change_samples(model):
    ids = torch.randint(0, V, (3, 2))
    runs = [
        generation.generate(
            model, ids, 15, top_p=0.9, generator=torch.Generator().manual_seed(7), use_cache=c
        )
        for c in (True, True, False)
    ]
    assert torch.equal(runs[0], runs[1]) and torch.equal(runs[0], runs[2])
    other = generation.generate(model, ids, 15, generator=torch.Generator().manual_seed(8))
    assert not torch.equal(runs[0], other)


def test_top_p_keeps_the_smallest_nucleus():
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    probs = generation.next_token_distribution(logits, top_p=0.8)
    torch.testing.assert_close(probs, torch.tensor([0.625, 0.375, 0.0, 0.0]))
    probs = generation.next_token_distribution(logits, top_p=0.81)
    assert (probs[:3] > 0).all() and probs[3] == 0
    probs = generation.next_token_distribution(logits, top_p=0.01)
    torch.testing.assert_close(probs, torch.tensor([1.0, 0.0, 0.0, 0.0]))


def test_top_p_never_samples_outside_the_nucleus(model):
    ids = torch.randint(0, V, (500, 3))
    logits = model(ids[:1])[0, -1]
    nucleus = generation.next_token_distribution(logits, top_p=0.6) > 0
    g = torch.Generator().manual_seed(0)
    first = generation.generate(model, ids[:1].expand(500, 3), 1, top_p=0.6, generator=g)[:, -1]
    assert nucleus[first].all()
    assert 1 <= int(nucleus.sum()) < V


def test_temperature_and_top_k_reshape_as_defined():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    torch.testing.assert_close(
        generation.next_token_distribution(logits, temperature=0.5), torch.softmax(logits / 0.5, -1)
    )
    top2 = generation.next_token_distribution(logits, top_k=2)
    torch.testing.assert_close(top2[0, :2], torch.softmax(logits[0, :2], -1))
    assert (top2[0, 2:] == 0).all()
    greedy = generation.next_token_distribution(logits, temperature=0)
    assert torch.equal(greedy, torch.tensor([[1.0, 0.0, 0.0, 0.0]]))
    assert torch.equal(
        generation.next_token_distribution(logits, top_k=np.int64(10)), torch.softmax(logits, -1)
    )


def test_top_k_keeps_every_token_tied_with_the_kth():
    """As documented: a tie at the k-th logit keeps all the tied tokens."""
    logits = torch.tensor([3.0, 1.0, 1.0, 0.0])
    top2 = generation.next_token_distribution(logits, top_k=2)
    assert int((top2 > 0).sum()) == 3
    torch.testing.assert_close(top2[:3], torch.softmax(logits[:3], -1))


def test_sampled_first_tokens_follow_the_tempered_softmax(model):
    """Chi-square goodness of fit of 20,000 seeded draws against softmax(logits / T)."""
    n, temperature = 20_000, 1.5
    prompt = torch.tensor([[1, 2, 3]])
    with torch.no_grad():
        expected = torch.softmax(model(prompt)[0, -1] / temperature, -1) * n  # (V,)
    g = torch.Generator().manual_seed(0)
    out = generation.generate(model, prompt.expand(n, 3), 1, temperature=temperature, generator=g)
    observed = torch.bincount(out[:, -1], minlength=V).double()
    chi2 = float(((observed - expected.double()) ** 2 / expected.double()).sum())
    assert chi2 < 29.59, chi2  # the 0.999 quantile of chi-square with V - 1 = 10 degrees of freedom


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"temperature": -0.1}, ValueError, "temperature"),
        ({"temperature": float("nan")}, ValueError, "temperature"),
        ({"temperature": "hot"}, TypeError, "temperature"),
        ({"top_k": 0}, ValueError, "top_k"),
        ({"top_k": 2.5}, ValueError, "top_k must be a positive int"),
        ({"top_p": 0.0}, ValueError, "top_p"),
        ({"top_p": 1.5}, ValueError, "top_p"),
        ({"eos_id": True}, ValueError, "eos_id"),
        ({"eos_id": -1}, ValueError, "eos_id must be a non-negative int"),
        ({"eos_id": 11}, ValueError, r"eos_id=11 is outside the vocabulary \[0, 11\)"),
        ({"max_new_tokens": -1}, ValueError, "max_new_tokens"),
        ({"max_new_tokens": 38}, ValueError, "max_len=40"),
    ],
)
def test_generate_rejects_bad_arguments(model, kwargs, error, match):
    args = {"max_new_tokens": 3} | kwargs
    n = args.pop("max_new_tokens")
    with pytest.raises(error, match=match):
        generation.generate(model, torch.zeros(1, 3, dtype=torch.long), n, **args)


def test_generate_rejects_bad_ids(model):
    with pytest.raises(TypeError, match="ids must be"):
        generation.generate(model, torch.zeros(1, 3), 2)
    with pytest.raises(ValueError, match="T >= 1"):
        generation.generate(model, torch.zeros(1, 0, dtype=torch.long), 2)
    with pytest.raises(ValueError, match="NaN"):
        generation.next_token_distribution(torch.tensor([0.0, float("nan")]))


def test_zero_new_tokens_returns_the_prompt(model):
    ids = torch.randint(0, V, (2, 5))
    assert torch.equal(generation.generate(model, ids, 0), ids)


# --- no silent wrong answer ----------------------------------------------------------------


def test_generate_reads_a_model_in_eval_mode_and_restores_its_mode():
    torch.manual_seed(0)
    lm = TinyLM()  # its output goes through dropout in training mode
    drop = nn.Dropout(0.5)

    class Dropping(nn.Module):
        def __init__(self):
            super().__init__()
            self.lm, self.drop, self.config = lm, drop, lm.config

        def forward(self, ids, cache=None):
            return self.drop(self.lm(ids, cache=cache))

    model = Dropping().train()
    prompt = torch.tensor([[1, 2, 3]])
    a = generation.generate(model, prompt, 10, temperature=0)
    b = generation.generate(model, prompt, 10, temperature=0)
    assert torch.equal(a, b) and model.training and drop.training


@pytest.mark.parametrize(
    ("logits", "message"),
    [
        (torch.full((2, 5), float("-inf")), "all -inf"),
        (torch.tensor([[0.0, float("inf"), 1.0]]), r"\+inf"),
        (torch.tensor([[0.0, float("nan"), 1.0]]), "NaN"),
    ],
)
def test_next_token_distribution_refuses_logits_it_cannot_turn_into_probabilities(logits, message):
    with pytest.raises(ValueError, match=message):
        generation.next_token_distribution(logits)


@pytest.mark.parametrize(
    ("logits", "temperature"),
    [
        (torch.tensor([[1.0, 2.0, 0.5]]), 1e-40),  # logits / T overflows float32
        (torch.tensor([[3e38, -3e38, 1e38]]), 0.5),  # huge logits, small temperature
        (torch.tensor([[float("-inf"), 2.0, 1.0]]), 1e-30),
    ],
)
def test_next_token_distribution_never_returns_nan(logits, temperature):
    probs = generation.next_token_distribution(logits, temperature=temperature)
    assert torch.isfinite(probs).all()
    torch.testing.assert_close(probs.sum(-1), torch.ones(1))
    assert probs.argmax(-1).item() == logits.argmax(-1).item()


def test_numpy_numbers_are_accepted_where_python_numbers_are(model):
    logits = torch.tensor([[1.0, 2.0, 0.5]])
    expected = generation.next_token_distribution(logits, temperature=0.5, top_p=0.9)
    got = generation.next_token_distribution(
        logits, temperature=np.float32(0.5), top_p=np.float64(0.9), top_k=np.int64(3)
    )
    torch.testing.assert_close(got, expected)
    out = generation.generate(model, torch.tensor([[1, 2]]), np.int64(3), temperature=np.float32(0))
    assert out.shape == (1, 5)


def test_generate_many_refuses_an_empty_prompt(model):
    with pytest.raises(ValueError, match=r"at least one token; prompts \[1\] are empty"):
        generation.generate_many(model, [[1, 2], []], 3)


def test_generate_refuses_an_encoder_decoder_with_a_pointer_to_decoding():
    from attention_book import transformer

    encdec = transformer.Transformer(transformer.TransformerConfig(12, 12, 16, 2, 1, 1, 32))
    with pytest.raises(TypeError, match="decoder-only.*greedy_decode"):
        generation.generate(encdec, torch.tensor([[1, 2]]), 3)


def test_layer_cache_is_the_shared_part_of_the_list_caches():
    from attention_book import serving

    base = generation.LayerCache(3)
    assert (base.num_layers, base.length) == (3, 0)
    assert isinstance(generation.KVCache(2), generation.LayerCache)
    assert isinstance(serving.SinkCache(2, num_sink=1, window=4), generation.LayerCache)
    with pytest.raises(ValueError, match="num_layers"):
        generation.LayerCache(0)
