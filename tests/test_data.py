"""Tests for attention_book.data: the Vocab tokenizer and the pronoun task."""

import numpy as np
import pytest
import torch

from attention_book import data


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _words(examples: data.PronounExamples) -> list[list[str]]:
    return [s.split() for s in examples.sentences()]


# --- Vocab ---------------------------------------------------------------------------------


def test_vocab_round_trip_and_pad_is_zero():
    vocab = data.Vocab(["she", "went", "to", "the", "market"])
    ids = vocab.encode("She went to the market")
    assert ids.dtype == torch.long and ids.shape == (5,)
    assert vocab.pad_id == 0 and vocab.tokens[0] == data.PAD and len(vocab) == 6
    assert vocab.decode(ids) == "she went to the market"
    assert torch.equal(vocab.encode(["went", "to"]), ids[1:3])
    assert vocab.decode([0, *ids.tolist(), 0]) == "she went to the market"  # pads are dropped


def test_vocab_rejects_bad_tokens_and_ids():
    with pytest.raises(ValueError, match="unique"):
        data.Vocab(["a", "a"])
    with pytest.raises(ValueError, match="without spaces"):
        data.Vocab(["two words"])
    with pytest.raises(ValueError, match="without spaces"):
        data.Vocab([data.PAD])
    vocab = data.Vocab(["a", "b"])
    with pytest.raises(ValueError, match=r"unknown tokens \['c'\]"):
        vocab.encode("a c")
    with pytest.raises(ValueError, match="outside the vocabulary"):
        vocab.decode([1, 7])
    with pytest.raises(ValueError, match="1-d"):
        vocab.decode(torch.ones(2, 2, dtype=torch.long))


def test_vocab_rejects_upper_case_tokens():
    # encode lower-cases strings, so an upper-case token could never be encoded from one.
    with pytest.raises(ValueError, match=r"lower-case.*\['She'\]"):
        data.Vocab(["She", "went"])
    vocab = data.Vocab(["she"])
    assert vocab.encode("She SHE she").tolist() == [1, 1, 1]
    with pytest.raises(ValueError, match="unknown tokens"):
        vocab.encode(["She"])  # a list of tokens is taken as it is


def test_vocab_decode_rejects_non_integer_ids():
    vocab = data.Vocab(["a", "b"])
    with pytest.raises(TypeError, match=r"ids must be ints.*\[1.0\]"):
        vocab.decode([1.0])
    with pytest.raises(TypeError, match="ids must be ints"):
        vocab.decode(torch.tensor([1.0, 2.0]))
    with pytest.raises(TypeError, match="ids must be ints"):
        vocab.decode([True])
    assert vocab.decode(torch.tensor([1, 2], dtype=torch.int32)) == "a b"


def test_pronoun_vocab_holds_every_word_of_the_task():
    words = [*data.ANIMALS, *data.OBJECTS, *data.ANIMATE_PREDICATES, *data.OBJECT_PREDICATES]
    words += [*data.RELATIONS, "the", "was", "and", "it"]
    assert len(set(words)) == len(words) == len(data.PRONOUN_VOCAB) - 1
    assert data.PRONOUN_VOCAB.decode(data.PRONOUN_VOCAB.encode(words)) == " ".join(words)


# --- check_word_lists ----------------------------------------------------------------------


def test_word_lists_of_the_task_fit_the_pairing_rule():
    lists = (data.ANIMALS, data.OBJECTS, data.ANIMATE_PREDICATES, data.OBJECT_PREDICATES)
    assert len({len(words) for words in lists}) == 1
    assert len(data.ANIMALS) % data.HELD_OUT_PERIOD == 0
    data.check_word_lists(*lists, data.HELD_OUT_PERIOD)  # raises nothing


def test_check_word_lists_rejects_lists_that_break_the_rule():
    four = ("a", "b", "c", "d")
    data.check_word_lists(four, four, four, four, 4)
    data.check_word_lists(four, four, four, four, 2)
    with pytest.raises(ValueError, match="same length"):
        data.check_word_lists(four, four, four, four[:3], 1)
    with pytest.raises(ValueError, match="same length"):
        data.check_word_lists(four + ("e",), four, four, four, 1)
    with pytest.raises(ValueError, match="dividing the list length 4, got 3"):
        data.check_word_lists(four, four, four, four, 3)
    for period in (0, -4, True, 2.0):
        with pytest.raises(ValueError, match="positive int"):
            data.check_word_lists(four, four, four, four, period)


# --- pronoun_dataset -----------------------------------------------------------------------


@pytest.mark.parametrize("split", data.SPLITS)
def test_shapes_and_dtypes(split):
    ex = data.pronoun_dataset(37, _gen(), split)
    assert len(ex) == 37
    assert ex.tokens.shape == (37, data.SENTENCE_LENGTH) and ex.tokens.dtype == torch.long
    assert ex.noun_positions.shape == (37, 2) and ex.noun_positions.dtype == torch.long
    assert ex.it_position.shape == (37,) and ex.target.shape == (37,)
    assert ex.referent_position.shape == (37,)
    assert set(ex.target.tolist()) <= {0, 1}
    assert (ex.tokens != data.PRONOUN_VOCAB.pad_id).all()


def test_positions_point_at_the_nouns_and_at_it():
    ex = data.pronoun_dataset(200, _gen(), "train")
    nouns = set(data.ANIMALS) | set(data.OBJECTS)
    for words, pos, it in zip(_words(ex), ex.noun_positions, ex.it_position, strict=True):
        assert words[pos[0]] in nouns and words[pos[1]] in nouns
        assert words[it] == "it"
        assert (words[pos[0]] in data.ANIMALS) != (words[pos[1]] in data.ANIMALS)


def test_labels_follow_the_predicate():
    ex = data.pronoun_dataset(500, _gen(), "train")
    for words, ref in zip(_words(ex), ex.referent_position.tolist(), strict=True):
        predicate = words[data.PREDICATE_POSITION]
        if predicate in data.ANIMATE_PREDICATES:
            assert words[ref] in data.ANIMALS
        else:
            assert predicate in data.OBJECT_PREDICATES and words[ref] in data.OBJECTS


def test_same_generator_state_gives_same_sentences():
    a = data.pronoun_dataset(64, _gen(3), "test")
    b = data.pronoun_dataset(64, _gen(3), "test")
    c = data.pronoun_dataset(64, _gen(4), "test")
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.target, b.target)
    assert not torch.equal(a.tokens, c.tokens)


def test_every_factor_varies_and_classes_are_balanced():
    ex = data.pronoun_dataset(4000, _gen(), "train")
    words = _words(ex)
    assert {w[data.NOUN_POSITIONS[0]] for w in words} == set(data.ANIMALS) | set(data.OBJECTS)
    assert {w[data.RELATION_POSITION] for w in words} == set(data.RELATIONS)
    first_is_animal = torch.tensor([w[data.NOUN_POSITIONS[0]] in data.ANIMALS for w in words])
    # Neither the order of the nouns nor the position of the referent is a shortcut.
    assert 0.45 < first_is_animal.float().mean() < 0.55
    assert 0.45 < ex.target.float().mean() < 0.55


def test_split_is_disjoint_in_pairings_and_triples():
    def triples(ex):
        out = set()
        for w, ref in zip(_words(ex), ex.referent_position.tolist(), strict=True):
            first, second = w[data.NOUN_POSITIONS[0]], w[data.NOUN_POSITIONS[1]]
            out.add((frozenset((first, second)), w[ref], w[data.PREDICATE_POSITION]))
        return out

    train, test = (
        data.pronoun_dataset(5000, _gen(0), "train"),
        data.pronoun_dataset(5000, _gen(1), "test"),
    )
    train_triples, test_triples = triples(train), triples(test)
    assert not train_triples & test_triples
    assert {(ref, p) for _, ref, p in train_triples}.isdisjoint(
        {(r, p) for _, r, p in test_triples}
    )
    assert all(data.is_held_out(ref, p) for _, ref, p in test_triples)
    assert not any(data.is_held_out(ref, p) for _, ref, p in train_triples)
    # A quarter of the 2 * 8 * 8 pairings is held out, and the test split uses all of them.
    assert len({(r, p) for _, r, p in test_triples}) == 32
    assert len({(r, p) for _, r, p in train_triples}) == 96


def test_is_held_out_rule_and_errors():
    assert data.is_held_out("cat", "tired")  # index 0 with index 0
    assert data.is_held_out("dog", "angry")  # index 1 with index 5
    assert not data.is_held_out("cat", "hungry")
    assert [p for p in data.OBJECT_PREDICATES if data.is_held_out("mat", p)] == ["dirty", "torn"]
    with pytest.raises(ValueError, match="not a predicate that can describe"):
        data.is_held_out("cat", "dirty")
    with pytest.raises(ValueError, match="neither an animal nor an object"):
        data.is_held_out("tree", "tired")


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="positive int"):
        data.pronoun_dataset(0, _gen())
    with pytest.raises(ValueError, match="positive int"):
        data.pronoun_dataset(True, _gen())
    with pytest.raises(TypeError, match="torch.Generator"):
        data.pronoun_dataset(4, 0)
    with pytest.raises(ValueError, match="split must be one of"):
        data.pronoun_dataset(4, _gen(), split="valid")


# --- parse_pronoun_sentences ---------------------------------------------------------------


def test_parse_recovers_generated_examples():
    ex = data.pronoun_dataset(100, _gen(), "test")
    parsed = data.parse_pronoun_sentences(ex.sentences())
    for field in ("tokens", "noun_positions", "it_position", "target"):
        assert torch.equal(getattr(parsed, field), getattr(ex, field))


def test_parse_labels_and_errors():
    ex = data.parse_pronoun_sentences(
        ["the cat was on the mat and it was tired", "The cat was on the mat and it was dirty"]
    )
    assert ex.target.tolist() == [0, 1] and ex.referent_position.tolist() == [1, 5]
    with pytest.raises(ValueError, match="does not follow the frame"):
        data.parse_pronoun_sentences(["the cat sat on the mat because it was tired"])
    with pytest.raises(ValueError, match="one animal and one object"):
        data.parse_pronoun_sentences(["the cat was on the dog and it was tired"])
    with pytest.raises(ValueError, match="relation"):
        data.parse_pronoun_sentences(["the cat was it the mat and it was tired"])
    with pytest.raises(ValueError, match="is not a predicate"):
        data.parse_pronoun_sentences(["the cat was on the mat and it was on"])
    with pytest.raises(ValueError, match="non-empty list"):
        data.parse_pronoun_sentences("the cat was on the mat and it was tired")


def test_examples_validate_their_fields():
    ex = data.pronoun_dataset(3, _gen())
    with pytest.raises(ValueError, match=r"noun_positions \(N, 2\)"):
        data.PronounExamples(ex.tokens, ex.noun_positions[:2], ex.it_position, ex.target)
    with pytest.raises(ValueError, match="got"):
        data.PronounExamples(ex.tokens[0], ex.noun_positions, ex.it_position, ex.target)
    with pytest.raises(TypeError, match="torch.long"):
        data.PronounExamples(ex.tokens.float(), ex.noun_positions, ex.it_position, ex.target)
    with pytest.raises(ValueError, match="0 \\(first noun\\) or 1"):
        data.PronounExamples(ex.tokens, ex.noun_positions, ex.it_position, ex.target + 2)


def test_examples_reject_positions_outside_the_sentence():
    ex = data.pronoun_dataset(3, _gen())
    t = data.SENTENCE_LENGTH
    with pytest.raises(ValueError, match=r"noun_positions must lie in \[0, T\) = \[0, 10\)"):
        data.PronounExamples(ex.tokens, ex.noun_positions + t - 1, ex.it_position, ex.target)
    with pytest.raises(ValueError, match=r"noun_positions must lie in \[0, T\)"):
        data.PronounExamples(ex.tokens, ex.noun_positions - 2, ex.it_position, ex.target)
    with pytest.raises(ValueError, match=r"it_position must lie in \[0, T\).*from 10 to 10"):
        data.PronounExamples(ex.tokens, ex.noun_positions, ex.it_position + 3, ex.target)
    with pytest.raises(ValueError, match=r"it_position must lie in \[0, T\)"):
        data.PronounExamples(ex.tokens, ex.noun_positions, -ex.it_position, ex.target)
    last = torch.full_like(ex.it_position, t - 1)  # the last position is allowed
    assert len(data.PronounExamples(ex.tokens, ex.noun_positions, last, ex.target)) == 3


def test_integer_like_arguments_are_accepted():
    four = ("a", "b", "c", "d")
    data.check_word_lists(four, four, four, four, np.int64(2))
    with pytest.raises(ValueError, match="period must be a positive int, got 2.0 of type float"):
        data.check_word_lists(four, four, four, four, 2.0)
    expected = data.pronoun_dataset(5, _gen())
    got = data.pronoun_dataset(np.int64(5), _gen())
    assert torch.equal(got.tokens, expected.tokens) and torch.equal(got.target, expected.target)
    vocab = data.Vocab(["a", "b"])
    assert vocab.decode(np.array([1, 0, 2])) == vocab.decode([np.int64(1), 2]) == "a b"
    with pytest.raises(TypeError, match="ids must be ints"):
        vocab.decode(np.array([True, False]))
