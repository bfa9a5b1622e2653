"""Tests for attention_book.dates: formats, the split by date, vocabularies, tensors."""

import datetime
import re
import subprocess
import sys
import types

import numpy as np
import pytest
import torch

from attention_book import dates


def test_every_format_parses_back_to_its_date():
    examples = dates.sample(3000, "train", seed=3) + dates.sample(500, "test", seed=4)
    for e in examples:
        assert dates.parse(e.source, e.format) == e.date, e
        assert e.target == e.date.isoformat()
        assert datetime.date.fromisoformat(e.target) == e.date


def test_every_format_appears_and_reads_back_on_edge_dates():
    edges = [
        dates.FIRST_DATE,
        dates.LAST_DATE,
        datetime.date(2000, 2, 29),
        datetime.date(2026, 11, 22),
        datetime.date(1999, 12, 1),
    ]
    for fmt in dates.FORMATS:
        for d in edges:
            text = dates.render(d, fmt.name)
            assert dates.parse(text, fmt.name) == d
            assert len(dates.SOURCE_VOCAB.encode(text)) <= dates.MAX_SOURCE_LEN
    names = {e.format for e in dates.sample(2000, seed=0)}
    assert names == set(dates.FORMAT_NAMES)
    assert len(dates.FORMATS) == len(set(dates.FORMAT_NAMES)) >= 10


def test_the_example_of_the_chapter():
    d = datetime.date(2026, 11, 22)
    assert dates.render(d, "d_month_yyyy") == "22 November 2026"
    assert dates.render(d, "mon_d_yyyy") == "Nov 22, 2026"
    assert dates.render(d, "dd/mm/yyyy") == "22/11/2026"
    assert dates.render(d, "weekday_d_mon_yyyy") == "Sunday, 22 Nov. 2026"
    assert dates.render(d, "month_dth_yyyy") == "November 22nd, 2026"
    assert dates.to_iso(d) == "2026-11-22"


# Written out here, independently of the module's own tables and of the locale.
ENGLISH_WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def test_weekdays_are_true_and_a_wrong_weekday_is_caught():
    full = [f.name for f in dates.FORMATS if "%A" in f.strptime]
    short = [f.name for f in dates.FORMATS if "%a" in f.strptime]
    assert len(full) == 2 and len(short) == 1  # every weekday format is covered below
    for names, cut in ((full, None), (short, 3)):
        examples = dates.sample(700, seed=5, formats=names)
        assert {e.format for e in examples} == set(names)
        for e in examples:
            named = e.source.split(",")[0]
            assert named == ENGLISH_WEEKDAYS[e.date.weekday()][:cut], e
    with pytest.raises(ValueError, match="names Monday"):
        dates.parse("Monday, November 22, 2026", "weekday_month_d_yyyy")
    with pytest.raises(ValueError, match="names Sunday"):
        dates.parse("Sunday, 22 Nov 2026", "wkd_d_mon_yyyy")  # the short form is expected
    with pytest.raises(ValueError, match="not a month name"):
        dates.parse("22 Novembre 2026", "d_month_yyyy")


def test_abbreviations_end_with_a_period_only_where_letters_were_cut():
    assert dates.render(datetime.date(2030, 5, 5), "weekday_d_mon_yyyy") == "Sunday, 5 May 2030"
    assert dates.render(datetime.date(2030, 6, 5), "weekday_d_mon_yyyy") == "Wednesday, 5 Jun. 2030"
    assert dates.parse("Sunday, 5 May 2030", "weekday_d_mon_yyyy") == datetime.date(2030, 5, 5)


def test_parse_reads_names_with_its_own_tables_not_the_locale(monkeypatch):
    """strptime's %A, %a, %B and %b depend on LC_TIME; parse must only ever ask for digits."""
    patterns = []

    class RecordingDatetime(datetime.datetime):
        @classmethod
        def strptime(cls, text, pattern):
            patterns.append(pattern)
            return datetime.datetime.strptime(text, pattern)

    fake = types.SimpleNamespace(
        datetime=RecordingDatetime, date=datetime.date, timedelta=datetime.timedelta
    )
    monkeypatch.setattr(dates, "datetime", fake)
    d = datetime.date(2026, 11, 22)
    for fmt in dates.FORMATS:
        assert dates.parse(fmt.render(d), fmt) == d
    assert len(patterns) == len(dates.FORMATS)
    assert all(re.fullmatch(r"(%[dmY]|[ ,./-])+", pattern) for pattern in patterns), patterns


def test_numeric_formats_are_day_first_and_unambiguous():
    d = datetime.date(2026, 3, 5)
    assert dates.render(d, "dd/mm/yyyy") == "05/03/2026"
    assert dates.render(d, "dd.mm.yyyy") == "05.03.2026"
    assert dates.render(d, "yyyy/mm/dd") == "2026/03/05"
    # No two dates share a source string in any format.
    year = [datetime.date(2026, 1, 1) + datetime.timedelta(days=i) for i in range(365)]
    for fmt in dates.FORMAT_NAMES:
        assert len({dates.render(x, fmt) for x in year}) == 365


def test_ordinals():
    got = [dates.ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 31)]
    assert got == [
        "1st",
        "2nd",
        "3rd",
        "4th",
        "11th",
        "12th",
        "13th",
        "21st",
        "22nd",
        "23rd",
        "31st",
    ]
    with pytest.raises(ValueError, match="1..31"):
        dates.ordinal(0)


def test_the_split_is_pinned():
    """The hash must never change: the chapter's held-out example and counts depend on it."""
    test_dates = dates.dates_in_split("test")
    assert len(test_dates) == 3657
    assert test_dates[:3] == [
        datetime.date(1950, 1, 8),
        datetime.date(1950, 1, 9),
        datetime.date(1950, 1, 11),
    ]
    assert test_dates[-1] == datetime.date(2049, 12, 31)
    assert dates.split_of(datetime.date(2025, 12, 24)) == "test"
    assert dates.split_of(datetime.date(2026, 11, 22)) == "train"
    assert dates.split_of(datetime.date(1950, 1, 1)) == "train"


def test_distinct_dates_sample_each_date_once():
    with_replacement = dates.sample(2000, "test", seed=12345)
    assert len({e.date for e in with_replacement}) < 1600  # about 1,540 distinct dates
    distinct = dates.sample(2000, "test", seed=12345, distinct_dates=True)
    assert len(distinct) == len({e.date for e in distinct}) == 2000
    assert all(dates.split_of(e.date) == "test" for e in distinct)
    assert len({e.format for e in distinct}) == len(dates.FORMATS)
    assert distinct == dates.sample(2000, "test", seed=12345, distinct_dates=True)
    everything = dates.sample(3657, "test", seed=1, distinct_dates=True)
    assert {e.date for e in everything} == set(dates.dates_in_split("test"))
    with pytest.raises(ValueError, match="cannot draw 3658 distinct dates"):
        dates.sample(3658, "test", distinct_dates=True)


def test_split_is_by_date_disjoint_complete_and_about_ten_percent():
    train_dates = set(dates.dates_in_split("train"))
    test_dates = set(dates.dates_in_split("test"))
    assert not train_dates & test_dates
    total = (dates.LAST_DATE - dates.FIRST_DATE).days + 1
    assert len(train_dates) + len(test_dates) == total
    assert 0.09 < len(test_dates) / total < 0.11
    train_examples = dates.sample(5000, "train", seed=6)
    test_examples = dates.sample(5000, "test", seed=6)
    assert all(e.date in train_dates for e in train_examples)
    assert all(e.date in test_dates for e in test_examples)
    # No test source string, in any format, is a training source string.
    assert not {e.source for e in train_examples} & {e.source for e in test_examples}


def test_sampling_is_deterministic_and_seed_dependent():
    assert dates.sample(200, seed=7) == dates.sample(200, seed=7)
    assert dates.sample(200, seed=7) != dates.sample(200, seed=8)
    only = dates.sample(50, seed=0, formats=["yyyymmdd"])
    assert {e.format for e in only} == {"yyyymmdd"}


def test_vocab_round_trip_and_specials():
    v = dates.SOURCE_VOCAB
    assert v.tokens[:3] == ("<pad>", "<bos>", "<eos>")
    assert (v.pad_id, v.bos_id, v.eos_id) == (0, 1, 2)
    for e in dates.sample(300, seed=9):
        ids = v.encode(e.source, bos=True, eos=True)
        assert ids[0] == v.bos_id and ids[-1] == v.eos_id
        assert v.decode(ids) == e.source
        assert dates.TARGET_VOCAB.decode(dates.TARGET_VOCAB.encode(e.target)) == e.target
    assert len(dates.TARGET_VOCAB) == 3 + 11
    assert v.decode([5, 6, v.eos_id, 7]) == v.decode([5, 6])  # stops at <eos>


def test_decode_never_hides_a_special_token_before_eos():
    v = dates.TARGET_VOCAB
    two, five = v.index["2"], v.index["5"]
    assert v.decode([v.bos_id, two, five, v.eos_id, v.pad_id]) == "25"  # leading <bos> dropped
    assert v.decode([two, v.pad_id, five, v.eos_id]) == "2<pad>5"
    assert v.decode([two, v.bos_id, five, v.eos_id]) == "2<bos>5"
    assert v.decode([two, five, v.pad_id]) == "25<pad>"  # a <pad> where <eos> should be
    assert v.decode_batch(torch.tensor([[two, v.pad_id, v.eos_id]])) == ["2<pad>"]


def test_encode_batch_pads_on_the_right():
    v = dates.TARGET_VOCAB
    batch = v.encode_batch(["12", "3"], bos=True)  # (2, 4)
    assert batch.dtype == torch.long and batch.shape == (2, 4)
    assert batch[1].tolist() == [v.bos_id, v.index["3"], v.eos_id, v.pad_id]
    assert v.decode_batch(batch) == ["12", "3"]
    assert v.encode_batch(["1"], length=6).shape == (1, 6)


def test_encode_examples_shapes_and_padding():
    examples = dates.sample(64, seed=10)
    src, tgt = dates.encode_examples(examples)
    assert src.shape[0] == tgt.shape[0] == 64
    assert src.shape[1] <= dates.MAX_SOURCE_LEN
    assert tgt.shape[1] == dates.TARGET_LEN == 12
    assert (tgt[:, 0] == dates.BOS_ID).all() and (tgt[:, -1] == dates.EOS_ID).all()
    lengths = (src != dates.PAD_ID).sum(1)
    for row, e, n in zip(src, examples, lengths, strict=True):
        assert n == len(e.source) + 1  # the characters and <eos>
        assert (row[n:] == dates.PAD_ID).all()
        assert row[n - 1] == dates.EOS_ID


def test_month_word_span():
    d = datetime.date(2026, 11, 22)
    cases = {
        "d_month_yyyy": "November",
        "mon_d_yyyy": "Nov",
        "dd_MON_yyyy": "NOV",
        "weekday_d_mon_yyyy": "Nov",
        "dth_of_month_yyyy": "November",
    }
    for fmt, word in cases.items():
        e = dates.DateExample(d, fmt, dates.render(d, fmt), dates.to_iso(d))
        start, end = dates.month_word_span(e)
        assert e.source[start:end] == word
    e = dates.DateExample(d, "dd/mm/yyyy", "22/11/2026", "2026-11-22")
    with pytest.raises(ValueError, match="as digits"):
        dates.month_word_span(e)


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="unknown date format"):
        dates.render(datetime.date(2000, 1, 1), "dd-mm-yy")
    with pytest.raises(ValueError, match="outside the task's range"):
        dates.render(datetime.date(2100, 1, 1), "d_month_yyyy")
    with pytest.raises(TypeError, match="datetime.date"):
        dates.to_iso("2000-01-01")
    with pytest.raises(ValueError, match="split must be one of"):
        dates.dates_in_split("validation")
    with pytest.raises(ValueError, match="positive int"):
        dates.sample(0)
    with pytest.raises(ValueError, match="at least one format"):
        dates.sample(3, formats=[])
    with pytest.raises(ValueError, match="not in the vocabulary"):
        dates.TARGET_VOCAB.encode("2026/11/22")
    with pytest.raises(TypeError, match="must be a str"):
        dates.TARGET_VOCAB.encode(2026)
    with pytest.raises(ValueError, match="shorter than the longest"):
        dates.TARGET_VOCAB.encode_batch(["2026"], length=2)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        dates.TARGET_VOCAB.decode([99])
    with pytest.raises(ValueError, match="must not repeat"):
        dates.CharVocab("aa")
    with pytest.raises(ValueError, match="must not be empty"):
        dates.encode_examples([])


def test_recipe_builds_a_model_config():
    from attention_book import transformer

    config = transformer.dates_config()
    assert config.src_vocab_size == len(dates.SOURCE_VOCAB)
    assert config.tgt_vocab_size == len(dates.TARGET_VOCAB)
    assert config.max_len >= dates.MAX_SOURCE_LEN and config.pad_id == dates.PAD_ID
    assert config.d_model == dates.RECIPE.d_model and config.d_ff == dates.RECIPE.d_ff
    assert dates.RECIPE.notebook_steps <= dates.RECIPE.steps
    assert dates.RECIPE.warmup_steps < dates.RECIPE.notebook_steps


def test_importing_renders_nothing_and_max_source_len_is_built_on_first_use():
    code = (
        "from attention_book import dates\n"
        "assert dates._max_source_len.cache_info().currsize == 0\n"
        "assert dates.MAX_SOURCE_LEN == 30\n"
        "assert dates._max_source_len.cache_info().currsize == 1\n"
        "from attention_book import transformer\n"
        "assert transformer.dates_config().max_len == 30\n"
        "from attention_book.dates import MAX_SOURCE_LEN\n"
        "assert MAX_SOURCE_LEN == 30\n"
        "assert dates.LM_MAX_LEN == 30 - 1 + dates.TARGET_LEN == 41\n"
        "from attention_book import gpt\n"
        "assert gpt.dates_config().max_len == dates.LM_MAX_LEN\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    with pytest.raises(AttributeError, match="no attribute 'MAX_TARGET_LEN'"):
        _ = dates.MAX_TARGET_LEN


def test_the_longest_source_is_max_source_len():
    longest = max(
        (len(f.render(d)) + 1, f.name, d)
        for f in dates.FORMATS
        for d in (datetime.date(2049, 9, 1) + datetime.timedelta(days=i) for i in range(30))
    )
    assert longest[0] == dates.MAX_SOURCE_LEN == 30, longest


def test_integer_like_arguments():
    assert dates.ordinal(np.int64(22)) == "22nd"
    assert dates.sample(5, seed=np.int64(3)) == dates.sample(np.int32(5), seed=3)
    assert dates.TARGET_VOCAB.encode_batch(["1"], length=np.int64(4)).shape == (1, 4)
    with pytest.raises(ValueError, match="day must be an int, got 2.0 of type float"):
        dates.ordinal(2.0)
    with pytest.raises(ValueError, match="day must be an int in 1..31, got 32"):
        dates.ordinal(np.int64(32))
    with pytest.raises(ValueError, match="seed must be an int, got '3' of type str"):
        dates.sample(5, seed="3")


def test_parse_refuses_a_string_that_strptime_would_read_leniently():
    with pytest.raises(ValueError, match="'2026112' is not a date written in 'yyyymmdd'"):
        dates.parse("2026112", "yyyymmdd")
    assert dates.parse("20261102", "yyyymmdd") == datetime.date(2026, 11, 2)


def test_encode_and_decode_refuse_bools_and_non_bools_in_the_wrong_place():
    with pytest.raises(TypeError, match="bos must be a bool"):
        dates.SOURCE_VOCAB.encode("1", bos=2)  # it used to add two <bos>
    with pytest.raises(ValueError, match="each id must be an int, got True"):
        dates.SOURCE_VOCAB.decode([True, 5])
    assert dates.SOURCE_VOCAB.encode("1", bos=np.bool_(True))[0] == dates.BOS_ID
