"""A BERT sentence encoder (Devlin et al., 2019) built from the book's post-LN ``EncoderLayer``.

BERT adds learned token, position and token-type embeddings with a LayerNorm on their sum,
and uses the exact GELU with eps 1e-12. A sentence encoder such as all-MiniLM-L6-v2
(Reimers and Gurevych, 2019) averages the real tokens' outputs and scales to length 1."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attention_book import validation
from attention_book.transformer import EncoderLayer


@dataclass(frozen=True)
class BertConfig:
    """Hyperparameters of a BERT encoder (defaults: all-MiniLM-L6-v2's), named as in the paper."""

    vocab_size: int = 30522
    d_model: int = 384
    num_heads: int = 12
    num_layers: int = 6
    d_ff: int = 1536
    max_len: int = 512
    type_vocab_size: int = 2
    eps: float = 1e-12

    def __post_init__(self) -> None:
        for name in ("vocab_size", "d_model", "num_heads", "num_layers", "d_ff", "max_len"):
            validation.check_positive_int(name, getattr(self, name))
        validation.check_positive_int("type_vocab_size", self.type_vocab_size)
        validation.check_heads(self.d_model, self.num_heads)
        if not validation.check_number("eps", self.eps) > 0:
            raise ValueError(f"eps must be a positive float, got {self.eps!r}")

    @classmethod
    def from_json(cls, path: str | Path) -> BertConfig:
        """Read a Hugging Face BERT ``config.json``; ValueError unless post-LN BERT with GELU."""
        raw = json.loads(Path(path).read_text())
        if raw.get("model_type") != "bert" or raw.get("hidden_act") != "gelu":
            raise ValueError(
                f"{path} describes model_type={raw.get('model_type')!r} with "
                f"hidden_act={raw.get('hidden_act')!r}; expected 'bert' with 'gelu'"
            )
        if raw.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"{path}: only absolute position embeddings are supported")
        return cls(
            vocab_size=raw["vocab_size"],
            d_model=raw["hidden_size"],
            num_heads=raw["num_attention_heads"],
            num_layers=raw["num_hidden_layers"],
            d_ff=raw["intermediate_size"],
            max_len=raw["max_position_embeddings"],
            type_vocab_size=raw["type_vocab_size"],
            eps=float(raw["layer_norm_eps"]),
        )


class BertEmbeddings(nn.Module):
    """Token + position + token-type embeddings, then LayerNorm."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.token = nn.Embedding(config.vocab_size, config.d_model)
        self.position = nn.Embedding(config.max_len, config.d_model)
        self.token_type = nn.Embedding(config.type_vocab_size, config.d_model)
        self.norm = nn.LayerNorm(config.d_model, eps=config.eps)

    def forward(self, ids: Tensor, token_type: Tensor | None = None) -> Tensor:
        """``ids (B, T)`` and ``token_type (B, T)`` (default zeros) -> ``(B, T, D)``."""
        T = ids.shape[1]
        if token_type is None:
            token_type = torch.zeros_like(ids)  # (B, T)
        x = self.token(ids) + self.position.weight[:T] + self.token_type(token_type)  # (B, T, D)
        return self.norm(x)


class BertEncoder(nn.Module):
    """BERT's embeddings and a stack of post-LN ``EncoderLayer`` with exact GELU."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        if not isinstance(config, BertConfig):
            raise TypeError(f"expected a BertConfig, got {type(config).__name__}")
        self.config = c = config
        self.embeddings = BertEmbeddings(c)
        self.layers = nn.ModuleList(
            EncoderLayer(c.d_model, c.num_heads, c.d_ff, activation="gelu", eps=c.eps)
            for _ in range(c.num_layers)
        )

    def _check(self, ids: object, real: object) -> Tensor | None:
        """Check the inputs once; return the ``(B, 1, 1, T)`` key mask (None: no padding)."""
        c = self.config
        validation.check_ids("ids", ids, vocab_size=c.vocab_size, max_len=c.max_len)
        if real is None:
            return None
        B, T = ids.shape
        if not isinstance(real, Tensor) or real.dtype != torch.bool or real.shape != (B, T):
            got = f"{real.dtype} {tuple(real.shape)}" if isinstance(real, Tensor) else real
            raise ValueError(f"real must be a bool (B, T) = {(B, T)} mask, got {got}")
        return real[:, None, None, :]  # (B, T) -> (B, 1, 1, T)

    def forward(self, ids: Tensor, real: Tensor | None = None) -> Tensor:
        """``ids (B, T)``, bool ``real (B, T)`` (None: no padding) -> ``(B, T, D)``."""
        mask = self._check(ids, real)  # (B, 1, 1, T) or None
        x = self.embeddings(ids)  # (B, T) -> (B, T, D)
        for layer in self.layers:
            x, _ = layer(x, mask)  # (B, T, D)
        return x

    @torch.no_grad()
    def attention_weights(self, ids: Tensor, real: Tensor | None = None) -> list[Tensor]:
        """One ``(B, H, T, T)`` tensor per layer."""
        mask = self._check(ids, real)  # (B, 1, 1, T) or None
        x, weights = self.embeddings(ids), []  # (B, T) -> (B, T, D)
        for layer in self.layers:
            x, w = layer(x, mask, need_weights=True)  # (B, T, D), (B, H, T, T)
            weights.append(w)
        return weights


def mean_pool(hidden: Tensor, real: Tensor) -> Tensor:
    """``(B, T, D) -> (B, D)``: the mean over the real tokens (bool ``(B, T)``)."""
    if real.dtype != torch.bool or tuple(real.shape) != tuple(hidden.shape[:2]):
        raise ValueError(
            f"real must be a bool mask of shape {tuple(hidden.shape[:2])}, "
            f"got {real.dtype} {tuple(real.shape)}"
        )
    counts = real.sum(dim=1, keepdim=True)  # (B, 1)
    if (counts == 0).any():
        raise ValueError("every sentence needs at least one real token")
    weights = real[..., None].to(hidden.dtype)  # (B, T) -> (B, T, 1)
    return (hidden * weights).sum(dim=1) / counts.to(hidden.dtype)  # (B, T, D) -> (B, D)


#: BERT's tensor names (``encoder.layer.{i}.`` + suffix) -> this package's, inside layer i.
LAYER_NAMES = {
    "attention.self.query": "self_attn.w_q",
    "attention.self.key": "self_attn.w_k",
    "attention.self.value": "self_attn.w_v",
    "attention.output.dense": "self_attn.w_o",
    "attention.output.LayerNorm": "norm1",
    "intermediate.dense": "ff.w_1",
    "output.dense": "ff.w_2",
    "output.LayerNorm": "norm2",
}
#: BERT's embedding tensors -> this package's.
EMBEDDING_NAMES = {
    "embeddings.word_embeddings": "embeddings.token",
    "embeddings.position_embeddings": "embeddings.position",
    "embeddings.token_type_embeddings": "embeddings.token_type",
    "embeddings.LayerNorm": "embeddings.norm",
}
#: Tensors of a BERT checkpoint that a sentence encoder does not use.
UNUSED_PREFIXES = ("pooler.", "embeddings.position_ids")


def book_name(bert_name: str) -> str | None:
    """This package's name for a Hugging Face BERT tensor, or None for one it does not use."""
    if bert_name.startswith(UNUSED_PREFIXES):
        return None
    stem, _, kind = bert_name.rpartition(".")  # kind: "weight" or "bias"
    if kind not in ("weight", "bias"):
        raise ValueError(f"unexpected tensor name {bert_name!r}")
    if stem in EMBEDDING_NAMES:
        return f"{EMBEDDING_NAMES[stem]}.{kind}"
    parts = stem.split(".", 3)  # ["encoder", "layer", "3", "attention.self.query"]
    if len(parts) == 4 and parts[:2] == ["encoder", "layer"] and parts[3] in LAYER_NAMES:
        return f"layers.{parts[2]}.{LAYER_NAMES[parts[3]]}.{kind}"
    raise ValueError(f"unexpected tensor name {bert_name!r}")


def load_bert_state(model: BertEncoder, tensors: dict[str, Tensor]) -> None:
    """Copy a Hugging Face BERT state dict into ``model``, checking that every tensor is used."""
    ours = {}
    for name, tensor in tensors.items():
        target = book_name(name)
        if target is not None:
            ours[target] = tensor
    missing, unexpected = model.load_state_dict(ours, strict=False)
    if missing or unexpected:
        raise ValueError(f"checkpoint does not fit: missing {missing}, unexpected {unexpected}")


class SentenceEncoder(nn.Module):
    """A tokenizer and a :class:`BertEncoder`, with mean pooling and L2 normalisation."""

    def __init__(self, encoder: BertEncoder, tokenizer: object) -> None:
        super().__init__()
        self.encoder = encoder
        self.tokenizer = tokenizer

    def tokenize(self, sentences: Sequence[str]) -> tuple[Tensor, Tensor]:
        """``(ids (N, T), real (N, T))`` for N sentences, padded to the longest."""
        if isinstance(sentences, str) or not sentences:
            raise ValueError("sentences must be a non-empty list of strings")
        if not all(isinstance(s, str) for s in sentences):
            raise TypeError("sentences must all be strings")
        encodings = self.tokenizer.encode_batch(list(sentences))
        ids = torch.tensor([e.ids for e in encodings])  # (N, T)
        real = torch.tensor([e.attention_mask for e in encodings]).bool()  # (N, T)
        return ids, real

    @torch.no_grad()
    def embed(self, sentences: Sequence[str]) -> Tensor:
        """``(N, D)`` unit vectors: the mean of the last layer over real tokens."""
        ids, real = self.tokenize(sentences)  # (N, T), (N, T)
        hidden = self.encoder(ids, real)  # (N, T, D)
        return F.normalize(mean_pool(hidden, real), dim=-1)  # (N, T, D) -> (N, D)

    def attention_maps(self, sentence: str) -> tuple[list[str], Tensor]:
        """``(tokens, weights (N, H, T, T))`` of one sentence, ``[CLS]`` and ``[SEP]`` included."""
        if not isinstance(sentence, str):
            raise TypeError(f"sentence must be a str, got {type(sentence).__name__}")
        encoding = self.tokenizer.encode(sentence)
        ids = torch.tensor([encoding.ids])  # (1, T)
        weights = self.encoder.attention_weights(ids)  # N x (1, H, T, T)
        return list(encoding.tokens), torch.cat(weights)  # (N, H, T, T)
