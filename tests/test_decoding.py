"""Tests for attention_book.decoding: greedy decoding, beam search, exact match."""

import itertools
import math

import numpy as np
import pytest
import torch
from seq2seq_stand_ins import (
    BOS,
    EOS,
    PAD,
    MarkovModel,
    RecordingMarkov,
    padded_anywhere,
    random_src,
    small_transformer,
)
from torch import nn

from attention_book import dates, decoding, train, transformer

# ----------------------------------------------------------------------------- decoding


def test_greedy_decode_takes_the_argmax_and_pads_after_eos():
    model = MarkovModel(seed=1)
    src = torch.tensor([[3, 4, 5], [5, PAD, PAD]])
    out = decoding.greedy_decode(model, src, max_len=6)
    # Recompute by hand, one sequence at a time, without batching or padding logic.
    for row, source in zip(out, src, strict=True):
        source = source[source != PAD][None]  # (1, S')
        memory, mask = model.encode(source)
        prefix = [BOS]
        while len(prefix) <= 6 and prefix[-1] != EOS:
            logits = model.decode(torch.tensor([prefix]), memory, mask)[0, -1]
            prefix.append(int(logits.argmax()))
        generated = prefix[1:]
        assert row[: len(generated)].tolist() == generated
        assert (row[len(generated) :] == PAD).all()


def test_greedy_decode_stops_when_every_sequence_is_finished():
    model = small_transformer(eos_bias=50.0)  # <eos> always wins
    out = decoding.greedy_decode(model, random_src(), max_len=10)
    assert out.shape == (6, 1) and (out == EOS).all()
    out = decoding.greedy_decode(small_transformer(eos_bias=-50.0), random_src(), max_len=7)
    assert out.shape == (6, 7) and not (out == EOS).any()


def test_greedy_output_agrees_with_a_teacher_forced_forward():
    """Incremental decoding and one causal forward pass over the result give the same argmax."""
    model = small_transformer(seed=2, eos_bias=1.0)
    src = random_src(batch=8, seed=2)
    out = decoding.greedy_decode(model, src, max_len=8)  # (B, L)
    decoder_input = torch.cat([torch.full_like(out[:, :1], BOS), out[:, :-1]], 1)  # (B, L)
    logits = model(src, decoder_input)  # (B, L, V)
    is_eos = (out == EOS).long()
    live = (is_eos.cumsum(1) - is_eos) == 0  # up to and including the first <eos>
    assert torch.equal(logits.argmax(-1)[live], out[live])


def test_beam_search_of_width_one_is_greedy():
    ended_early, tokens_seen = 0, set()
    for seed in range(8):
        model = small_transformer(seed=seed, eos_bias=1.0)
        src = random_src(batch=16, seed=seed)
        greedy = decoding.greedy_decode(model, src, max_len=9)
        beam, scores = decoding.beam_search(model, src, max_len=9, beam_width=1)
        assert torch.equal(beam, greedy)
        torch.testing.assert_close(scores, decoding.sequence_log_prob(model, src, greedy))
        ended_early += int(((greedy == EOS).any(1) & (greedy[:, -1] == PAD)).sum())
        tokens_seen |= set(greedy.unique().tolist())
    # The comparison covered sequences that stopped early and many different tokens.
    assert ended_early >= 10 and len(tokens_seen) >= 5


def test_beam_search_width_one_equals_greedy_on_the_markov_stand_in():
    model = MarkovModel(seed=4)
    src = torch.randint(3, 6, (32, 4), generator=torch.Generator().manual_seed(4))
    greedy = decoding.greedy_decode(model, src, max_len=5)
    beam, _ = decoding.beam_search(model, src, max_len=5, beam_width=1)
    assert torch.equal(beam, greedy)


def test_a_wide_beam_finds_the_most_probable_finished_sequence():
    """With K >= V^L nothing is pruned, so beam search is exhaustive search over the outputs
    that end with <eos> within L tokens (a cut-off output is returned only if none does)."""
    model = MarkovModel(seed=5)
    V, L = 5, 3
    src = torch.randint(3, 6, (12, 4), generator=torch.Generator().manual_seed(5))
    tokens, scores = decoding.beam_search(model, src, max_len=L, beam_width=V**L)
    every = torch.tensor(list(itertools.product(range(V), repeat=L)))  # (V^L, L)
    ends = (every == EOS).any(dim=1)  # (V^L,) the outputs that finish within L tokens
    preferred = 0
    for i in range(src.shape[0]):
        all_scores = decoding.sequence_log_prob(model, src[i : i + 1].expand(len(every), -1), every)
        assert scores[i].item() == pytest.approx(all_scores[ends].max().item(), abs=1e-5)
        assert (tokens[i] == EOS).any()
        preferred += int(all_scores[~ends].max() > all_scores[ends].max() + 1e-5)
    assert preferred >= 1  # some sources have a more probable cut-off output, not returned
    torch.testing.assert_close(scores, decoding.sequence_log_prob(model, src, tokens))


def test_a_wide_beam_returns_the_most_probable_cut_off_output_when_none_finishes():
    model = MarkovModel(seed=5)
    with torch.no_grad():
        model.transition[:, EOS] = float("-inf")  # no output can finish
    V, L = 5, 3
    src = torch.randint(3, 6, (6, 4), generator=torch.Generator().manual_seed(6))
    tokens, scores = decoding.beam_search(model, src, max_len=L, beam_width=V**L)
    every = torch.tensor(list(itertools.product(range(V), repeat=L)))  # (V^L, L)
    for i in range(src.shape[0]):
        all_scores = decoding.sequence_log_prob(model, src[i : i + 1].expand(len(every), -1), every)
        assert scores[i].item() == pytest.approx(all_scores.max().item(), abs=1e-5)
    assert not (tokens == EOS).any()


def test_beam_search_prefers_a_finished_output_to_a_more_probable_cut_off_one():
    """p(A A) = 0.81 but A A has not ended after max_len = 2 tokens; <eos> alone has p = 0.1."""
    A = 3
    probs = torch.full((5, 5), 1e-4)
    probs[BOS, [A, EOS]] = torch.tensor([0.9, 0.1])
    probs[A, [A, EOS]] = torch.tensor([0.9, 0.05])
    probs[[EOS, PAD], EOS] = 1.0
    model = MarkovModel(tgt_vocab=5)
    with torch.no_grad():
        model.transition.copy_(probs.log())
        model.src_embed.zero_()
    src = torch.tensor([[3, 4]])
    assert decoding.greedy_decode(model, src, max_len=2).tolist() == [[A, A]]
    beam, score = decoding.beam_search(model, src, max_len=2, beam_width=2)
    assert beam.tolist() == [[EOS, PAD]]
    assert math.isclose(score.exp().item(), 0.1, rel_tol=1e-3)


def test_length_penalty_can_choose_a_longer_output():
    """<eos> at once has p = 0.4 (log p = -0.92, length 1); A B <eos> has p = 0.6 x 0.8 x 0.7 =
    0.336 (log p = -1.09, length 3). Ranked by log p / length, the longer one wins (-0.36)."""
    A, B = 3, 4
    probs = torch.full((5, 5), 1e-6)
    probs[BOS, [A, EOS]] = torch.tensor([0.6, 0.4])
    probs[A, [B, EOS]] = torch.tensor([0.8, 0.2])
    probs[B, [EOS, A]] = torch.tensor([0.7, 0.3])
    probs[[EOS, PAD], EOS] = 1.0
    model = MarkovModel(tgt_vocab=5)
    with torch.no_grad():
        model.transition.copy_(probs.log())
        model.src_embed.zero_()
    src = torch.tensor([[3, 4]])
    plain, plain_score = decoding.beam_search(model, src, max_len=3, beam_width=3)
    long, long_score = decoding.beam_search(model, src, max_len=3, beam_width=3, length_penalty=1.0)
    assert plain.tolist() == [[EOS, PAD, PAD]]
    assert long.tolist() == [[A, B, EOS]]
    # The returned scores are plain log-probabilities, not divided by the length.
    assert math.isclose(plain_score.exp().item(), 0.4, rel_tol=1e-3)
    assert math.isclose(long_score.exp().item(), 0.336, rel_tol=1e-3)


def test_batched_beam_search_equals_one_source_at_a_time():
    """Batch independence: each source, padded or not, gets the result it gets on its own."""
    model = small_transformer(seed=8, eos_bias=1.0)
    src = random_src(batch=7, seed=8)
    src[3, -3:] = PAD  # a second padded source, with different padding
    tokens, scores = decoding.beam_search(model, src, max_len=8, beam_width=3)
    for i in range(src.shape[0]):
        alone = src[i][src[i] != PAD][None]  # (1, S_i) without its padding
        one, one_score = decoding.beam_search(model, alone, max_len=8, beam_width=3)
        L = one.shape[1]
        assert torch.equal(tokens[i, :L], one[0]) and (tokens[i, L:] == PAD).all()
        torch.testing.assert_close(scores[i], one_score[0])


def test_beam_search_beats_greedy_when_the_first_choice_misleads():
    """First p(A) = 0.5 > p(B) = 0.4, but then p(<eos> | A) = 0.3 and p(<eos> | B) = 0.9."""
    A, B = 3, 4
    probs = torch.full((5, 5), 1e-4)
    probs[BOS, [A, B, EOS]] = torch.tensor([0.5, 0.4, 0.1])
    probs[A, [EOS, A, B]] = torch.tensor([0.3, 0.4, 0.3])
    probs[B, [EOS, A]] = torch.tensor([0.9, 0.1])
    probs[[EOS, PAD], EOS] = 1.0
    model = MarkovModel(tgt_vocab=5)
    with torch.no_grad():
        model.transition.copy_(probs.log())
        model.src_embed.zero_()
    src = torch.tensor([[3, 4]])
    greedy = decoding.greedy_decode(model, src, max_len=2)
    beam, score = decoding.beam_search(model, src, max_len=2, beam_width=2)
    assert greedy.tolist() == [[A, A]]  # 0.5 * 0.4 = 0.2, and no <eos> within 2 tokens
    assert beam.tolist() == [[B, EOS]]  # 0.4 * 0.9 = 0.36
    assert math.isclose(score.exp().item(), 0.36, rel_tol=1e-3)


def test_beam_search_scores_are_those_of_its_sequences_and_it_restores_the_mode():
    model = small_transformer(seed=6, eos_bias=1.0).train()
    src = random_src(batch=10, seed=6)
    tokens, scores = decoding.beam_search(model, src, max_len=8, beam_width=3)
    assert model.training  # restored after decoding in eval mode
    assert tokens.shape[0] == 10 and tokens.shape[1] <= 8
    torch.testing.assert_close(scores, decoding.sequence_log_prob(model, src, tokens))
    ranked, ranked_scores = decoding.beam_search(
        model, src, max_len=8, beam_width=3, length_penalty=1.0
    )
    torch.testing.assert_close(ranked_scores, decoding.sequence_log_prob(model, src, ranked))


def test_decoding_rejects_bad_arguments():
    model = small_transformer()
    src = random_src()
    with pytest.raises(ValueError, match="max_len"):
        decoding.greedy_decode(model, src, max_len=0)
    with pytest.raises(ValueError, match="beam_width"):
        decoding.beam_search(model, src, max_len=4, beam_width=0)
    with pytest.raises(TypeError, match="LongTensor"):
        decoding.greedy_decode(model, src.float(), max_len=4)
    with pytest.raises(ValueError, match="length_penalty"):
        decoding.beam_search(model, src, max_len=4, length_penalty=-1.0)
    with pytest.raises(ValueError, match="differ in B"):
        decoding.sequence_log_prob(model, src, src[:2])


def test_exact_match():
    assert decoding.exact_match(["2026-11-22", "2026-11-23"], ["2026-11-22", "2026-11-22"]) == 0.5
    with pytest.raises(ValueError, match="2 predictions for 1"):
        decoding.exact_match(["a", "b"], ["a"])
    with pytest.raises(TypeError, match="not a string"):
        decoding.exact_match("ab", "ab")


def test_exact_match_ids_needs_eos_and_ignores_what_follows():
    reference = torch.tensor([[5, 6, 7, EOS]] * 6)  # (6, 4)
    predicted = torch.tensor(
        [
            [5, 6, 7, EOS, PAD],  # right; padding after <eos> is ignored
            [5, 6, 7, EOS, 9],  # right; whatever follows <eos> is ignored
            [5, 6, 7, PAD, PAD],  # <pad> where <eos> belongs: wrong
            [5, 6, 7, 7, EOS],  # one character too many: wrong
            [5, 6, EOS, PAD, PAD],  # too short: wrong
            [5, 6, 7, 8, 9],  # no <eos> at all: wrong
        ]
    )
    assert decoding.exact_match_ids(predicted, reference) == 2 / 6
    # Cut off at max_len = 3, the right characters without <eos> are still wrong, although
    # their decoded string equals the reference's.
    assert decoding.exact_match_ids(reference[:1, :3], reference[:1]) == 0.0
    with pytest.raises(ValueError, match="differ in B"):
        decoding.exact_match_ids(predicted[:2], reference)
    with pytest.raises(ValueError, match="must contain eos_id"):
        decoding.exact_match_ids(predicted, predicted)


def test_translate_in_chunks_equals_one_batch():
    model = small_transformer(seed=7, eos_bias=1.0)
    src = random_src(batch=10, seed=7)
    to_text = lambda ids: [" ".join(map(str, row.tolist())) for row in ids]
    whole = decoding.translate(model, src, to_text, max_len=6, batch_size=10)
    chunked = decoding.translate(model, src, to_text, max_len=6, batch_size=3)
    # Chunks may end at different lengths, so compare up to the trailing padding.
    assert [w.rstrip(" 0") for w in whole] == [c.rstrip(" 0") for c in chunked]
    beams = decoding.translate(model, src, to_text, max_len=6, beam_width=2, batch_size=10)
    chunked_beams = decoding.translate(model, src, to_text, max_len=6, beam_width=2, batch_size=3)
    assert [w.rstrip(" 0") for w in beams] == [c.rstrip(" 0") for c in chunked_beams]
    assert beams != whole  # the beam changed some outputs, so the comparison is not trivial


def test_a_tiny_transformer_overfits_a_few_dates():
    torch.manual_seed(0)
    examples = dates.sample(16, "train", seed=11)
    src, tgt = dates.encode_examples(examples)
    config = transformer.TransformerConfig(
        len(dates.SOURCE_VOCAB), len(dates.TARGET_VOCAB), d_model=32, num_heads=2, d_ff=64
    )
    model = transformer.Transformer(config)
    loss_fn = lambda m, step: train.seq2seq_loss(m, src, tgt)
    history = train.fit(model, loss_fn, steps=150, lr=3e-3, progress=False)
    assert history.final_loss < 0.05
    out = decoding.greedy_decode(model, src, max_len=dates.TARGET_LEN - 1)
    assert dates.TARGET_VOCAB.decode_batch(out) == [e.target for e in examples]


# ----------------------------------------------------------------------------- edges


def test_translate_keeps_every_token_however_the_source_is_padded():
    model = RecordingMarkov()
    src = padded_anywhere()
    to_text = lambda ids: [" ".join(map(str, row.tolist())) for row in ids]
    for beam_width in (1, 2):
        model.sources.clear()
        got = decoding.translate(model, src, to_text, max_len=4, beam_width=beam_width)
        (seen,) = model.sources
        assert torch.equal(seen, src[:, :5])  # only the all-padding last column is dropped
        # The stand-in ignores token order, so all three sources say the same thing.
        assert got[0] == got[1] == got[2]
        assert got == decoding.translate(model, src[[0, 0, 0]], to_text, 4, beam_width)


def test_empty_batches_give_empty_results():
    model = small_transformer()
    empty = torch.zeros(0, 5, dtype=torch.long)
    out = decoding.greedy_decode(model, empty, max_len=4)
    assert out.shape == (0, 0) and out.dtype == torch.long
    tokens, scores = decoding.beam_search(model, empty, max_len=4, beam_width=3)
    assert tokens.shape == (0, 0) and scores.shape == (0,)
    assert decoding.sequence_log_prob(model, empty, torch.zeros(0, 3, dtype=torch.long)).shape == (
        0,
    )
    assert decoding.translate(model, empty, lambda ids: ["x"] * len(ids), max_len=4) == []


def test_integer_like_arguments_and_clear_refusals():
    model = MarkovModel()
    src = random_src(vocab=6)
    expected = decoding.greedy_decode(model, src, 4)
    got = decoding.greedy_decode(model, src, np.int64(4), np.int64(BOS), torch.tensor(EOS))
    assert torch.equal(got, expected)
    for bad, message in (
        ({"max_len": 4.0}, "max_len must be a positive int, got 4.0 of type float"),
        (
            {"max_len": 4, "eos_id": True},
            "eos_id must be a non-negative int, got True of type bool",
        ),
        ({"max_len": 4, "pad_id": -1}, "pad_id must be a non-negative int, got -1"),
    ):
        with pytest.raises(ValueError, match=message):
            decoding.greedy_decode(model, src, **bad)
    with pytest.raises(TypeError, match="length_penalty must be a number, got True"):
        decoding.beam_search(model, src, 4, length_penalty=True)
    with pytest.raises(ValueError, match="length_penalty must be a finite number, got nan"):
        decoding.beam_search(model, src, 4, length_penalty=float("nan"))
    with pytest.raises(TypeError, match="label_smoothing must be a float"):
        train.sequence_loss(torch.randn(2, 3, 5), torch.ones(2, 3, dtype=torch.long), 0, "0.1")
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = train.warmup_cosine_schedule(optimizer, np.int64(2), np.int32(10))
    assert optimizer.param_groups[0]["lr"] == 0.5
    with pytest.raises(ValueError, match="warmup_steps must be a non-negative int, got -1"):
        train.warmup_cosine_schedule(optimizer, -1, 10)
    del schedule


def test_translate_refuses_a_decode_function_that_loses_strings():
    model, src = small_transformer(), random_src()
    with pytest.raises(ValueError, match="decode_ids returned 1 strings for 6 sequences"):
        decoding.translate(model, src, lambda ids: ["x"], max_len=4)


@pytest.mark.parametrize("eos_id", [7, 100])
def test_decoders_refuse_an_eos_id_outside_the_target_vocabulary(eos_id):
    model, src = small_transformer(), random_src()
    for decode in (decoding.greedy_decode, decoding.beam_search):
        with pytest.raises(ValueError, match=rf"eos_id={eos_id} is outside .* \[0, 7\)"):
            decode(model, src, 4, eos_id=eos_id)


def test_beam_search_refuses_an_infinite_length_penalty():
    with pytest.raises(ValueError, match="length_penalty must be a finite number"):
        decoding.beam_search(small_transformer(), random_src(), 4, length_penalty=math.inf)


def test_every_decoder_reads_the_model_in_eval_mode_and_restores_its_mode():
    model = small_transformer().train()
    decoding.greedy_decode(model, random_src(), 4)
    decoding.beam_search(model, random_src(), 4, beam_width=2)
    assert model.training
