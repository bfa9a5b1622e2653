"""Tests for attention_book.llama: modern components, the model, SmolLM2 against transformers."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from attention_book import generation, llama, positional, pretrained, transformer

TINY = llama.LlamaConfig(
    vocab_size=23,
    d_model=24,
    num_layers=2,
    num_heads=6,
    num_kv_heads=2,
    d_ff=40,
    max_len=32,
    rope_base=10000.0,
)


def _random_model(config: llama.LlamaConfig = TINY, seed: int = 0) -> llama.Llama:
    torch.manual_seed(seed)
    model = llama.Llama(config)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)  # norms away from 1, so a forgotten weight shows
    return model.eval()


def test_rmsnorm_matches_its_formula():
    torch.manual_seed(0)
    norm = llama.RMSNorm(8, eps=1e-5)
    with torch.no_grad():
        norm.weight.normal_()
    x = torch.randn(3, 4, 8, dtype=torch.float64)
    norm = norm.double()
    expected = x / torch.sqrt((x**2).mean(dim=-1, keepdim=True) + 1e-5) * norm.weight
    assert_close(norm(x), expected)
    # only the direction matters (up to eps)
    assert_close(norm(5 * x), norm(x), rtol=1e-4, atol=1e-4)


def test_swiglu_matches_its_formula():
    torch.manual_seed(0)
    ffn = llama.SwiGLU(6, 10)
    x = torch.randn(2, 3, 6)
    g, u = x @ ffn.w_gate.weight.T, x @ ffn.w_up.weight.T
    expected = (g * torch.sigmoid(g) * u) @ ffn.w_down.weight.T
    assert_close(ffn(x), expected)
    assert all(m.bias is None for m in (ffn.w_gate, ffn.w_up, ffn.w_down))


def test_config_validation_and_frozen():
    with pytest.raises(ValueError, match="num_kv_heads=4 must divide num_heads=6"):
        dataclasses.replace(TINY, num_kv_heads=4)
    with pytest.raises(ValueError, match="d_model=24 is not divisible by num_heads=5"):
        dataclasses.replace(TINY, num_heads=5)
    with pytest.raises(ValueError, match="even"):
        dataclasses.replace(TINY, d_model=18, num_heads=6, num_kv_heads=2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        TINY.d_model = 8
    with pytest.raises(TypeError, match="LlamaConfig"):
        llama.Llama({"d_model": 24})


def test_llama_is_causal_and_has_tied_embeddings():
    model = _random_model()
    ids = torch.randint(0, TINY.vocab_size, (2, 9))
    changed = ids.clone()
    changed[:, 6:] = (changed[:, 6:] + 1) % TINY.vocab_size
    with torch.no_grad():
        a, b = model(ids), model(changed)
    assert a.shape == (2, 9, TINY.vocab_size)
    assert_close(a[:, :6], b[:, :6])
    assert not torch.allclose(a[:, 6:], b[:, 6:])
    assert model.lm_head is None
    d, f, kv = TINY.d_model, TINY.d_ff, TINY.num_kv_heads * TINY.d_k
    per_layer = 2 * d * d + 2 * d * kv + 3 * d * f + 2 * d
    assert (
        transformer.count_parameters(model) == TINY.vocab_size * d + TINY.num_layers * per_layer + d
    )


def test_cached_forward_equals_full_forward_and_caches_only_kv_heads():
    model = _random_model()
    ids = torch.randint(0, TINY.vocab_size, (2, 10))
    cache = generation.KVCache(TINY.num_layers)
    with torch.no_grad():
        full = model(ids)
        first = model(ids[:, :6], cache=cache)
        rest = [model(ids[:, t : t + 1], cache=cache) for t in range(6, 10)]
    assert_close(torch.cat([first, *rest], dim=1), full, rtol=1e-5, atol=1e-5)
    assert cache.keys[0].shape == (2, TINY.num_kv_heads, 10, TINY.d_k)
    assert cache.memory_bytes() == 2 * llama.kv_cache_bytes(TINY, 10)


def test_generate_drives_the_model_with_and_without_cache():
    model = _random_model()
    prompt = torch.tensor([[1, 2, 3]])
    cached = generation.generate(model, prompt, 12, temperature=0)
    uncached = generation.generate(model, prompt, 12, temperature=0, use_cache=False)
    assert cached.shape == (1, 15)
    assert torch.equal(cached, uncached)
    with pytest.raises(ValueError, match="max_len"):
        generation.generate(model, prompt, 30)


def test_attention_weights_are_causal_rows_that_sum_to_one():
    model = _random_model()
    ids = torch.randint(0, TINY.vocab_size, (1, 6))
    weights = model.attention_weights(ids)
    assert isinstance(weights, list) and len(weights) == TINY.num_layers
    w = torch.stack(weights)  # N x (B, H, T, T) -> (N, B, H, T, T)
    assert w.shape == (TINY.num_layers, 1, TINY.num_heads, 6, 6)
    assert_close(w.sum(-1), torch.ones(TINY.num_layers, 1, TINY.num_heads, 6))
    assert (w.triu(1) == 0).all()


def test_llama_rejects_bad_ids():
    model = _random_model()
    with pytest.raises(TypeError, match="LongTensor"):
        model(torch.zeros(1, 3))
    with pytest.raises(ValueError, match=r"outside the vocabulary \[0, 23\)"):
        model(torch.tensor([[1, 23]]))
    with pytest.raises(ValueError, match="max_len"):
        model(torch.zeros(1, 33, dtype=torch.long))


def test_permute_rows_is_undone_by_unpermute_rows():
    w = np.arange(2 * 8 * 3).reshape(16, 3)
    p = llama.permute_rows(w, num_heads=2)
    # head 0's rows 0..7 become 0, 4, 1, 5, 2, 6, 3, 7: the two halves interleaved
    assert p[:8, 0].tolist() == [0, 12, 3, 15, 6, 18, 9, 21]
    assert np.array_equal(llama.unpermute_rows(p, 2), w)
    with pytest.raises(ValueError, match="heads"):
        llama.permute_rows(w, num_heads=3)


def test_permuted_rows_with_adjacent_pair_rope_equal_rotate_half_rope():
    # llama.cpp's layout rotates pairs (2i, 2i + 1); with the rows permuted it is the same model
    torch.manual_seed(0)
    d, T = 8, 5
    w = torch.randn(d, 12)
    x = torch.randn(T, 12)
    pos = torch.arange(T)
    half = positional.apply_rope(x @ w.T, pos)  # (T, d)
    y = x @ llama.permute_rows(w, 1).T  # (T, d), interleaved
    cos, sin = positional.rope_cos_sin(pos, d)
    cos, sin = cos[:, : d // 2], sin[:, : d // 2]
    a, b = y[:, 0::2], y[:, 1::2]
    adjacent = torch.stack([a * cos - b * sin, a * sin + b * cos], dim=-1).reshape(T, d)
    assert_close(llama.unpermute_rows(adjacent.T, 1).T, half)


# --- SmolLM2-135M-Instruct against transformers (loaded once for this module) ------------------

PROMPT = "Write a short story about a robot who learns to paint."


@pytest.fixture(scope="module")
def ours():
    return llama.Llama.from_gguf(pretrained.smollm2_gguf_path())


@pytest.fixture(scope="module")
def reference():
    transformers = pytest.importorskip("transformers")
    path = pretrained.smollm2_gguf_path()
    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=torch.float32
    )
    return model.eval()


@pytest.fixture(scope="module")
def prompt_ids():
    # SmolLM2's chat template around PROMPT; the tokenizer is tested in test_pretrained.py
    ids = [1, 9690, 198, 2683, 359, 253, 5356, 5646, 11173, 3365, 3511, 308, 34519, 28, 7018]
    ids += [411, 407, 19712, 8182, 2, 198, 1, 4093, 198, 19161, 253, 1890, 1977, 563, 253]
    ids += [8085, 617, 17542, 288, 7670, 30, 2, 198, 1, 520, 9531, 198]
    return torch.tensor([ids])


def test_smollm2_configuration(ours):
    c = ours.config
    assert (c.num_layers, c.d_model, c.num_heads, c.num_kv_heads, c.d_k) == (30, 576, 9, 3, 64)
    assert (c.d_ff, c.vocab_size, c.rope_base, c.norm_eps) == (1536, 49152, 100000.0, 1e-5)
    assert c.tie_embeddings and transformer.count_parameters(ours) == 134_515_008


def test_smollm2_logits_equal_transformers(ours, reference, prompt_ids):
    with torch.no_grad():
        got, expected = ours(prompt_ids), reference(prompt_ids).logits
    assert expected.abs().max() > 20  # logits of real size, not a degenerate model
    assert_close(got, expected, rtol=0, atol=1e-3)
    assert sum(p.numel() for p in reference.parameters()) == transformer.count_parameters(ours)


def test_smollm2_greedy_generation_equals_transformers(ours, reference, prompt_ids):
    T = prompt_ids.shape[1]
    got = generation.generate(ours, prompt_ids, 30, temperature=0)[0, T:]
    expected = reference.generate(prompt_ids, max_new_tokens=30, do_sample=False)[0, T:]
    assert len(expected) == 30 and 2 not in expected.tolist()  # no early end of turn
    assert got.tolist() == expected.tolist()


def test_smollm2_without_the_unpermutation_is_a_different_model(ours, prompt_ids):
    # llama.cpp's row order with rotate-half RoPE: the trap the loader avoids
    attn = ours.layers[0].self_attn
    saved = attn.w_q.weight.data.clone(), attn.w_k.weight.data.clone()
    ids = prompt_ids[:, :12]
    with torch.no_grad():
        right = ours(ids)
        try:
            for layer in ours.layers:
                a = layer.self_attn
                a.w_q.weight.data = llama.permute_rows(a.w_q.weight.data, a.num_heads)
                a.w_k.weight.data = llama.permute_rows(a.w_k.weight.data, a.num_kv_heads)
            wrong = ours(ids)
        finally:
            for layer in ours.layers:
                a = layer.self_attn
                a.w_q.weight.data = llama.unpermute_rows(a.w_q.weight.data, a.num_heads)
                a.w_k.weight.data = llama.unpermute_rows(a.w_k.weight.data, a.num_kv_heads)
    assert (wrong - right).abs().max() > 5
    assert torch.equal(attn.w_q.weight, saved[0]) and torch.equal(attn.w_k.weight, saved[1])


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"tie_embeddings": "False"}, TypeError, "tie_embeddings must be a bool"),
        ({"rope_base": float("inf")}, ValueError, "rope_base must be a finite number"),
        ({"norm_eps": -1e-5}, ValueError, "norm_eps must be positive"),
    ],
)
def test_config_refuses_settings_that_would_be_silently_wrong(changes, error, message):
    with pytest.raises(error, match=message):
        dataclasses.replace(TINY, **changes)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_a_half_precision_llama_reads_a_valid_input(dtype):
    model = _random_model().to(dtype)
    ids = torch.randint(0, TINY.vocab_size, (2, 5))
    with torch.no_grad():
        logits = model(ids)
    assert logits.dtype == dtype and torch.isfinite(logits).all()
    assert_close(logits.float(), _random_model()(ids).detach(), atol=0.2, rtol=0.05)


def test_an_empty_batch_gives_empty_logits():
    model = _random_model()
    assert model(torch.zeros(0, 4, dtype=torch.long)).shape == (0, 4, TINY.vocab_size)


def test_the_block_is_the_books_encoder_layer_with_llama_parts():
    layer = _random_model().layers[0]
    assert isinstance(layer, transformer.EncoderLayer) and layer.norm_first
    assert isinstance(layer.norm1, llama.RMSNorm) and isinstance(layer.ff, llama.SwiGLU)
    assert layer.self_attn.num_kv_heads == TINY.num_kv_heads
    assert [m.self_attn.layer_idx for m in _random_model().layers] == [0, 1]


class _FakeField:
    def __init__(self, value):
        self.value, self.data = value, [0] * 7

    def contents(self):
        return self.value


class _FakeReader:
    def __init__(self, tokens=True, extra=()):
        values = {
            "general.architecture": "llama",
            "llama.embedding_length": 8,
            "llama.block_count": 1,
            "llama.attention.head_count": 2,
            "llama.attention.head_count_kv": 1,
            "llama.feed_forward_length": 16,
            "llama.context_length": 32,
            "llama.rope.freq_base": 10000.0,
            "llama.attention.layer_norm_rms_epsilon": 1e-5,
        }
        self.fields = {k: _FakeField(v) for k, v in values.items()}
        if tokens:
            self.fields["tokenizer.ggml.tokens"] = _FakeField(None)
        self.tensors = [type("T", (), {"name": n})() for n in ("token_embd.weight", *extra)]


def test_gguf_without_a_token_list_is_a_clear_error():
    with pytest.raises(ValueError, match="no token list"):
        llama.config_from_gguf(_FakeReader(tokens=False))
    assert llama.config_from_gguf(_FakeReader()).vocab_size == 7


def test_gguf_with_scaled_rope_frequencies_is_a_clear_error():
    with pytest.raises(ValueError, match="rope_freqs.weight.*scaled-RoPE"):
        llama._gguf_name_to_ours("rope_freqs.weight")
    assert llama._gguf_name_to_ours("blk.3.attn_q.weight") == "layers.3.self_attn.w_q.weight"
    with pytest.raises(ValueError, match="unknown GGUF tensor"):
        llama._gguf_name_to_ours("blk.3.attn_q")


# --- A stored reference: transformers' logits for three prompts (chapter 14 reads it) ---------

FIXTURE = Path(__file__).parents[1] / "src" / "attention_book" / "smollm2_reference.npz"
#: Chapter 14's three inputs: a chat prompt, a plain sentence and a line of code.
FIXTURE_TEXTS = (
    "What is the capital of France?",
    "The cat sat on the mat because it was tired.",
    "def square(x):\n    return",
)
FIXTURE_TOP = 16  # the largest logits kept per prompt, at the last position


def reference_logits(model, prompts: list[list[int]]) -> dict[str, np.ndarray]:
    """The last position's ``FIXTURE_TOP`` largest logits of ``model`` for each prompt.

    ``model`` maps ids (1, T) to logits (1, T, V) (the book's Llama) or to an output with a
    ``.logits`` attribute (transformers). Returns the arrays stored in ``FIXTURE``.
    """
    arrays = {}
    for i, ids in enumerate(prompts):
        with torch.no_grad():
            out = model(torch.tensor([ids]))
        last = getattr(out, "logits", out)[0, -1]  # (V,)
        top = last.topk(FIXTURE_TOP)
        arrays[f"ids_{i}"] = np.array(ids, dtype=np.int64)
        arrays[f"top_ids_{i}"] = top.indices.numpy().astype(np.int64)
        arrays[f"top_logits_{i}"] = top.values.numpy().astype(np.float32)
    return arrays


def fixture_prompts() -> list[list[int]]:
    stored = np.load(FIXTURE)
    return [stored[f"ids_{i}"].tolist() for i in range(len(FIXTURE_TEXTS))]


def test_the_stored_reference_is_what_transformers_computes(reference):
    stored = np.load(FIXTURE)
    fresh = reference_logits(reference, fixture_prompts())
    assert set(stored.files) == set(fresh)
    for name, array in fresh.items():
        if name.startswith("top_logits"):
            np.testing.assert_allclose(stored[name], array, rtol=0, atol=1e-3)
        else:
            np.testing.assert_array_equal(stored[name], array)


def test_the_book_model_matches_the_stored_reference(ours):
    stored = np.load(FIXTURE)
    prompts = fixture_prompts()
    for i, ids in enumerate(prompts):
        with torch.no_grad():
            last = ours(torch.tensor([ids]))[0, -1]  # (V,)
        top_ids = torch.from_numpy(stored[f"top_ids_{i}"])
        assert_close(last[top_ids], torch.from_numpy(stored[f"top_logits_{i}"]), rtol=0, atol=1e-3)
        assert last.argmax().item() == top_ids[0].item()


if __name__ == "__main__":  # python tests/test_llama.py writes the fixture afresh
    import transformers

    _path = pretrained.smollm2_gguf_path()
    _tokenizer = pretrained.load_smollm2()[1]
    _prompts = [_tokenizer.chat_ids(FIXTURE_TEXTS[0])]
    _prompts += [_tokenizer.encode(t) for t in FIXTURE_TEXTS[1:]]
    _model = transformers.AutoModelForCausalLM.from_pretrained(
        str(_path.parent), gguf_file=_path.name, dtype=torch.float32
    ).eval()
    np.savez(FIXTURE, **reference_logits(_model, _prompts))
    print(f"wrote {FIXTURE} ({FIXTURE.stat().st_size:,} bytes)")
