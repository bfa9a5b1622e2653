"""Tests of the serving caches and speculative decoding, on tiny LLaMA-style models."""

import dataclasses

import pytest
import torch

from attention_book import generation, gpt, llama, measure, positional, serving

CONFIG = llama.LlamaConfig(
    vocab_size=8, d_model=16, num_layers=3, num_heads=4, num_kv_heads=2, d_ff=32, max_len=64
)


def tiny(seed: int, config: llama.LlamaConfig = CONFIG) -> llama.Llama:
    torch.manual_seed(seed)
    model = llama.Llama(config).double().eval()
    with torch.no_grad():  # larger weights than the default init: peaked, varied predictions
        for p in model.parameters():
            p.mul_(3.0) if p.dim() > 1 else None
    return model


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run fastest on one thread (and far slower on two when the CPU is busy)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def target():
    return tiny(0)


@pytest.fixture(scope="module")
def other():
    return tiny(1)


PROMPT = torch.tensor([[1, 2, 3, 1, 2]])


# --- paged cache --------------------------------------------------------------------------------


@pytest.mark.parametrize("block_size", [1, 3, 16])
def test_paged_cache_gives_the_contiguous_caches_tokens(target, block_size):
    prompts = torch.tensor([[1, 2, 3, 4, 5], [5, 4, 3, 2, 1]])
    want = generation.generate(target, prompts, 12, temperature=0)
    cache = serving.PagedKVCache(CONFIG.num_layers, block_size=block_size)
    got = generation.generate(target, prompts, 12, temperature=0, cache=cache)
    assert torch.equal(got, want)
    assert cache.length == 5 + 11  # the last token is never read back
    blocks = -(-16 // block_size)
    assert [len(t) for t in cache.block_tables] == [blocks, blocks]


def test_paged_cache_returns_what_was_written_and_counts_whole_blocks():
    cache = serving.PagedKVCache(2, block_size=4)
    k, v = torch.randn(2, 3, 6, 5), torch.randn(2, 3, 6, 5)
    for layer in range(2):
        got_k, got_v = cache.update(layer, k[:, :, :5], v[:, :, :5])
    got_k, got_v = cache.update(0, k[:, :, 5:], v[:, :, 5:])
    assert torch.equal(got_k, k) and torch.equal(got_v, v)
    got_k, got_v = cache.update(1, k[:, :, 5:], v[:, :, 5:])
    assert torch.equal(got_k, k)
    # 2 sequences x 2 blocks, each block 2 layers x (k, v) x 3 heads x 4 positions x 5 x 4 bytes
    assert cache.memory_bytes() == 2 * 2 * (2 * 2 * 3 * 4 * 5 * 4)


def test_paged_cache_frees_blocks_for_the_next_sequence():
    first = serving.PagedKVCache(1, block_size=4, num_blocks=3)
    second = serving.PagedKVCache(1, pool=first.pool)
    first.update(0, torch.randn(1, 1, 9, 2), torch.randn(1, 1, 9, 2))  # 3 blocks: the pool
    assert first.pool.blocks_in_use == 3
    with pytest.raises(ValueError, match="pool of 3 blocks of 4 positions is full"):
        second.update(0, torch.randn(1, 1, 1, 2), torch.randn(1, 1, 1, 2))
    first.free()
    assert first.pool.blocks_in_use == 0 and first.length == 0
    k = torch.randn(1, 1, 2, 2)
    got, _ = second.update(0, k, k)
    assert torch.equal(got, k) and second.pool.blocks_in_use == 1


def test_paged_cache_rejects_bad_input():
    cache = serving.PagedKVCache(2)
    with pytest.raises(ValueError, match="layer 2 is outside this cache of 2 layers"):
        cache.update(2, torch.zeros(1, 1, 1, 2), torch.zeros(1, 1, 1, 2))
    with pytest.raises(ValueError, match="k and v must be"):
        cache.update(0, torch.zeros(1, 1, 2), torch.zeros(1, 1, 2))
    cache.update(0, torch.zeros(1, 1, 1, 2), torch.zeros(1, 1, 1, 2))
    with pytest.raises(ValueError, match="holds 1 sequences, got B = 2"):
        cache.update(1, torch.zeros(2, 1, 1, 2), torch.zeros(2, 1, 1, 2))
    with pytest.raises(ValueError, match="block_size"):
        serving.PagedKVCache(2, block_size=0)
    with pytest.raises(ValueError, match="BlockPool of 3 layers"):
        serving.PagedKVCache(3, pool=cache.pool)


def test_generate_refuses_a_used_cache_or_a_cache_without_caching(target):
    cache = serving.PagedKVCache(CONFIG.num_layers)
    generation.generate(target, PROMPT, 2, temperature=0, cache=cache)
    with pytest.raises(ValueError, match="must be fresh"):
        generation.generate(target, PROMPT, 2, cache=cache)
    with pytest.raises(ValueError, match="use_cache=False"):
        generation.generate(target, PROMPT, 2, use_cache=False, cache=cache)
    with pytest.raises(ValueError, match="holds 2 layers but the model has 3"):
        generation.generate(target, PROMPT, 2, cache=serving.PagedKVCache(2))


# --- sink cache ---------------------------------------------------------------------------------


def test_sink_cache_keeps_the_sinks_and_the_window():
    cache = serving.SinkCache(1, num_sink=2, window=3)
    k = torch.arange(8.0).view(1, 1, 8, 1)
    got, _ = cache.update(0, k[:, :, :6], k[:, :, :6])
    assert got.flatten().tolist() == [0, 1, 2, 3, 4, 5]  # this update's queries see all
    assert cache.keys[0].flatten().tolist() == [0, 1, 3, 4, 5] and cache.length == 5
    got, _ = cache.update(0, k[:, :, 6:], k[:, :, 6:])
    assert got.flatten().tolist() == [0, 1, 3, 4, 5, 6, 7]
    assert cache.keys[0].flatten().tolist() == [0, 1, 5, 6, 7] and cache.seen == 8


def test_sink_cache_rotates_keys_by_their_place_in_the_cache():
    """Step by step with a sink cache equals attention over the kept tokens placed at 0, 1, ...

    With one layer the kept keys and values depend on their own tokens only (deeper layers'
    also on evicted ones), so a fresh pass over the kept tokens must agree exactly.
    """
    target = tiny(3, dataclasses.replace(CONFIG, num_layers=1))
    tokens = torch.tensor([[3, 1, 4, 1, 5, 2, 6, 5, 3, 5]])
    cache = serving.SinkCache(1, num_sink=2, window=4)
    for t in range(tokens.shape[1]):
        logits = target(tokens[:, t : t + 1], cache=cache)[0, -1]
    kept = torch.cat([tokens[:, :2], tokens[:, -5:]], dim=1)  # sinks + window + the new one
    want = target(kept)[0, -1]  # a fresh pass numbers the kept tokens 0 .. 6
    torch.testing.assert_close(logits, want)
    assert cache.length == 6 and cache.seen == 10


def test_rotating_in_the_cache_equals_rotating_before_it_while_nothing_is_evicted(target):
    tokens = torch.tensor([[3, 1, 4, 1, 5, 2]])
    want = target(tokens)
    cache = serving.SinkCache(CONFIG.num_layers, num_sink=1, window=8)
    got = torch.cat([target(tokens[:, :4], cache=cache), target(tokens[:, 4:], cache=cache)], 1)
    torch.testing.assert_close(got, want)
    # the stored keys are unrotated: rotating them by 0 .. 5 gives the model's rotated keys
    stored = cache.keys[0]
    cos, sin = positional.rope_cos_sin(torch.arange(6), CONFIG.d_k, CONFIG.rope_base)
    plain = generation.KVCache(CONFIG.num_layers)
    target(tokens, cache=plain)
    torch.testing.assert_close(positional.rotate(stored, cos.double(), sin.double()), plain.keys[0])


def test_generate_streams_past_max_len_with_a_sink_cache():
    """A sink cache keeps positions below its size, so generate may run past max_len."""
    short = tiny(4, dataclasses.replace(CONFIG, max_len=16))
    prompt = torch.tensor([[3, 1, 4]])
    cache = serving.SinkCache(CONFIG.num_layers, num_sink=2, window=6)
    out = generation.generate(short, prompt, 48, temperature=0, cache=cache)  # 3 x max_len
    assert out.shape == (1, 51) and cache.seen == 50 and cache.length == 8
    step_cache = serving.SinkCache(CONFIG.num_layers, num_sink=2, window=6)
    ids = prompt
    for _ in range(48):  # the same greedy tokens, fed by hand
        logits = short(ids if step_cache.length == 0 else ids[:, -1:], cache=step_cache)
        ids = torch.cat([ids, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(out, ids)
    with pytest.raises(ValueError, match="exceeds the model's max_len=16"):  # the prompt must fit
        generation.generate(short, torch.zeros(1, 17, dtype=torch.long), 1, cache=cache)
    with pytest.raises(ValueError, match="exceeds the model's max_len=16"):  # a plain cache grows
        generation.generate(short, prompt, 14, cache=generation.KVCache(CONFIG.num_layers))
    too_big = serving.SinkCache(CONFIG.num_layers, num_sink=4, window=12)  # 16 + 1 > 16
    with pytest.raises(ValueError, match="holds up to 16 positions"):  # refused up front
        generation.generate(short, prompt, 48, cache=too_big)
    assert too_big.length == 0 and too_big.capacity == 16
    out = generation.generate(short, prompt, 12, temperature=0, cache=too_big)  # never full
    assert out.shape == (1, 15)


def test_generate_needs_the_capacity_of_a_cache_that_rotates_keys():
    """A rotating cache without a capacity cannot be checked against max_len: refused."""

    class NoCapacity(serving.SinkCache):
        capacity = None

    model = tiny(4)
    with pytest.raises(TypeError, match="must give its capacity"):
        generation.generate(model, PROMPT, 2, cache=NoCapacity(CONFIG.num_layers))


def test_a_model_with_absolute_positions_refuses_the_sink_cache():
    config = gpt.GPTConfig(vocab_size=8, d_model=8, num_heads=2, num_layers=2, d_ff=16, max_len=32)
    model = gpt.GPT(config).eval()
    with pytest.raises(ValueError, match="rotary positions"):
        model(PROMPT, cache=serving.SinkCache(2, num_sink=2, window=6))
    model(PROMPT, cache=generation.KVCache(2))  # the plain cache still works


def test_a_shared_pool_refuses_other_sizes():
    pool = serving.BlockPool(2, block_size=4, num_blocks=8)
    assert serving.PagedKVCache(2, pool=pool).block_size == 4
    assert serving.PagedKVCache(2, 4, 8, pool=pool).pool is pool  # the same sizes
    with pytest.raises(ValueError, match="block_size=8"):
        serving.PagedKVCache(2, block_size=8, pool=pool)
    with pytest.raises(ValueError, match="block_size=16"):  # the default's value, given
        serving.PagedKVCache(2, block_size=16, pool=pool)
    assert serving.PagedKVCache(2).block_size == 16  # the default without a pool
    with pytest.raises(ValueError, match="num_blocks=3"):
        serving.PagedKVCache(2, num_blocks=3, pool=pool)


def test_sink_cache_rejects_bad_sizes():
    with pytest.raises(ValueError, match="window"):
        serving.SinkCache(2, window=0)
    with pytest.raises(ValueError, match="num_sink"):
        serving.SinkCache(2, num_sink=-1)


# --- quantised cache ----------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [8, 4])
def test_quantized_cache_error_is_within_half_a_step(bits):
    cache = serving.QuantizedKVCache(1, bits=bits)
    k, v = torch.randn(2, 3, 7, 16), torch.randn(2, 3, 7, 16) * 10
    got_k, got_v = cache.update(0, k, v)
    for x, got in ((k, got_k), (v, got_v)):
        step = x.abs().amax(-1, keepdim=True) / (2 ** (bits - 1) - 1)  # (2, 3, 7, 1)
        assert ((x - got).abs() <= step / 2 + 1e-6).all()
    # int8 numbers and one float32 scale per head and position, for keys and values
    assert cache.memory_bytes() == 2 * (2 * 3 * 7 * 16 + 2 * 3 * 7 * 4)


def test_quantized_cache_keeps_greedy_text_close(target):
    want = generation.generate(target, PROMPT, 10, temperature=0)
    cache = serving.QuantizedKVCache(CONFIG.num_layers)
    got = generation.generate(target, PROMPT, 10, temperature=0, cache=cache)
    assert torch.equal(got, want)


def test_quantized_cache_rejects_bad_bits():
    with pytest.raises(ValueError, match="bits must be between 2 and 8"):
        serving.QuantizedKVCache(1, bits=16)


# --- speculative decoding -----------------------------------------------------------------------


def test_kv_cache_crop_forgets_the_last_positions():
    cache = generation.KVCache(1)
    k = torch.randn(1, 2, 5, 3)
    cache.update(0, k, k)
    cache.crop(3)
    assert cache.length == 3 and torch.equal(cache.keys[0], k[:, :, :3])
    with pytest.raises(ValueError, match="cannot crop a cache of 3 positions to 4"):
        cache.crop(4)


def test_early_exit_shares_the_first_layers_weights(target):
    draft = serving.early_exit(target, 2)
    assert draft.config.num_layers == 2 and len(draft.layers) == 2
    assert len(target.layers) == 3  # the model is unchanged
    assert draft.layers[1] is target.layers[1] and draft.norm is target.norm
    assert draft.embed.weight.data_ptr() == target.embed.weight.data_ptr()
    with pytest.raises(ValueError, match="num_layers=4 exceeds the model's 3 layers"):
        serving.early_exit(target, 4)


@pytest.mark.parametrize("num_draft", [1, 3, 5])
@pytest.mark.parametrize("draft", ["early_exit", "other", "prompt_lookup"])
def test_greedy_speculation_gives_the_targets_greedy_tokens(target, other, draft, num_draft):
    model = {"early_exit": serving.early_exit(target, 1), "other": other}.get(draft, draft)
    want = generation.generate(target, PROMPT, 20, temperature=0)
    got, stats = serving.speculative_generate(
        target, model, PROMPT, 20, num_draft=num_draft, temperature=0
    )
    assert torch.equal(got, want)
    assert 0 <= stats["accepted"] <= stats["proposed"]
    assert stats["rounds"] == 20 - stats["accepted"]  # each round adds accepted + 1 tokens


def test_greedy_speculation_with_itself_accepts_everything(target):
    _, stats = serving.speculative_generate(target, target, PROMPT, 13, num_draft=4, temperature=0)
    assert stats == {"proposed": 10, "accepted": 10, "rounds": 3}  # 4 + 1, 4 + 1, 2 + 1


def test_speculation_counts_no_draft_after_eos(target):
    prompt = torch.tensor([[3]])
    want = generation.generate(target, prompt, 13, temperature=0)
    assert want[0, 1:4].tolist() == [0, 7, 7]  # <eos> = 7 is the second new token
    got, stats = serving.speculative_generate(
        target, target, prompt, 13, num_draft=4, temperature=0, eos_id=7
    )
    assert torch.equal(got, want[:, :3])
    # one round: 4 drafts accepted, but only 2 tokens (up to <eos>) are kept
    assert stats == {"proposed": 4, "accepted": 2, "rounds": 1}


def test_speculation_stops_at_eos(target):
    want = generation.generate(target, PROMPT, 20, temperature=0)
    eos = int(want[0, 8])
    got, _ = serving.speculative_generate(target, "prompt_lookup", PROMPT, 20, temperature=0,
                                          eos_id=eos)  # fmt: skip
    first = PROMPT.shape[1] + want[0, PROMPT.shape[1] :].tolist().index(eos)
    assert torch.equal(got, want[:, : first + 1])


def test_the_accept_reject_rule_gives_the_targets_distribution_exactly():
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        p = torch.softmax(torch.randn(6, generator=g, dtype=torch.float64) * 2, -1)
        q = torch.softmax(torch.randn(6, generator=g, dtype=torch.float64) * 2, -1)
        torch.testing.assert_close(serving.speculative_distribution(p, q), p)
    q = torch.tensor([0.0, 1.0, 0.0, 0.0, 0.0, 0.0], dtype=torch.float64)  # prompt lookup
    torch.testing.assert_close(serving.speculative_distribution(p, q), p)


def chi_square(counts: torch.Tensor, p: torch.Tensor) -> float:
    kept = p > 0
    assert counts[~kept].sum() == 0  # a token of probability 0 is never emitted
    expected = p[kept].double() * counts.sum()
    return float(((counts[kept] - expected) ** 2 / expected).sum())


@pytest.mark.parametrize("deterministic_draft", [False, True])
def test_the_rules_first_token_follows_the_target_over_many_draws(deterministic_draft):
    """Chi-square goodness of fit of 5,000 seeded rounds of the rule, on a vocabulary of 6."""
    g = torch.Generator().manual_seed(0)
    p = torch.softmax(torch.randn(2, 6, generator=g, dtype=torch.float64), -1)  # (k + 1, V)
    q = torch.softmax(torch.randn(1, 6, generator=g, dtype=torch.float64) * 2, -1)  # (k, V)
    counts = torch.zeros(6, dtype=torch.float64)
    for _ in range(5_000):
        if deterministic_draft:  # a prompt-lookup draft: always token 2, q one-hot
            out = serving.accept_reject(p, None, [2], generator=g)
        else:
            x = int(torch.multinomial(q[0], 1, generator=g))
            out = serving.accept_reject(p, q, [x], generator=g)
        counts[out[0]] += 1
    # the 0.999 quantile of chi-square with 6 - 1 = 5 degrees of freedom
    assert chi_square(counts, p[0]) < 20.52


def test_sampled_first_token_follows_next_token_distribution(target, other):
    """The same fit end to end: speculative_generate's first token on a tiny model."""
    n, rules = 200, {"temperature": 1.3, "top_k": 6}
    with torch.no_grad():
        p = generation.next_token_distribution(target(PROMPT)[0, -1], **rules)  # (V,)
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(CONFIG.vocab_size, dtype=torch.float64)
    rejected = 0
    for _ in range(n):
        out, stats = serving.speculative_generate(
            target, other, PROMPT, 2, num_draft=1, generator=g, **rules
        )
        counts[out[0, PROMPT.shape[1]]] += 1
        rejected += stats["proposed"] - stats["accepted"]
    assert chi_square(counts, p) < 20.52  # 6 tokens kept by top_k: 5 degrees of freedom
    assert rejected > n // 10  # the rejection branch ran often


def test_accept_reject_rejects_a_p_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"p must be \(k \+ 1, V\) for k = 2"):
        serving.accept_reject(torch.ones(2, 4) / 4, None, [1, 2])


def test_speculative_generate_rejects_bad_input(target):
    small = dataclasses.replace(CONFIG, vocab_size=7)
    with pytest.raises(ValueError, match=r"draft's vocabulary \(7\) differs from the target's \(8"):
        serving.speculative_generate(target, tiny(2, small), PROMPT, 3)
    with pytest.raises(ValueError, match="num_draft must be a positive int"):
        serving.speculative_generate(target, "prompt_lookup", PROMPT, 3, num_draft=0)
    with pytest.raises(ValueError, match=r"one sequence, ids of shape \(1, T\)"):
        serving.speculative_generate(target, "prompt_lookup", PROMPT.expand(2, 5), 3)
    with pytest.raises(ValueError, match="'prompt_lookup'"):
        serving.speculative_generate(target, "ngram", PROMPT, 3)
    with pytest.raises(ValueError, match="exceeds the model's max_len=64"):
        serving.speculative_generate(target, "prompt_lookup", PROMPT, 60)
    with pytest.raises(ValueError, match="temperature"):
        serving.speculative_generate(target, "prompt_lookup", PROMPT, 3, temperature=-1)


def test_prompt_lookup_copies_what_followed_the_last_match():
    assert serving.prompt_lookup([5, 6, 7, 8, 5, 6], 3) == [7, 8, 5]
    assert serving.prompt_lookup([1, 2, 3], 2) == []
    assert serving.prompt_lookup([1, 2, 1], 4) == [2, 1]
    assert serving.acceptance_rate({"proposed": 0, "accepted": 0}) == 0.0
    assert serving.acceptance_rate({"proposed": 8, "accepted": 6}) == 0.75


def test_memory_bandwidth_is_a_plausible_positive_rate():
    gbps = measure.memory_bandwidth(num_bytes=2**24, repeat=3)
    assert 0.1 < gbps < 10_000
    with pytest.raises(ValueError, match="num_bytes"):
        measure.memory_bandwidth(num_bytes=0)


def test_the_streaming_text_ships_with_the_package():
    from importlib import resources

    text = (resources.files("attention_book") / "texts" / "streaming.md").read_text()
    assert text.startswith("# Attention, Executed") and len(text.split()) > 150
