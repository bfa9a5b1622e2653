"""Generation for encoder-decoder models: greedy decoding, beam search, exact match.

Every function here works with any model that has the two methods of
:class:`attention_book.transformer.Transformer`:

* ``encode(src)`` with src ``(B, S)`` returns ``(memory (B, S, D), src_mask (B, 1, 1, S))``;
* ``decode(tgt, memory, src_mask)`` with tgt ``(B, T)`` returns logits ``(B, T, V)``, where
  position t depends only on ``tgt[:, : t + 1]``.

Token conventions: ``pad_id`` fills unused positions, a target starts with ``bos_id`` and ends
with ``eos_id``. Generated sequences are returned without the ``bos_id`` and hold ``pad_id``
after their ``eos_id``.
"""

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
    """Generate by always taking the most probable next token.

    The source is encoded once; then the decoder is run on the growing prefix of the whole
    batch (at these lengths re-running it is cheaper to read than a key-value cache, and its
    causal mask makes the result identical). Stops when every sequence has produced ``eos_id``
    or after ``max_len`` tokens.

    Args:
        model: with ``encode`` and ``decode`` (see the module docstring); run in eval mode.
        src: ``(B, S)`` source ids.
        max_len: the most tokens to generate per sequence, ``<eos>`` included.
        bos_id, eos_id, pad_id: the special ids of the target vocabulary.

    Returns:
        ``(B, L)`` generated ids, ``L <= max_len``, without ``<bos>``; ``pad_id`` after ``<eos>``.
        An empty batch (B = 0) gives a ``(0, 0)`` tensor.
    """
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
    """Keep the ``beam_width`` most probable prefixes at every step; return the best sequence.

    Batched: the B sources become B x K beams that the decoder runs together. At each step every
    beam is extended by every token; of the K x V candidates of a source the K with the
    highest total log-probability survive. A beam that has produced ``<eos>`` is finished: it
    keeps its slot and can only be extended by ``pad_id`` at no cost, so it keeps competing,
    with its final score, against the unfinished prefixes (whose scores can only fall). A
    finished beam therefore occupies one of the K slots until the end; this is simpler than
    setting finished hypotheses aside, and can leave fewer than K prefixes alive. The search
    stops when all beams are finished or after ``max_len`` tokens.

    The returned sequence is the best *finished* beam of its source: a beam cut off by
    ``max_len`` is not a complete output, so it is returned only when no beam of that source
    finished. ``length_penalty`` changes only this final choice; the search itself, and the
    returned scores, use the plain total log-probability. With ``beam_width=1`` this is
    exactly :func:`greedy_decode`.

    Args:
        model: with ``encode`` and ``decode`` (see the module docstring); run in eval mode.
        src: ``(B, S)`` source ids.
        max_len: the most tokens to generate per sequence, ``<eos>`` included.
        beam_width: K, a positive int.
        bos_id, eos_id, pad_id: the special ids of the target vocabulary.
        length_penalty: alpha; the final choice ranks the beams by ``log p / length ** alpha``
            (0 ranks by log p; larger values favour longer outputs).

    Returns:
        ``(tokens, scores)``: tokens ``(B, L)`` as in :func:`greedy_decode`; scores ``(B,)``
        the total log-probability of each returned sequence, without the length penalty.
        An empty batch (B = 0) gives a ``(0, 0)`` tensor and a ``(0,)`` tensor.
    """
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
    """The model's total log-probability of given outputs (up to and including ``<eos>``).

    Args:
        model: with ``encode`` and ``decode``; run in eval mode.
        src: ``(B, S)`` source ids.
        tokens: ``(B, L)`` outputs as returned by :func:`greedy_decode` (no ``<bos>``; tokens
            after the first ``<eos>`` are not scored).
        bos_id, eos_id: the special ids of the target vocabulary.

    Returns:
        ``(B,)`` sums of log p(token | source, earlier tokens).
    """
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
    """The fraction of generated sequences equal to their reference up to and including ``<eos>``.

    This compares ids, not decoded strings: a prediction counts only if it contains ``eos_id``
    and its tokens up to the first one equal the reference's up to its first ``eos_id``. What
    follows ``<eos>`` (padding) is ignored. A prediction without ``<eos>``, cut off at
    ``max_len``, is wrong whatever characters it holds.

    Args:
        predicted: ``(B, L)`` generated ids without ``<bos>``, as returned by
            :func:`greedy_decode` or :func:`beam_search`.
        references: ``(B, L')`` reference ids without ``<bos>``, each row containing
            ``eos_id`` (for example the labels of :func:`attention_book.train.teacher_forcing`).
        eos_id: the end-of-sequence id.

    Returns:
        A float in [0, 1].
    """
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
    """Decode a large batch of sources in chunks and turn the ids into strings.

    Args:
        model: with ``encode`` and ``decode``.
        src: ``(N, S)`` source ids.
        decode_ids: maps ``(B, L)`` output ids to B strings (e.g. ``vocab.decode_batch``).
        max_len: the most tokens to generate, ``<eos>`` included.
        beam_width: 1 uses :func:`greedy_decode`, more uses :func:`beam_search`.
        batch_size: sources per chunk.
        bos_id, eos_id, pad_id: the special ids of the target vocabulary; ``pad_id`` is also the
            source's padding, wherever it stands in a row.

    Returns:
        N strings.
    """
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
