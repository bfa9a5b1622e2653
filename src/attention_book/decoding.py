"""Generation for encoder-decoder models: greedy decoding, beam search, exact match.

A model has ``encode(src (B, S)) -> (memory (B, S, D), src_mask (B, 1, 1, S))`` and
``decode(tgt (B, T), memory, src_mask) -> logits (B, T, V)``, causal in ``tgt``. Outputs
come without ``bos_id`` and hold ``pad_id`` after ``eos_id``."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attention_book import train, validation


def _check_decoding_args(
    model: nn.Module, src: Tensor, max_len: int, bos_id: int, eos_id: int, pad_id: int
) -> tuple[int, int, int, int]:
    """Check the arguments every decoder shares; return the ints as Python ints."""
    validation.check_ids("src", src)
    max_len = validation.check_positive_int("max_len", max_len)
    ids = {"bos_id": bos_id, "eos_id": eos_id, "pad_id": pad_id}
    bos_id, eos_id, pad_id = (validation.check_non_negative_int(k, v) for k, v in ids.items())
    V = getattr(getattr(model, "config", None), "tgt_vocab_size", None)
    for name, i in (("bos_id", bos_id), ("eos_id", eos_id), ("pad_id", pad_id)):
        if V is not None and i >= V:
            raise ValueError(f"{name}={i} is outside the target vocabulary [0, {V})")
    return max_len, bos_id, eos_id, pad_id


@torch.no_grad()
def greedy_decode(
    model: nn.Module,
    src: Tensor,
    max_len: int,
    bos_id: int = 1,
    eos_id: int = 2,
    pad_id: int = 0,
) -> Tensor:
    """``(B, L)`` ids, ``L <= max_len``, taking the most probable token at each step.

    The decoder re-runs on the growing prefix (at these lengths simpler than a cache, and the
    same result). Stops when every row has produced ``eos_id``; B = 0 gives ``(0, 0)``."""
    args = _check_decoding_args(model, src, max_len, bos_id, eos_id, pad_id)
    max_len, bos_id, eos_id, pad_id = args
    if src.shape[0] == 0:  # nothing to generate, and the model need not accept B = 0
        return src.new_empty(0, 0)
    with train.eval_mode(model):
        memory, src_mask = model.encode(src)  # (B, S, D), (B, 1, 1, S)
        B = src.shape[0]
        seqs = torch.full((B, 1), bos_id, dtype=torch.long, device=src.device)  # (B, 1)
        finished = torch.zeros(B, dtype=torch.bool, device=src.device)  # (B,)
        for _ in range(max_len):
            logits = model.decode(seqs, memory, src_mask)[:, -1]  # (B, t, V) -> (B, V)
            next_ids = logits.argmax(dim=-1)  # (B,)
            next_ids = next_ids.masked_fill(finished, pad_id)
            seqs = torch.cat([seqs, next_ids[:, None]], dim=1)  # (B, t) -> (B, t + 1)
            finished |= next_ids == eos_id
            if bool(finished.all()):
                break
    return seqs[:, 1:]  # drop <bos>: (B, L + 1) -> (B, L)


@torch.no_grad()
def beam_search(
    model: nn.Module,
    src: Tensor,
    max_len: int,
    beam_width: int = 4,
    bos_id: int = 1,
    eos_id: int = 2,
    pad_id: int = 0,
    length_penalty: float = 0.0,
) -> tuple[Tensor, Tensor]:
    """Keep the ``beam_width`` (K) most probable prefixes per source; return the best.

    The B x K beams run together. A finished beam keeps its slot, extended by ``pad_id`` at no
    cost, and competes with its final score. The best finished beam is returned (an unfinished
    one only if none finished), ranked by ``log p / length ** length_penalty``; the search and
    the scores use plain log p. ``beam_width=1`` is :func:`greedy_decode`.

    Returns:
        ``(tokens (B, L), scores (B,))``, the total log-probability of each sequence."""
    args = _check_decoding_args(model, src, max_len, bos_id, eos_id, pad_id)
    max_len, bos_id, eos_id, pad_id = args
    beam_width = validation.check_positive_int("beam_width", beam_width)
    if validation.check_number("length_penalty", length_penalty) < 0:
        raise ValueError(f"length_penalty must be a non-negative float, got {length_penalty!r}")
    B, K = src.shape[0], beam_width
    if B == 0:  # nothing to generate, and the model need not accept B = 0
        return src.new_empty(0, 0), torch.zeros(0, device=src.device)
    with train.eval_mode(model):
        memory, src_mask = model.encode(src)  # (B, S, D), (B, 1, 1, S)
        memory = memory.repeat_interleave(K, dim=0)  # (B, S, D) -> (B * K, S, D)
        src_mask = src_mask.repeat_interleave(K, dim=0)  # (B, 1, 1, S) -> (B * K, 1, 1, S)
        seqs = torch.full((B * K, 1), bos_id, dtype=torch.long, device=src.device)  # (BK, 1)
        scores = torch.full((B, K), float("-inf"), device=src.device)  # (B, K)
        scores[:, 0] = 0.0  # all beams start equal: keep one, or the first step picks K copies
        finished = torch.zeros(B * K, dtype=torch.bool, device=src.device)  # (BK,)
        lengths = torch.zeros(B * K, device=src.device)  # tokens generated, <eos> included
        offsets = torch.arange(B, device=src.device)[:, None] * K  # (B, 1)
        for _ in range(max_len):
            logits = model.decode(seqs, memory, src_mask)[:, -1]  # (BK, t, V) -> (BK, V)
            V = logits.shape[-1]
            log_p = F.log_softmax(logits.float(), dim=-1)  # (BK, V)
            pad_only = torch.full_like(log_p, float("-inf"))
            pad_only[:, pad_id] = 0.0
            log_p = torch.where(finished[:, None], pad_only, log_p)  # (BK, V)
            candidates = scores.reshape(B * K, 1) + log_p  # (BK, 1) + (BK, V) -> (BK, V)
            scores, flat = candidates.reshape(B, K * V).topk(K, dim=-1)  # (B, K*V) -> (B, K)
            parent = (offsets + flat // V).reshape(-1)  # (B, K) -> (BK,) rows of seqs
            next_ids = (flat % V).reshape(-1)  # (BK,)
            seqs = torch.cat([seqs[parent], next_ids[:, None]], dim=1)  # (BK, t) -> (BK, t + 1)
            lengths = lengths[parent] + (~finished[parent]).float()
            finished = finished[parent] | (next_ids == eos_id)
            if bool(finished.all()):
                break
        ranked = scores / lengths.reshape(B, K).clamp(min=1.0) ** length_penalty  # (B, K)
        complete = finished.reshape(B, K) & scores.isfinite()  # (B, K)
        cut_off = complete.any(dim=1, keepdim=True) & ~complete  # a finished rival exists
        ranked = ranked.masked_fill(cut_off, float("-inf"))  # (B, K)
        best = offsets.reshape(-1) + ranked.argmax(dim=-1)  # (B,)
        tokens = seqs[best, 1:]  # (BK, L + 1) -> (B, L)
        best_scores = scores.reshape(-1)[best]  # (B,)
    return tokens, best_scores


@torch.no_grad()
def sequence_log_prob(
    model: nn.Module, src: Tensor, tokens: Tensor, bos_id: int = 1, eos_id: int = 2
) -> Tensor:
    """``(B,)`` log-probabilities of ``tokens (B, L)`` up to and including the first ``<eos>``."""
    validation.check_ids("src", src)
    validation.check_ids("tokens", tokens)
    if src.shape[0] != tokens.shape[0]:
        raise ValueError(f"src {tuple(src.shape)} and tokens {tuple(tokens.shape)} differ in B")
    if src.shape[0] == 0:
        return torch.zeros(0, device=src.device)
    with train.eval_mode(model):
        memory, src_mask = model.encode(src)  # (B, S, D), (B, 1, 1, S)
        bos = torch.full_like(tokens[:, :1], bos_id)  # (B, 1)
        decoder_input = torch.cat([bos, tokens[:, :-1]], dim=1)  # (B, L)
        log_p = F.log_softmax(model.decode(decoder_input, memory, src_mask).float(), dim=-1)
        picked = log_p.gather(-1, tokens[..., None])[..., 0]  # (B, L, V) -> (B, L)
        is_eos = (tokens == eos_id).long()  # (B, L)
        after_eos = (is_eos.cumsum(dim=1) - is_eos) > 0  # positions after the first <eos>
        return picked.masked_fill(after_eos, 0.0).sum(dim=1)  # (B, L) -> (B,)


def exact_match(predictions: Sequence[str], references: Sequence[str]) -> float:
    """The fraction of predictions equal, character for character, to their reference."""
    if isinstance(predictions, str) or isinstance(references, str):
        raise TypeError("predictions and references must be sequences of strings, not a string")
    if len(predictions) != len(references):
        raise ValueError(f"got {len(predictions)} predictions for {len(references)} references")
    if not predictions:
        raise ValueError("exact_match needs at least one prediction")
    return sum(p == r for p, r in zip(predictions, references, strict=True)) / len(predictions)


def exact_match_ids(predicted: Tensor, references: Tensor, eos_id: int = 2) -> float:
    """The fraction of rows of ``predicted`` equal to ``references`` up to and including ``<eos>``.

    A prediction without ``eos_id`` (cut off at ``max_len``) is wrong."""
    validation.check_ids("predicted", predicted)
    validation.check_ids("references", references)
    if predicted.shape[0] != references.shape[0]:
        raise ValueError(
            f"predicted {tuple(predicted.shape)} and references {tuple(references.shape)} "
            "differ in B"
        )
    if predicted.shape[0] == 0:
        raise ValueError("exact_match_ids needs at least one prediction")
    if not bool((references == eos_id).any(dim=1).all()):
        raise ValueError("every reference must contain eos_id")
    length = max(predicted.shape[1], references.shape[1])

    def through_eos(ids: Tensor) -> Tensor:
        ids = F.pad(ids, (0, length - ids.shape[1]), value=-1)  # (B, L) -> (B, length)
        is_eos = (ids == eos_id).long()
        after_eos = (is_eos.cumsum(dim=1) - is_eos) > 0
        return ids.masked_fill(after_eos, -1)  # -1 is no id: positions after <eos> match

    same = (through_eos(predicted) == through_eos(references)).all(dim=1)  # (B,)
    ended = (predicted == eos_id).any(dim=1)  # (B,)
    return int((same & ended).sum()) / predicted.shape[0]  # exact, like exact_match


def translate(
    model: nn.Module,
    src: Tensor,
    decode_ids: Callable[[Tensor], list[str]],
    max_len: int,
    beam_width: int = 1,
    batch_size: int = 1000,
    bos_id: int = 1,
    eos_id: int = 2,
    pad_id: int = 0,
) -> list[str]:
    """N strings: ``src (N, S)`` decoded in chunks of ``batch_size``, greedy or beam search.

    ``decode_ids`` maps ``(B, L)`` ids to B strings; ``pad_id`` also pads the sources."""
    _check_decoding_args(model, src, max_len, bos_id, eos_id, pad_id)
    batch_size = validation.check_positive_int("batch_size", batch_size)
    beam_width = validation.check_positive_int("beam_width", beam_width)
    out: list[str] = []
    for chunk in src.split(batch_size):
        chunk = train.trim_padding(chunk, pad_id)  # (B, S) -> (B, S'): fewer keys to attend to
        if beam_width == 1:
            ids = greedy_decode(model, chunk, max_len, bos_id, eos_id, pad_id)
        else:
            ids, _ = beam_search(model, chunk, max_len, beam_width, bos_id, eos_id, pad_id)
        strings = decode_ids(ids)
        if len(strings) != ids.shape[0]:
            raise ValueError(
                f"decode_ids returned {len(strings)} strings for {ids.shape[0]} sequences"
            )
        out.extend(strings)
    return out
