"""A synthetic pronoun task: which noun does "it" refer to?

Every sentence follows one frame of ten tokens,

    the <noun 1> was <relation> the <noun 2> and it was <predicate>

with one animal and one object, in either order. The predicate decides the referent: an animate
predicate ("tired", "hungry", ...) makes "it" the animal, an object predicate ("dirty",
"broken", ...) makes it the object. In this toy language the rule is absolute (a wet cat does
not exist here), so the label is a function of the sentence.

The split is by pairing: a referent noun and a predicate form a *pairing*, and a fixed quarter of
all pairings (two predicates per noun, two nouns per predicate) is held out. The ``"test"``
split uses only held-out pairings and the ``"train"`` split never does, so no (animal, object,
predicate) combination of the test split occurs in training.
"""

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
    """Check that the word lists fit the pairing rule; raise ValueError if they do not.

    :func:`pronoun_dataset` picks the predicate ``(referent + offset) % n`` for animals and
    objects alike, with one ``n``, and holds out the offsets that are multiples of ``period``.
    That is a quarter (for ``period = 4``) of the pairings, two per noun and two per predicate,
    and agrees with :func:`is_held_out`, only when the four lists have the same length ``n`` and
    ``period`` divides ``n``.

    Args:
        animals, objects, animate_predicates, object_predicates: the four word lists.
        period: the held-out period, a positive int.
    """
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
    """A word-level tokenizer: a fixed list of tokens, ``<pad>`` first (id 0).

    Args:
        tokens: the words, without ``<pad>``; each must be unique, lower-case (``encode``
            lower-cases the strings it is given) and contain no space.
    """

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
        """Token ids of a sentence.

        Args:
            sentence: a string, lower-cased and split at whitespace, or a list of tokens,
                taken as they are.

        Returns:
            A ``(T,)`` long tensor.
        """
        words = sentence.lower().split() if isinstance(sentence, str) else list(sentence)
        unknown = [w for w in words if w not in self._ids]
        if unknown:
            raise ValueError(f"unknown tokens {unknown}; the vocabulary has {len(self)} tokens")
        return torch.tensor([self._ids[w] for w in words], dtype=torch.long)

    def decode(self, ids: Tensor | Sequence[int]) -> str:
        """The sentence for a ``(T,)`` sequence of integer ids, with ``<pad>`` tokens dropped.

        Args:
            ids: a ``(T,)`` integer tensor or a sequence of ints (NumPy integers included).

        Returns:
            The tokens joined by single spaces.
        """
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
    """Whether the pairing of a referent noun with a predicate belongs to the test split.

    Args:
        noun: an animal or an object.
        predicate: a predicate of the same kind (animate for an animal, object for an object).

    Returns:
        True for the quarter of pairings reserved for testing.
    """
    for nouns, predicates in ((ANIMALS, ANIMATE_PREDICATES), (OBJECTS, OBJECT_PREDICATES)):
        if noun in nouns:
            if predicate not in predicates:
                raise ValueError(f"{predicate!r} is not a predicate that can describe {noun!r}")
            return (predicates.index(predicate) - nouns.index(noun)) % HELD_OUT_PERIOD == 0
    raise ValueError(f"{noun!r} is neither an animal nor an object")


@dataclass(frozen=True)
class PronounExamples:
    """A batch of pronoun sentences with what the model needs to be trained and scored.

    Attributes:
        tokens: ``(N, T)`` long token ids (``T = SENTENCE_LENGTH``).
        noun_positions: ``(N, 2)`` long in ``[0, T)``: the positions of the two nouns.
        it_position: ``(N,)`` long in ``[0, T)``: the position of "it".
        target: ``(N,)`` long in {0, 1}: which of the two nouns "it" refers to.
    """

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
    """Draw ``num_examples`` sentences of the pronoun task from one split.

    Each sentence draws an animal, an object, their order, a relation, and whether "it" refers
    to the animal or to the object (each with probability 1/2). The predicate is then drawn among
    those of the referent's kind whose pairing with the referent belongs to ``split``.

    Args:
        num_examples: how many sentences, a positive int.
        generator: the random source; the same generator state gives the same sentences.
        split: ``"train"`` (never a held-out pairing) or ``"test"`` (only held-out pairings).

    Returns:
        A :class:`PronounExamples` with ``N = num_examples`` sentences of length 10.
    """
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
    """Tokenize sentences written in the task's frame and work out their labels.

    Args:
        sentences: strings such as ``"the cat was on the mat and it was tired"``.

    Returns:
        A :class:`PronounExamples` with one row per sentence.
    """
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
