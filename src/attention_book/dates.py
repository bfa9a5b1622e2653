"""A synthetic translation task: dates written in many ways, translated into ISO 8601.

A source is a date in one of :data:`FORMATS` ("22 November 2026", "22/11/2026", ...); the
target is ``YYYY-MM-DD``. Numeric formats are day first, so no source is ambiguous. A hash
of the date puts about one date in ten in the ``"test"`` split, in every format. Month and
weekday names are spelt out here, so nothing depends on the machine's locale."""

from __future__ import annotations

import datetime
import functools
import hashlib
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from attention_book import validation

MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

#: The calendar the task draws from (inclusive).
FIRST_DATE = datetime.date(1950, 1, 1)
LAST_DATE = datetime.date(2049, 12, 31)

#: A date is held out for testing when its hash, modulo TEST_MODULUS, is 0: about 10% of dates.
TEST_MODULUS = 10
SPLITS = ("train", "test")

PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"
SPECIALS = (PAD, BOS, EOS)
PAD_ID, BOS_ID, EOS_ID = 0, 1, 2


def ordinal(day: int) -> str:
    """English ordinal of a day of the month: 1 -> "1st", 2 -> "2nd", 11 -> "11th", 22 -> "22nd"."""
    day = validation.check_int("day", day)
    if not 1 <= day <= 31:
        raise ValueError(f"day must be an int in 1..31, got {day}")
    if 11 <= day <= 13:
        return f"{day}th"
    suffix = {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


def _month(d: datetime.date) -> str:
    return MONTHS[d.month - 1]


def _mon(d: datetime.date) -> str:
    return MONTHS[d.month - 1][:3]


def _mon_dot(d: datetime.date) -> str:
    """The abbreviated month with a period, except where nothing was cut off ("May")."""
    return _mon(d) if _mon(d) == _month(d) else f"{_mon(d)}."


def _weekday(d: datetime.date) -> str:
    return WEEKDAYS[d.weekday()]


@dataclass(frozen=True)
class DateFormat:
    """One way of writing a date: ``render`` writes it, ``strptime`` reads it back."""

    name: str
    render: Callable[[datetime.date], str]
    strptime: str
    word_month: bool


FORMATS: tuple[DateFormat, ...] = (
    DateFormat("d_month_yyyy", lambda d: f"{d.day} {_month(d)} {d.year}", "%d %B %Y", True),
    DateFormat("d_mon_yyyy", lambda d: f"{d.day} {_mon(d)} {d.year}", "%d %b %Y", True),
    DateFormat("month_d_yyyy", lambda d: f"{_month(d)} {d.day}, {d.year}", "%B %d, %Y", True),
    DateFormat("mon_d_yyyy", lambda d: f"{_mon(d)} {d.day}, {d.year}", "%b %d, %Y", True),
    DateFormat(
        "month_dth_yyyy", lambda d: f"{_month(d)} {ordinal(d.day)}, {d.year}", "%B %d, %Y", True
    ),
    DateFormat(
        "dth_of_month_yyyy",
        lambda d: f"{ordinal(d.day)} of {_month(d)} {d.year}",
        "%d %B %Y",
        True,
    ),
    DateFormat(
        "weekday_d_mon_yyyy",
        lambda d: f"{_weekday(d)}, {d.day} {_mon_dot(d)} {d.year}",
        "%A, %d %b %Y",
        True,
    ),
    DateFormat(
        "wkd_d_mon_yyyy",
        lambda d: f"{_weekday(d)[:3]}, {d.day} {_mon(d)} {d.year}",
        "%a, %d %b %Y",
        True,
    ),
    DateFormat(
        "weekday_month_d_yyyy",
        lambda d: f"{_weekday(d)}, {_month(d)} {d.day}, {d.year}",
        "%A, %B %d, %Y",
        True,
    ),
    DateFormat(
        "dd_MON_yyyy", lambda d: f"{d.day:02d}-{_mon(d).upper()}-{d.year}", "%d-%b-%Y", True
    ),
    DateFormat("dd/mm/yyyy", lambda d: f"{d.day:02d}/{d.month:02d}/{d.year}", "%d/%m/%Y", False),
    DateFormat("dd.mm.yyyy", lambda d: f"{d.day:02d}.{d.month:02d}.{d.year}", "%d.%m.%Y", False),
    DateFormat("yyyy/mm/dd", lambda d: f"{d.year}/{d.month:02d}/{d.day:02d}", "%Y/%m/%d", False),
    DateFormat("yyyymmdd", lambda d: f"{d.year}{d.month:02d}{d.day:02d}", "%Y%m%d", False),
)
FORMAT_NAMES = tuple(f.name for f in FORMATS)
_FORMATS_BY_NAME = {f.name: f for f in FORMATS}


def get_format(fmt: str | DateFormat) -> DateFormat:
    """The :class:`DateFormat` named ``fmt`` (a DateFormat is returned as it is)."""
    if isinstance(fmt, DateFormat):
        return fmt
    if fmt not in _FORMATS_BY_NAME:
        raise ValueError(f"unknown date format {fmt!r}; choose one of {FORMAT_NAMES}")
    return _FORMATS_BY_NAME[fmt]


def _check_date(d: object) -> datetime.date:
    if isinstance(d, datetime.datetime) or not isinstance(d, datetime.date):
        raise TypeError(f"expected a datetime.date, got {type(d).__name__}")
    if not FIRST_DATE <= d <= LAST_DATE:
        raise ValueError(f"date {d} is outside the task's range {FIRST_DATE} .. {LAST_DATE}")
    return d


def render(d: datetime.date, fmt: str | DateFormat) -> str:
    """Write the date ``d`` in the format ``fmt`` (a name from :data:`FORMAT_NAMES`)."""
    return get_format(fmt).render(_check_date(d))


def to_iso(d: datetime.date) -> str:
    """The target: ``d`` as ``YYYY-MM-DD``."""
    return _check_date(d).isoformat()


def normalise_for_parsing(text: str) -> str:
    """Undo what ``strptime`` cannot read: ordinal suffixes, "of", and the period after "Nov."."""
    words = []
    for word in text.split(" "):
        core = word.rstrip(",")
        if core[:-2].isdigit() and core[-2:] in ("st", "nd", "rd", "th"):
            word = word.replace(core, core[:-2])
        if word != "of":
            words.append(word.replace(".", "") if word[:1].isalpha() else word)
    return " ".join(words)


_MONTH_NUMBERS = {name.lower(): i for i, m in enumerate(MONTHS, 1) for name in (m, m[:3])}


def _month_number(word: str) -> str:
    if word.lower() not in _MONTH_NUMBERS:
        raise ValueError(f"{word!r} is not a month name")
    return str(_MONTH_NUMBERS[word.lower()])


def parse(text: str, fmt: str | DateFormat) -> datetime.date:
    """Read ``text`` written in ``fmt`` back into a date, with this module's names (not the
    locale's); ValueError if it is not such a date or names the wrong weekday."""
    f = get_format(fmt)
    text_in, pattern = normalise_for_parsing(text), f.strptime
    named = None
    if pattern.startswith(("%A, ", "%a, ")):
        named, _, text_in = text_in.partition(", ")
        pattern = pattern[len("%A, ") :]
    if "%B" in pattern or "%b" in pattern:
        pattern = pattern.replace("%B", "%m").replace("%b", "%m")
        text_in = re.sub(r"[A-Za-z]+", lambda m: _month_number(m.group()), text_in)
    d = datetime.datetime.strptime(text_in, pattern).date()
    if named is not None:
        expected = _weekday(d) if f.strptime.startswith("%A") else _weekday(d)[:3]
        if named != expected:
            raise ValueError(f"{text!r} names {named}, but {d} is a {_weekday(d)}")
    # strptime is lenient ("2026112" reads as 2026-11-2 in yyyymmdd): the date must be
    # written back as it was read.
    written = render(d, f)
    if normalise_for_parsing(written) != normalise_for_parsing(text):
        raise ValueError(f"{text!r} is not a date written in {f.name!r}: {d} is {written!r}")
    return d


def split_of(d: datetime.date) -> str:
    """``"test"`` for about one date in ten (BLAKE2b of the ISO string), else ``"train"``."""
    d = _check_date(d)
    digest = hashlib.blake2b(d.isoformat().encode(), digest_size=8).digest()
    return "test" if int.from_bytes(digest, "big") % TEST_MODULUS == 0 else "train"


def dates_in_split(split: str) -> list[datetime.date]:
    """Every date of the calendar range that belongs to ``split`` ("train" or "test"), in order."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    n = (LAST_DATE - FIRST_DATE).days + 1
    days = (FIRST_DATE + datetime.timedelta(days=i) for i in range(n))
    return [d for d in days if split_of(d) == split]


_SPLIT_CACHE: dict[str, tuple[datetime.date, ...]] = {}


def _split_dates(split: str) -> tuple[datetime.date, ...]:
    if split not in _SPLIT_CACHE:
        _SPLIT_CACHE[split] = tuple(dates_in_split(split))
    return _SPLIT_CACHE[split]


@dataclass(frozen=True)
class DateExample:
    """One translation pair: the date, the format used, the source and the ISO target."""

    date: datetime.date
    format: str
    source: str
    target: str


def sample(
    n: int,
    split: str = "train",
    seed: int = 0,
    formats: Sequence[str] | None = None,
    distinct_dates: bool = False,
) -> list[DateExample]:
    """``n`` :class:`DateExample` of ``split``, each a random date in a random format.

    Dates are drawn with replacement unless ``distinct_dates`` (for evaluation sets, where each
    date should count once). The same ``seed`` gives the same examples; ``formats`` restricts
    the choice of format."""
    n = validation.check_positive_int("n", n)
    names = FORMAT_NAMES if formats is None else tuple(formats)
    if not names:
        raise ValueError("formats must name at least one format")
    chosen = [get_format(name) for name in names]
    pool = _split_dates(split)
    if distinct_dates and n > len(pool):
        raise ValueError(f"cannot draw {n} distinct dates from the {len(pool)} of split {split!r}")
    rng = random.Random(validation.check_int("seed", seed))
    days = rng.sample(pool, n) if distinct_dates else None
    out = []
    for i in range(n):
        d = days[i] if days is not None else pool[rng.randrange(len(pool))]
        f = chosen[rng.randrange(len(chosen))]
        out.append(DateExample(d, f.name, f.render(d), d.isoformat()))
    return out


class CharVocab:
    """A character vocabulary: ``<pad>`` = 0, ``<bos>`` = 1, ``<eos>`` = 2, then ``chars``."""

    def __init__(self, chars: str | Sequence[str]):
        chars = list(chars)
        if not chars or any(not isinstance(c, str) or len(c) != 1 for c in chars):
            raise ValueError(f"chars must be single characters, got {chars!r}")
        if len(set(chars)) != len(chars):
            raise ValueError("chars must not repeat")
        self.tokens: tuple[str, ...] = (*SPECIALS, *chars)
        self.index = {t: i for i, t in enumerate(self.tokens)}
        self.pad_id, self.bos_id, self.eos_id = PAD_ID, BOS_ID, EOS_ID

    def __len__(self) -> int:
        return len(self.tokens)

    def __repr__(self) -> str:
        return f"CharVocab({''.join(self.tokens[len(SPECIALS) :])!r})"

    def encode(self, text: str, bos: bool = False, eos: bool = True) -> list[int]:
        """Ids of the characters of ``text``, with ``<bos>`` first and ``<eos>`` last if asked."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        bos, eos = validation.check_bool("bos", bos), validation.check_bool("eos", eos)
        try:
            ids = [self.index[c] for c in text]  # specials are never a single character
        except KeyError:
            unknown = sorted({c for c in text if c not in self.index})
            raise ValueError(
                f"characters {unknown} of {text!r} are not in the vocabulary"
            ) from None
        return [self.bos_id] * bos + ids + [self.eos_id] * eos

    def encode_batch(
        self, texts: Sequence[str], bos: bool = False, eos: bool = True, length: int | None = None
    ) -> Tensor:
        """``(B, L)`` int64 ids of ``texts``, padded to ``length`` (default: the longest)."""
        if isinstance(texts, str) or len(texts) == 0:
            raise ValueError("texts must be a non-empty sequence of strings")
        encoded = [self.encode(t, bos, eos) for t in texts]
        longest = max(len(e) for e in encoded)
        L = longest if length is None else validation.check_non_negative_int("length", length)
        if L < longest:
            raise ValueError(f"length={length} is shorter than the longest encoding ({longest})")
        padded = [e + [self.pad_id] * (L - len(e)) for e in encoded]
        return torch.tensor(padded, dtype=torch.long)  # (B, L)

    def decode(self, ids: Sequence[int] | Tensor) -> str:
        """The text of ``ids`` before the first ``<eos>``, a leading ``<bos>`` dropped.

        Any other ``<pad>`` or ``<bos>`` is written out by name, so a malformed sequence never
        passes for a clean string."""
        if isinstance(ids, Tensor):
            if ids.dim() != 1:
                raise ValueError(
                    f"decode needs a 1-d sequence of ids, got shape {tuple(ids.shape)}"
                )
            ids = ids.tolist()
        chars = []
        for position, i in enumerate(ids):
            i = validation.check_int("each id", i)  # True is not the id 1
            if not 0 <= i < len(self.tokens):
                raise ValueError(f"id {i} is outside the vocabulary of size {len(self.tokens)}")
            if i == self.eos_id:
                break
            if not (position == 0 and i == self.bos_id):
                chars.append(self.tokens[i])
        return "".join(chars)

    def decode_batch(self, ids: Tensor) -> list[str]:
        """Decode each row of a ``(B, L)`` tensor of ids."""
        if not isinstance(ids, Tensor) or ids.dim() != 2:
            raise ValueError("decode_batch needs a (B, L) tensor of ids")
        return [self.decode(row) for row in ids]


def _source_alphabet() -> str:
    names = "".join(MONTHS) + "".join(WEEKDAYS) + "".join(m[:3].upper() for m in MONTHS)
    return "".join(sorted(set(names + "stndrdhof" + "0123456789" + " ,./-")))


#: Every character any format can produce, and the ISO alphabet.
SOURCE_VOCAB = CharVocab(_source_alphabet())
TARGET_VOCAB = CharVocab("0123456789-")

#: The target's length in tokens, <bos> and <eos> included.
TARGET_LEN = len("YYYY-MM-DD") + 2
# ``LM_MAX_LEN``, the longest ``source <bos> target <eos>`` sequence of :func:`lm_sequence`,
# is ``MAX_SOURCE_LEN - 1 + TARGET_LEN``, built on first use like ``MAX_SOURCE_LEN``.


@functools.cache
def _max_source_len() -> int:
    """``MAX_SOURCE_LEN``, computed on first use from one year rendered in every format."""
    year = [datetime.date(2049, 1, 1) + datetime.timedelta(days=i) for i in range(365)]
    return 1 + max(len(f.render(d)) for f in FORMATS for d in year)


def __getattr__(name: str) -> int:
    """Module attributes built on first use (PEP 562): importing the module renders nothing."""
    if name == "MAX_SOURCE_LEN":
        return _max_source_len()
    if name == "LM_MAX_LEN":
        return _max_source_len() - 1 + TARGET_LEN
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def encode_examples(examples: Sequence[DateExample]) -> tuple[Tensor, Tensor]:
    """``(src (B, S), tgt (B, TARGET_LEN))``: sources ending in ``<eos>``, padded; targets
    ``<bos> YYYY-MM-DD <eos>``."""
    if len(examples) == 0:
        raise ValueError("examples must not be empty")
    src = SOURCE_VOCAB.encode_batch([e.source for e in examples])  # (B, S)
    tgt = TARGET_VOCAB.encode_batch([e.target for e in examples], bos=True)  # (B, 12)
    return src, tgt


def lm_sequence(example: DateExample) -> list[int]:
    """One example for a decoder-only model: ``source <bos> target <eos>``."""
    return [*SOURCE_VOCAB.encode(example.source, eos=False), BOS_ID] + SOURCE_VOCAB.encode(
        example.target
    )


def encode_lm_examples(
    examples: Sequence[DateExample], loss_on_source: bool = False
) -> tuple[Tensor, Tensor]:
    """``(inputs, labels)``, both ``(B, L - 1)``: the padded sequences shifted by one token.

    Labels of source positions are ``<pad>`` (no loss) unless ``loss_on_source``."""
    if len(examples) == 0:
        raise ValueError("examples must not be empty")
    validation.check_bool("loss_on_source", loss_on_source)
    sequences = [lm_sequence(e) for e in examples]
    L = max(len(s) for s in sequences)
    ids = torch.tensor([s + [PAD_ID] * (L - len(s)) for s in sequences])  # (B, L)
    inputs, labels = ids[:, :-1], ids[:, 1:].clone()  # (B, L - 1) each
    if not loss_on_source:
        # A label before the <bos> predicts a source character: leave it out of the loss.
        after_bos = (inputs == BOS_ID).long().cumsum(dim=1) > 0  # (B, L - 1)
        labels = labels.masked_fill(~after_bos, PAD_ID)
    return inputs, labels


def month_word_span(example: DateExample) -> tuple[int, int]:
    """Source positions ``[start, end)`` of the month word of ``example``."""
    f = get_format(example.format)
    if not f.word_month:
        raise ValueError(f"format {f.name!r} writes the month as digits, not as a word")
    full = _month(example.date)
    for word in (full, full[:3], full[:3].upper()):
        start = example.source.find(word)
        if start >= 0:
            return start, start + len(word)
    raise ValueError(f"no month word for {example.date} in {example.source!r}")


@dataclass(frozen=True)
class Recipe:
    """The hyperparameters that train the dates model, shared by chapter 11 and
    ``benchmarks/train_dates.py``; the chapter's schedule has ``notebook_steps`` steps (the run
    that :mod:`attention_book.checkpoints` saved), the benchmark's ``steps``."""

    d_model: int = 64
    num_heads: int = 4
    num_encoder_layers: int = 2
    num_decoder_layers: int = 2
    d_ff: int = 128
    dropout: float = 0.0
    train_examples: int = 50_000
    batch_size: int = 128
    steps: int = 500
    notebook_steps: int = 400
    lr: float = 5e-3
    warmup_steps: int = 60
    weight_decay: float = 0.01
    label_smoothing: float = 0.0
    seed: int = 0


RECIPE = Recipe()
