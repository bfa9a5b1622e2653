"""A synthetic pronoun task: which noun does "it" refer to?

Every sentence is ``the <noun 1> was <relation> the <noun 2> and it was <predicate>``, with
one animal and one object in either order. The predicate decides the referent (animate:
the animal; object predicate: the object). A referent and a predicate form a pairing; a
fixed quarter of the pairings is held out, and the ``"test"`` split uses only those."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from attention_book import validation

ANIMALS = ("cat", "dog", "bird", "horse", "mouse", "rabbit", "fox", "cow")
OBJECTS = ("mat", "box", "ball", "chair", "cup", "rug", "hat", "bed")
ANIMATE_PREDICATES = (
    "tired",
    "hungry",
    "sleepy",
    "scared",
    "thirsty",
    "angry",
    "playful",
    "curious",
)
OBJECT_PREDICATES = ("dirty", "wet", "broken", "cracked", "torn", "empty", "dusty", "rusty")
RELATIONS = ("on", "under", "near", "behind")

#: Tokens per sentence, and where the frame puts the two nouns, "it" and the predicate.
SENTENCE_LENGTH = 10
NOUN_POSITIONS = (1, 5)
IT_POSITION = 7
PREDICATE_POSITION = 9
RELATION_POSITION = 3
_FRAME = ("the", None, "was", None, "the", None, "and", "it", "was", None)

#: A pairing (noun i, predicate j) of the same kind is held out when (j - i) % 4 == 0.
HELD_OUT_PERIOD = 4

PAD = "<pad>"
SPLITS = ("train", "test")


def check_word_lists(
    animals: Sequence[str],
    objects: Sequence[str],
    animate_predicates: Sequence[str],
    object_predicates: Sequence[str],
    period: int,
) -> None:
    """Raise ValueError unless the four word lists have one length ``n`` that ``period`` divides.

    :func:`pronoun_dataset` pairs predicate ``(referent + offset) % n`` and holds out offsets
    divisible by ``period``: a quarter of the pairings, agreeing with :func:`is_held_out`."""
    lengths = {
        "animals": len(animals),
        "objects": len(objects),
        "animate_predicates": len(animate_predicates),
        "object_predicates": len(object_predicates),
    }
    if len(set(lengths.values())) != 1:
        raise ValueError(f"the four word lists must have the same length, got {lengths}")
    n = lengths["animals"]
    period = validation.check_positive_int("period", period)
    if n % period:
        raise ValueError(
            f"the held-out period must be a positive int dividing the list length {n}, "
            f"got {period!r}"
        )


check_word_lists(ANIMALS, OBJECTS, ANIMATE_PREDICATES, OBJECT_PREDICATES, HELD_OUT_PERIOD)


class Vocab:
    """A word-level tokenizer: ``<pad>`` (id 0), then ``tokens`` (unique, lower-case, no spaces)."""

    def __init__(self, tokens: Sequence[str]) -> None:
        tokens = list(tokens)
        for token in tokens:
            if not isinstance(token, str) or not token or " " in token or token == PAD:
                raise ValueError(f"a token must be a non-empty str without spaces, got {token!r}")
        upper = [token for token in tokens if token != token.lower()]
        if upper:
            raise ValueError(
                f"tokens must be lower-case, because encode lower-cases a string; got {upper}"
            )
        if len(set(tokens)) != len(tokens):
            raise ValueError("tokens must be unique")
        self.tokens: list[str] = [PAD, *tokens]
        self._ids = {token: i for i, token in enumerate(self.tokens)}

    @property
    def pad_id(self) -> int:
        """The id of ``<pad>``, always 0."""
        return 0

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, sentence: str | Sequence[str]) -> Tensor:
        """``(T,)`` long ids of a sentence (lower-cased and split) or of a list of tokens."""
        words = sentence.lower().split() if isinstance(sentence, str) else list(sentence)
        unknown = [w for w in words if w not in self._ids]
        if unknown:
            raise ValueError(f"unknown tokens {unknown}; the vocabulary has {len(self)} tokens")
        return torch.tensor([self._ids[w] for w in words], dtype=torch.long)

    def decode(self, ids: Tensor | Sequence[int]) -> str:
        """The tokens of ``(T,)`` integer ids joined by spaces, ``<pad>`` dropped."""
        ids = ids.tolist() if isinstance(ids, Tensor) else list(ids)
        if any(isinstance(i, list) for i in ids):
            raise ValueError("decode takes one sentence, a 1-d sequence of ids")
        not_int = [i for i in ids if isinstance(i, bool) or not hasattr(type(i), "__index__")]
        if not_int:
            raise TypeError(f"ids must be ints (or an integer tensor), got {not_int}")
        ids = [operator.index(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < len(self)]
        if bad:
            raise ValueError(f"ids {bad} are outside the vocabulary of {len(self)} tokens")
        return " ".join(self.tokens[i] for i in ids if i != self.pad_id)


#: The vocabulary of the pronoun task.
PRONOUN_VOCAB = Vocab(
    ["the", "was", "and", "it", *RELATIONS, *ANIMALS, *OBJECTS]
    + [*ANIMATE_PREDICATES, *OBJECT_PREDICATES]
)


def is_held_out(noun: str, predicate: str) -> bool:
    """True for the quarter of (noun, predicate) pairings reserved for testing."""
    for nouns, predicates in ((ANIMALS, ANIMATE_PREDICATES), (OBJECTS, OBJECT_PREDICATES)):
        if noun in nouns:
            if predicate not in predicates:
                raise ValueError(f"{predicate!r} is not a predicate that can describe {noun!r}")
            return (predicates.index(predicate) - nouns.index(noun)) % HELD_OUT_PERIOD == 0
    raise ValueError(f"{noun!r} is neither an animal nor an object")


@dataclass(frozen=True)
class PronounExamples:
    """A batch of the task: ``tokens (N, T)``, ``noun_positions (N, 2)``, ``it_position (N,)`` and
    ``target (N,)``, which of the two nouns "it" refers to (0 or 1)."""

    tokens: Tensor
    noun_positions: Tensor
    it_position: Tensor
    target: Tensor

    def __post_init__(self) -> None:
        fields = ("tokens", "noun_positions", "it_position", "target")
        for name in fields:
            value = getattr(self, name)
            if not isinstance(value, Tensor) or value.dtype != torch.long:
                got = f"dtype {value.dtype}" if isinstance(value, Tensor) else type(value).__name__
                raise TypeError(f"{name} must be a torch.long tensor, got {got}")
        n = self.tokens.shape[0] if self.tokens.dim() == 2 else -1
        shapes = {name: tuple(getattr(self, name).shape) for name in fields}
        expected = {"noun_positions": (n, 2), "it_position": (n,), "target": (n,)}
        if n < 0 or any(shapes[name] != shape for name, shape in expected.items()):
            raise ValueError(
                f"expected tokens (N, T), noun_positions (N, 2), it_position (N,), target (N,); "
                f"got {shapes}"
            )
        if not ((self.target == 0) | (self.target == 1)).all():
            raise ValueError("target must hold 0 (first noun) or 1 (second noun)")
        t = self.tokens.shape[1]
        for name in ("noun_positions", "it_position"):
            value = getattr(self, name)
            if ((value < 0) | (value >= t)).any():
                raise ValueError(
                    f"{name} must lie in [0, T) = [0, {t}), got values from "
                    f"{value.min().item()} to {value.max().item()}"
                )

    def __len__(self) -> int:
        return self.tokens.shape[0]

    @property
    def referent_position(self) -> Tensor:
        """``(N,)`` long: the position of the noun that "it" refers to."""
        return self.noun_positions.gather(1, self.target[:, None]).squeeze(1)  # (N, 2) -> (N,)

    def sentences(self) -> list[str]:
        """The N sentences as text."""
        return [PRONOUN_VOCAB.decode(row) for row in self.tokens]


def _examples(tokens: Tensor, target: Tensor) -> PronounExamples:
    n = tokens.shape[0]
    return PronounExamples(
        tokens=tokens,
        noun_positions=torch.tensor(NOUN_POSITIONS).expand(n, 2).clone(),  # (N, 2)
        it_position=torch.full((n,), IT_POSITION, dtype=torch.long),  # (N,)
        target=target,
    )


def pronoun_dataset(
    num_examples: int, generator: torch.Generator, split: str = "train"
) -> PronounExamples:
    """``num_examples`` sentences of ``split`` (``"train"`` or ``"test"``) drawn from ``generator``.

    Animal, object, order, relation and referent are drawn uniformly; the predicate among those
    of the referent's kind whose pairing belongs to ``split``."""
    num_examples = validation.check_positive_int("num_examples", num_examples)
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    n, g = num_examples, generator
    animal = torch.randint(len(ANIMALS), (n,), generator=g)  # (N,)
    obj = torch.randint(len(OBJECTS), (n,), generator=g)  # (N,)
    animal_first = torch.randint(2, (n,), generator=g).bool()  # (N,)
    relation = torch.randint(len(RELATIONS), (n,), generator=g)  # (N,)
    refers_to_animal = torch.randint(2, (n,), generator=g).bool()  # (N,)
    # The predicate index is the referent's index plus an offset; offsets that are multiples of
    # HELD_OUT_PERIOD give exactly the held-out pairings.
    offsets = torch.arange(len(ANIMATE_PREDICATES))
    held = offsets % HELD_OUT_PERIOD == 0
    allowed = offsets[held] if split == "test" else offsets[~held]
    offset = allowed[torch.randint(len(allowed), (n,), generator=g)]  # (N,)
    referent = torch.where(refers_to_animal, animal, obj)
    # One index rule serves both kinds of predicate: check_word_lists guarantees equal lengths.
    predicate = (referent + offset) % len(ANIMATE_PREDICATES)  # (N,)

    encode = PRONOUN_VOCAB.encode
    animal_ids = encode(ANIMALS)[animal]  # (8,) -> (N,)
    object_ids = encode(OBJECTS)[obj]  # (8,) -> (N,)
    animate_ids = encode(ANIMATE_PREDICATES)[predicate]  # (8,) -> (N,)
    inanimate_ids = encode(OBJECT_PREDICATES)[predicate]  # (8,) -> (N,)
    tokens = encode([w or PAD for w in _FRAME]).repeat(n, 1)  # (T,) -> (N, T)
    tokens[:, NOUN_POSITIONS[0]] = torch.where(animal_first, animal_ids, object_ids)
    tokens[:, NOUN_POSITIONS[1]] = torch.where(animal_first, object_ids, animal_ids)
    tokens[:, RELATION_POSITION] = encode(RELATIONS)[relation]  # (N,)
    tokens[:, PREDICATE_POSITION] = torch.where(refers_to_animal, animate_ids, inanimate_ids)
    # target 0 means the first noun: the animal comes first exactly when it is the referent's
    # position 0, i.e. when animal_first agrees with refers_to_animal.
    target = (animal_first != refers_to_animal).long()  # (N,)
    return _examples(tokens, target)


def parse_pronoun_sentences(sentences: Sequence[str]) -> PronounExamples:
    """:class:`PronounExamples` for sentences written in the task's frame, labels worked out."""
    if isinstance(sentences, str) or len(sentences) == 0:
        raise ValueError("sentences must be a non-empty list of strings")
    rows, targets = [], []
    for sentence in sentences:
        words = sentence.lower().split()
        slots_ok = len(words) == SENTENCE_LENGTH and all(
            f is None or f == w for f, w in zip(_FRAME, words, strict=True)
        )
        if not slots_ok:
            raise ValueError(
                f"{sentence!r} does not follow the frame "
                "'the <noun> was <relation> the <noun> and it was <predicate>'"
            )
        first, second = (words[p] for p in NOUN_POSITIONS)
        predicate = words[PREDICATE_POSITION]
        if {first in ANIMALS, second in ANIMALS} != {True, False} or not (
            {first, second} <= set(ANIMALS) | set(OBJECTS)
        ):
            raise ValueError(f"{sentence!r} needs one animal and one object")
        if words[RELATION_POSITION] not in RELATIONS:
            raise ValueError(f"{sentence!r}: the relation must be one of {RELATIONS}")
        if predicate in ANIMATE_PREDICATES:
            targets.append(0 if first in ANIMALS else 1)
        elif predicate in OBJECT_PREDICATES:
            targets.append(0 if first in OBJECTS else 1)
        else:
            raise ValueError(f"{sentence!r}: {predicate!r} is not a predicate")
        rows.append(PRONOUN_VOCAB.encode(words))
    return _examples(torch.stack(rows), torch.tensor(targets))  # (N, T)
