"""Tests of the decoder-only model: causality, the key-value cache, tying, training, bad input."""

import dataclasses
import math

import pytest
import torch

from attention_book import attention, dates, generation, gpt, train, transformer

CONFIG = gpt.GPTConfig(vocab_size=13, d_model=32, num_heads=4, num_layers=3, d_ff=64, max_len=48)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return gpt.GPT(CONFIG).eval()


def test_logits_shape_and_weight_tying(model):
    ids = torch.randint(0, 13, (2, 7))
    assert model(ids).shape == (2, 7, 13)
    assert model.lm_head.weight is model.embed.weight
    shared = CONFIG.vocab_size * CONFIG.d_model
    untied = sum(p.numel() for m in (model.embed, model.lm_head) for p in m.parameters())
    assert (
        transformer.count_parameters(model)
        == sum(transformer.count_parameters(m) for m in (*model.layers, model.norm)) + shared
    )
    assert untied == 2 * shared  # counted once in the model, since it is one tensor


def test_block_is_the_pre_ln_encoder_layer_with_a_causal_mask(model):
    ids = torch.randint(0, 13, (2, 9))
    x = model.embed(ids) * math.sqrt(CONFIG.d_model) + model.pe[:9]  # (2, 9, D)
    for layer in model.layers:
        assert isinstance(layer, transformer.EncoderLayer) and layer.norm_first
        x, _ = layer(x, attention.causal_mask(9))
    torch.testing.assert_close(model(ids), model.lm_head(model.norm(x)))


def test_causality_changing_future_tokens_leaves_earlier_logits_unchanged(model):
    torch.manual_seed(1)
    ids = torch.randint(0, 13, (3, 12))
    changed = ids.clone()
    changed[:, 7:] = torch.randint(0, 13, (3, 5))
    torch.testing.assert_close(model(ids)[:, :7], model(changed)[:, :7])
    assert not torch.allclose(model(ids)[:, 7:], model(changed)[:, 7:])


def test_cached_forward_equals_forward_without_cache(model):
    ids = torch.randint(0, 13, (2, 15))
    full = model(ids)  # (2, 15, V)
    cache = generation.KVCache(CONFIG.num_layers)
    parts = [model(ids[:, :6], cache=cache)]  # a prompt of 6, then one token at a time
    for t in range(6, 15):
        parts.append(model(ids[:, t : t + 1], cache=cache))
    torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-5, rtol=1e-5)
    assert cache.length == 15
    assert cache.memory_bytes() == 2 * CONFIG.num_layers * CONFIG.d_model * 15 * 2 * 4


def test_greedy_with_and_without_cache_agree_for_unequal_finishing_times(model):
    torch.manual_seed(2)
    prompts = torch.randint(0, 13, (8, 3))
    free = generation.generate(model, prompts, 30, temperature=0)[:, 3:]  # (8, 30), no eos

    def finishing_times(token):  # the step at which each row first produces token (30: never)
        hit = free == token
        return {int(h.int().argmax()) if h.any() else 30 for h in hit}

    eos = max(range(13), key=lambda token: len(finishing_times(token)))
    assert len(finishing_times(eos)) >= 3  # rows stop at three or more different steps
    with_cache = generation.generate(model, prompts, 30, temperature=0, eos_id=eos)
    without = generation.generate(model, prompts, 30, temperature=0, eos_id=eos, use_cache=False)
    assert torch.equal(with_cache, without)


def test_seeded_sampling_is_reproducible_with_the_real_model(model):
    prompt = torch.randint(0, 13, (3, 2))
    draws = [
        generation.generate(
            model, prompt, 20, top_p=0.9, generator=torch.Generator().manual_seed(5)
        )
        for _ in range(2)
    ]
    assert torch.equal(draws[0], draws[1])


def test_generate_many_matches_generate_per_prompt(model):
    prompts = [[3, 4, 5], [6], [7, 8, 9], [10, 11]]
    outs = generation.generate_many(model, prompts, 5, temperature=0, batch_size=1)
    for prompt, out in zip(prompts, outs, strict=True):
        one = generation.generate(model, torch.tensor([prompt]), 5, temperature=0)
        assert out == one[0, len(prompt) :].tolist()
    with pytest.raises(ValueError, match="non-empty"):
        generation.generate_many(model, [], 5)


def test_attention_weights_are_causal_and_sum_to_one(model):
    weights = model.attention_weights(torch.randint(0, 13, (2, 8)))
    assert len(weights) == CONFIG.num_layers and weights[0].shape == (2, 4, 8, 8)
    torch.testing.assert_close(weights[-1].sum(-1), torch.ones(2, 4, 8))
    assert (weights[0].triu(1) == 0).all()
    assert not any(hasattr(layer, "self_weights") for layer in model.layers)  # nothing stored
    # With a cache the new queries read the cached keys too: (B, H, T, S) with S = 8 + 2.
    cache = generation.KVCache(CONFIG.num_layers)
    model(torch.randint(0, 13, (2, 8)), cache=cache)
    cached = model.attention_weights(torch.randint(0, 13, (2, 2)), cache=cache)
    assert cached[0].shape == (2, 4, 2, 10) and (cached[0][:, :, 0, 9] == 0).all()


def test_tied_embedding_starts_at_the_output_layer_scale():
    torch.manual_seed(0)
    big = gpt.GPT(dataclasses.replace(CONFIG, vocab_size=4000))
    std = big.embed.weight.std().item()
    assert math.isclose(std, CONFIG.d_model**-0.5, rel_tol=0.05)
    scaled = big.embed.weight * math.sqrt(CONFIG.d_model)  # what the blocks receive
    assert math.isclose(scaled.std().item(), 1.0, rel_tol=0.05)


def test_tiny_overfit_on_dates():
    torch.manual_seed(0)
    examples = dates.sample(8, "train", seed=3)
    inputs, labels = dates.encode_lm_examples(examples)
    config = gpt.GPTConfig(len(dates.SOURCE_VOCAB), 32, 2, 2, 64, dates.LM_MAX_LEN)
    loss_fn = train.batch_loss_fn(inputs, labels, 8, task="lm")
    model = gpt.GPT(config)
    history = train.fit(model, loss_fn, 100, lr=1e-2, progress=False)
    assert history.final_loss < 0.05
    prompts = [dates.lm_sequence(e)[: len(e.source) + 1] for e in examples]
    outs = generation.generate_many(model, prompts, 11, temperature=0, eos_id=dates.EOS_ID)
    assert [dates.SOURCE_VOCAB.decode(o) for o in outs] == [e.target for e in examples]


def test_lm_examples_put_the_loss_on_the_target_only():
    examples = dates.sample(3, "train", seed=1)
    inputs, labels = dates.encode_lm_examples(examples)
    e = examples[0]
    S = len(e.source)
    assert dates.lm_sequence(e)[S] == dates.BOS_ID and len(dates.lm_sequence(e)) == S + 12
    assert (labels[0, :S] == dates.PAD_ID).all()  # no loss before <bos>
    assert dates.SOURCE_VOCAB.decode(labels[0, S:]) == e.target
    _, all_labels = dates.encode_lm_examples(examples, loss_on_source=True)
    assert torch.equal(all_labels[0, : S - 1], inputs[0, 1:S])
    assert torch.equal(all_labels[0, S:], labels[0, S:])
    assert inputs.shape[1] <= dates.LM_MAX_LEN - 1
    with pytest.raises(TypeError, match="loss_on_source"):
        dates.encode_lm_examples(examples, loss_on_source=1)
    with pytest.raises(ValueError, match="empty"):
        dates.encode_lm_examples([])


def test_recipe_gpt_has_about_the_encoder_decoder_parameter_count():
    n_gpt = transformer.count_parameters(gpt.GPT(gpt.dates_config()))
    config = transformer.dates_config()
    n_ed = transformer.count_parameters(transformer.Transformer(config))
    assert (n_gpt, n_ed) == (171_200, 172_942)  # 1.0% fewer


def test_lm_batch_loss_fn_trims_padding_and_validates():
    inputs = torch.tensor([[3, 4, 0, 0], [5, 6, 7, 0]])
    labels = torch.tensor([[4, 2, 0, 0], [6, 7, 2, 0]])
    seen = []

    def fake(ids):
        seen.append(ids.shape)
        return torch.zeros(*ids.shape, 13, requires_grad=True)

    train.batch_loss_fn(inputs, labels, 2, task="lm")(fake, 0)
    assert seen == [(2, 3)]
    with pytest.raises(ValueError, match="differ"):
        train.batch_loss_fn(inputs, labels[:, :3], 2, task="lm")
    with pytest.raises(ValueError, match="exceeds"):
        train.batch_loss_fn(inputs, labels, 3, task="lm")
    with pytest.raises(TypeError, match="LongTensor"):
        train.batch_loss_fn(inputs.float(), labels, 2, task="lm")
    with pytest.raises(ValueError, match="task must be one of"):
        train.batch_loss_fn(inputs, labels, 2, task="gpt")


def test_lm_batch_loss_fn_keeps_every_token_of_left_padded_rows():
    inputs = torch.tensor([[0, 0, 3, 4], [5, 6, 7, 8]])  # the first row is padded on the left
    labels = torch.tensor([[0, 0, 4, 2], [6, 7, 8, 2]])
    seen = []

    def fake(ids):
        seen.append(ids.clone())
        return torch.zeros(*ids.shape, 13, requires_grad=True)

    train.batch_loss_fn(inputs, labels, 2, task="lm")(fake, 0)
    assert seen[0].shape == (2, 4) and set(seen[0][:, -1].tolist()) == {4, 8}


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"num_heads": 5}, ValueError, "divisible"),
        ({"d_model": 9, "num_heads": 3}, ValueError, "even"),
        ({"num_layers": 0}, ValueError, "num_layers"),
        ({"dropout": 1.0}, ValueError, "dropout"),
        ({"max_len": 2.5}, ValueError, "max_len"),
    ],
)
def test_config_rejects_bad_values(kwargs, error, match):
    with pytest.raises(error, match=match):
        dataclasses.replace(CONFIG, **kwargs)


def test_forward_rejects_bad_input(model):
    with pytest.raises(TypeError, match="GPTConfig"):
        gpt.GPT({"vocab_size": 13})
    with pytest.raises(TypeError, match="LongTensor"):
        model(torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"\(B, length\)"):
        model(torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="vocabulary"):
        model(torch.tensor([[1, 13]]))
    with pytest.raises(ValueError, match="max_len=48"):
        model(torch.zeros(1, 49, dtype=torch.long))
    cache = generation.KVCache(CONFIG.num_layers)
    model(torch.zeros(1, 40, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match="40 cached positions"):
        model(torch.zeros(1, 9, dtype=torch.long), cache=cache)
    with pytest.raises(TypeError, match="KVCache"):
        model(torch.zeros(1, 2, dtype=torch.long), cache=object())
    with pytest.raises(ValueError, match="max_len"):
        generation.generate(model, torch.zeros(1, 40, dtype=torch.long), 9)


def test_a_cache_built_for_fewer_layers_is_a_clear_error(model):
    with pytest.raises(ValueError, match=r"cache holds 2 layers but the model has 3.*KVCache\(3\)"):
        model(torch.zeros(1, 2, dtype=torch.long), cache=generation.KVCache(2))


def test_an_empty_batch_gives_empty_logits(model):
    assert model(torch.zeros(0, 3, dtype=torch.long)).shape == (0, 3, CONFIG.vocab_size)


def test_the_dates_gpt_takes_its_settings_from_the_recipe_and_its_own_depth():
    recipe = dataclasses.replace(dates.RECIPE, d_model=32)
    config = gpt.dates_config(recipe)
    assert (config.d_model, config.num_layers) == (32, gpt.DATES_NUM_LAYERS)
    assert config.max_len == dates.LM_MAX_LEN and config.vocab_size == len(dates.SOURCE_VOCAB)
    with pytest.raises(TypeError, match="dates.Recipe"):
        gpt.dates_config({"d_model": 32})
