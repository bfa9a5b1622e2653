"""Block diagrams of attention and the Transformer, drawn by code so that they stay consistent.

Each public function returns a Figure drawn on one invisible axes in inches. One colour per
kind of block (:data:`COLOURS`): attention orange, feed-forward blue, LayerNorm yellow,
embedding pink, learned maps lavender, softmax green, tensors white, fixed operations grey."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch

from attention_book import plots, validation

#: Face and edge colour of each kind of block, the same in every diagram.
COLOURS: dict[str, tuple[str, str]] = {
    "attention": ("#FDDCB5", "#D35400"),
    "feedforward": ("#CFE6F7", "#1F6FA8"),
    "norm": ("#FFF2B3", "#B7950B"),
    "embedding": ("#F8D3E3", "#B03A6F"),
    "linear": ("#E4DDF5", "#5B4A9E"),
    "softmax": ("#D4F0DA", "#1E7B45"),
    "tensor": ("#FFFFFF", "#4D4D4D"),
    "op": ("#ECECEC", "#6B6B6B"),
}

#: The most heads :func:`multi_head` draws; more would not fit a column-wide figure.
MAX_HEADS = 16

#: Font sizes (points) of block labels, of shapes and notes, and of titles.
LABEL_PT = 11.0
NOTE_PT = plots.MIN_FONT_PT
TITLE_PT = 12.0

_INK = "#333333"
_ARROW_LW = 1.3
_DPI = 150


@dataclass(frozen=True)
class _Box:
    """Where a drawn box lies, in inches: its centre and its size."""

    x: float
    y: float
    w: float
    h: float

    @property
    def left(self) -> tuple[float, float]:
        return (self.x - self.w / 2, self.y)

    @property
    def right(self) -> tuple[float, float]:
        return (self.x + self.w / 2, self.y)

    @property
    def top(self) -> tuple[float, float]:
        return (self.x, self.y + self.h / 2)

    @property
    def bottom(self) -> tuple[float, float]:
        return (self.x, self.y - self.h / 2)


def _canvas(width: float, height: float, title: str) -> tuple[Figure, Axes]:
    """A figure of ``width`` x ``height`` inches with one axes whose units are inches."""
    fig = plt.figure(figsize=(width, height), dpi=_DPI)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_xlim(0.0, width)
    ax.set_ylim(0.0, height)
    ax.set_axis_off()
    ax.text(
        width / 2,
        height - 0.1,
        title,
        ha="center",
        va="top",
        fontsize=TITLE_PT,
        fontweight="bold",
        color=_INK,
    )
    return fig, ax


def _box(
    ax: Axes,
    x: float,
    y: float,
    w: float,
    h: float,
    label: str,
    kind: str,
    sub: str | None = None,
) -> _Box:
    """Draw a rounded box of ``kind`` (:data:`COLOURS`) centred at ``(x, y)``, with ``label``
    and an optional smaller ``sub`` line; return its position for arrows."""
    face, edge = COLOURS[kind]
    pad = 0.04
    ax.add_patch(
        FancyBboxPatch(
            (x - w / 2 + pad, y - h / 2 + pad),
            w - 2 * pad,
            h - 2 * pad,
            boxstyle=f"round,pad={pad}",
            facecolor=face,
            edgecolor=edge,
            linewidth=1.2,
            zorder=2,
        )
    )
    if sub is None:
        ax.text(x, y, label, ha="center", va="center", fontsize=LABEL_PT, color=_INK, zorder=3)
    else:
        ax.text(
            x, y + 0.02, label, ha="center", va="bottom", fontsize=LABEL_PT, color=_INK, zorder=3
        )
        ax.text(x, y - 0.02, sub, ha="center", va="top", fontsize=NOTE_PT, color=_INK, zorder=3)
    return _Box(x, y, w, h)


def _add(ax: Axes, x: float, y: float, r: float = 0.11) -> _Box:
    """Draw the circled plus of a residual addition, centred at ``(x, y)``."""
    ax.add_patch(Circle((x, y), r, facecolor="white", edgecolor=_INK, linewidth=1.2, zorder=2))
    ax.plot([x - 0.6 * r, x + 0.6 * r], [y, y], color=_INK, linewidth=1.2, zorder=3)
    ax.plot([x, x], [y - 0.6 * r, y + 0.6 * r], color=_INK, linewidth=1.2, zorder=3)
    return _Box(x, y, 2 * r, 2 * r)


def _arrow(ax: Axes, points: Sequence[tuple[float, float]], color: str = _INK) -> None:
    """Draw a path through ``points`` with an arrowhead at the last point."""
    xs, ys = zip(*points, strict=True)
    if len(points) > 2:
        ax.plot(xs[:-1], ys[:-1], color=color, linewidth=_ARROW_LW, zorder=1, solid_capstyle="butt")
    ax.add_patch(
        FancyArrowPatch(
            points[-2],
            points[-1],
            arrowstyle="-|>",
            mutation_scale=11,
            color=color,
            linewidth=_ARROW_LW,
            shrinkA=0,
            shrinkB=0,
            zorder=1,
        )
    )


def _line(ax: Axes, points: Sequence[tuple[float, float]], color: str = _INK) -> None:
    """Draw a path through ``points`` without an arrowhead."""
    xs, ys = zip(*points, strict=True)
    ax.plot(xs, ys, color=color, linewidth=_ARROW_LW, zorder=1)


def _note(
    ax: Axes,
    x: float,
    y: float,
    text: str,
    ha: str = "center",
    va: str = "center",
    color: str = _INK,
    style: str = "normal",
) -> None:
    """Write an annotation at :data:`NOTE_PT`."""
    ax.text(x, y, text, ha=ha, va=va, fontsize=NOTE_PT, color=color, style=style, zorder=3)


def _frame(
    ax: Axes, x0: float, y0: float, x1: float, y1: float, label: str, left: bool = False
) -> None:
    """Draw a dashed frame round a repeated block and write ``label`` (e.g. "x N") beside it."""
    ax.add_patch(
        FancyBboxPatch(
            (x0, y0),
            x1 - x0,
            y1 - y0,
            boxstyle="round,pad=0.0,rounding_size=0.08",
            facecolor="#F7F7F7",
            edgecolor="#8C8C8C",
            linewidth=1.0,
            linestyle=(0, (4, 2)),
            zorder=0,
        )
    )
    x, ha = (x0 - 0.08, "right") if left else (x1 + 0.08, "left")
    ax.text(x, (y0 + y1) / 2, label, ha=ha, va="center", fontsize=LABEL_PT, color=_INK)


def _bracket(ax: Axes, x0: float, x1: float, y: float, text: str, color: str = _INK) -> None:
    """Draw a bracket over the span ``x0``..``x1``, its feet at height ``y``, with a note above."""
    tick = 0.07
    _line(ax, [(x0, y), (x0, y + tick), (x1, y + tick), (x1, y)], color=color)
    _note(ax, (x0 + x1) / 2, y + tick + 0.05, text, va="bottom", color=color)


def qkv_flow() -> Figure:
    """Single-head attention from X to the output, with every shape (6.5 x 3.75 in).

    Suggested alt text: "Block diagram of scaled dot-product attention: X (T by D) is projected
    by W_Q, W_K and W_V into Q, K and V; Q K-transpose, scaled by one over root d_k and
    softmaxed by row, gives the weights A (T by S), which multiply V. V travels on its own path,
    so W_V does not enter the weights."
    """
    fig, ax = _canvas(6.5, 3.75, "Attention: from X to the output")
    y_q, y_k, y_v, y_s = 2.9, 1.9, 0.75, 2.4
    x_in = _box(ax, 0.42, y_k, 0.62, 0.8, "$X$", "tensor", r"$T\times D$")
    trunk = 0.88
    _line(ax, [x_in.right, (trunk, y_k)])
    _line(ax, [(trunk, y_v), (trunk, y_q)])
    tensors = {}
    for name, y, shape in (
        ("Q", y_q, r"$T\times d_k$"),
        ("K", y_k, r"$S\times d_k$"),
        ("V", y_v, r"$S\times d_v$"),
    ):
        w = _box(ax, 1.3, y, 0.56, 0.44, f"$W_{name}$", "linear")
        _arrow(ax, [(trunk, y), w.left])
        tensors[name] = _box(ax, 2.12, y, 0.72, 0.6, f"${name}$", "tensor", shape)
        _arrow(ax, [w.right, tensors[name].left])
    q, k, v = tensors["Q"], tensors["K"], tensors["V"]
    score = _box(ax, 3.1, y_s, 0.74, 0.6, r"$QK^{\top}$", "op", r"$T\times S$")
    bend = 2.64
    _arrow(ax, [q.right, (bend, y_q), (bend, y_s + 0.12), (score.left[0], y_s + 0.12)])
    _arrow(ax, [k.right, (bend, y_k), (bend, y_s - 0.12), (score.left[0], y_s - 0.12)])
    scale = _box(ax, 3.98, y_s, 0.7, 0.6, "scale", "op", r"$\times 1/\sqrt{d_k}$")
    _arrow(ax, [score.right, scale.left])
    soft = _box(ax, 4.92, y_s, 0.84, 0.6, "softmax", "softmax", "per row")
    _arrow(ax, [scale.right, soft.left])
    weights = _box(ax, 4.92, 1.57, 0.92, 0.6, "weights $A$", "tensor", r"$T\times S$")
    _arrow(ax, [soft.bottom, weights.top])
    score_ink = COLOURS["attention"][1]
    _bracket(
        ax, score.left[0], soft.right[0], y_s + 0.38, "the weights: $W_Q$ and $W_K$ only", score_ink
    )
    _note(ax, 5.45, 1.57, "each row\nsums to 1", ha="left")
    mix = _box(ax, 4.92, y_v, 0.92, 0.6, "$AV$", "op", "mix values")
    _arrow(ax, [weights.bottom, mix.top])
    out = _box(ax, 6.02, y_v, 0.8, 0.6, "output", "tensor", r"$T\times d_v$")
    _arrow(ax, [mix.right, out.left])
    value_ink = COLOURS["linear"][1]
    _arrow(ax, [v.right, mix.left], color=value_ink)
    _note(
        ax,
        2.6,
        1.25,
        "$W_V$ never enters the weights\nof its layer: it only shapes\nwhat they mix",
        ha="left",
        color=value_ink,
    )
    _note(
        ax,
        0.08,
        0.12,
        "In self-attention the keys and values come from the same $X$ as the queries: $S = T$.",
        ha="left",
        style="italic",
    )
    return fig


def _head_labels(num_heads: int) -> list[str]:
    """The head boxes to draw: all of them up to four, else the first two, a gap, the last."""
    if num_heads <= 4:
        return [f"head {h}" for h in range(1, num_heads + 1)]
    return ["head 1", "head 2", "", f"head {num_heads}"]


def multi_head(num_heads: int = 4) -> Figure:
    """Multi-head attention: project, split into ``num_heads`` heads, attend, concat, W_O (6.5 x
    4.6 in). Above four heads, heads 1, 2 and H are drawn with an ellipsis.

    Suggested alt text (H = 4): "Block diagram of multi-head attention, bottom to top: X
    (B, T, D) goes through W_Q, W_K and W_V, is split into 4 heads of width d_k = D / H, the heads
    attend side by side, and their outputs are concatenated back to (B, T, D) and mixed by W_O."
    """
    num_heads = validation.check_int("num_heads", num_heads, minimum=1)
    if num_heads > MAX_HEADS:
        raise ValueError(
            f"num_heads must be at most {MAX_HEADS} to fit a column-wide figure, got {num_heads}"
        )
    heads = "head" if num_heads == 1 else "heads"
    fig, ax = _canvas(6.5, 4.6, f"Multi-head attention with $H = {num_heads}$ {heads}")
    cx, x0, x1, shape_x = 2.55, 0.6, 4.5, 4.85
    y_in, y_proj, y_split, y_heads, y_cat, y_o, y_out = 0.35, 1.0, 1.62, 2.3, 2.98, 3.55, 4.02

    def shape(y: float, text: str) -> None:
        _note(ax, shape_x, y, text, ha="left")

    x_in = _box(ax, cx, y_in, 1.3, 0.42, "input $X$", "tensor")
    shape(y_in, "$(B, T, D)$")
    split = _box(ax, cx, y_split, x1 - x0, 0.42, "split into $H$ heads of $d_k = D/H$", "op")
    shape(y_split, "$(B, H, T, d_k)$")
    fork = (y_in + y_proj) / 2 - 0.05
    _line(ax, [x_in.top, (cx, fork)])
    _line(ax, [(cx - 1.1, fork), (cx + 1.1, fork)])
    for dx, name in ((-1.1, "Q"), (0.0, "K"), (1.1, "V")):
        w = _box(ax, cx + dx, y_proj, 0.7, 0.4, f"$W_{name}$", "linear")
        _arrow(ax, [(cx + dx, fork), w.bottom])
        _arrow(ax, [w.top, (cx + dx, split.bottom[1])])
        _note(ax, cx + dx + 0.06, (w.top[1] + split.bottom[1]) / 2, f"${name}$", ha="left")
    shape(y_proj, "$Q, K, V$: $(B, T, D)$")
    labels = _head_labels(num_heads)
    slot = (x1 - x0) / len(labels)
    cat = _box(ax, cx, y_cat, x1 - x0, 0.42, "concat heads", "op")
    for i, label in enumerate(labels):
        hx = x0 + slot * (i + 0.5)
        if not label:
            _note(ax, hx, y_heads, r"$\cdots$")
            continue
        head = _box(ax, hx, y_heads, min(0.86, slot - 0.12), 0.56, label, "attention", "attention")
        _arrow(ax, [(hx, split.top[1]), head.bottom])
        _arrow(ax, [head.top, (hx, cat.bottom[1])])
    shape(y_heads, "$H$ heads in parallel,\n$(B, T, d_k)$ each")
    shape(y_cat, "$(B, T, D)$")
    w_o = _box(ax, cx, y_o, 0.7, 0.4, "$W_O$", "linear")
    _arrow(ax, [cat.top, w_o.bottom])
    shape(y_o, "$(B, T, D)$")
    _arrow(ax, [w_o.top, (cx, y_out - 0.1)])
    _note(ax, cx, y_out - 0.06, "output", va="bottom")
    shape(y_out + 0.02, "$(B, T, D)$")
    return fig


def post_ln_vs_pre_ln() -> Figure:
    """Post-LN, LayerNorm(x + Sublayer(x)), beside pre-LN, x + Sublayer(LayerNorm(x)) (6.5 x 4.6).

    Suggested alt text: "Two residual blocks, bottom to top. Left, post-LN: the sub-layer's
    output is added to x and the sum goes through LayerNorm. Right, pre-LN: LayerNorm comes
    first, its sub-layer output is added to the untouched x, and the stack ends with one final
    LayerNorm."
    """
    fig, ax = _canvas(6.5, 4.6, "Where the LayerNorm goes")
    y_x, y_frame0, y_frame1, y_final, y_out = 0.62, 1.04, 3.24, 3.62, 4.04
    for cx, title, formula in (
        (1.55, "post-LN (the paper)", r"$\mathrm{LayerNorm}(x + \mathrm{Sublayer}(x))$"),
        (4.85, "pre-LN", r"$x + \mathrm{Sublayer}(\mathrm{LayerNorm}(x))$"),
    ):
        pre = title == "pre-LN"
        _frame(ax, cx - 1.0, y_frame0, cx + 1.0, y_frame1, r"$\times N$")
        ax.text(
            cx,
            0.3,
            title,
            ha="center",
            va="bottom",
            fontsize=LABEL_PT,
            fontweight="bold",
            color=_INK,
        )
        _note(ax, cx, 0.04, formula, va="bottom")
        _note(ax, cx, y_x, "$x$", va="bottom")
        branch = y_frame0 + 0.15
        skip = cx + 0.8
        if pre:
            norm = _box(ax, cx, y_frame0 + 0.53, 1.2, 0.42, "LayerNorm", "norm")
            sub = _box(ax, cx, y_frame0 + 1.15, 1.3, 0.52, "Sublayer", "op", "attention or FFN")
            add = _add(ax, cx, y_frame0 + 1.78)
            _arrow(ax, [(cx, y_x + 0.2), norm.bottom])
            _arrow(ax, [norm.top, sub.bottom])
            _arrow(ax, [sub.top, add.bottom])
            final = _box(ax, cx, y_final + 0.05, 1.5, 0.4, "final LayerNorm", "norm")
            _arrow(ax, [add.top, final.bottom])
            _arrow(ax, [final.top, (cx, y_out + 0.1)])
        else:
            sub = _box(ax, cx, y_frame0 + 0.58, 1.3, 0.52, "Sublayer", "op", "attention or FFN")
            add = _add(ax, cx, y_frame0 + 1.2)
            norm = _box(ax, cx, y_frame0 + 1.78, 1.2, 0.42, "LayerNorm", "norm")
            _arrow(ax, [(cx, y_x + 0.2), sub.bottom])
            _arrow(ax, [sub.top, add.bottom])
            _arrow(ax, [add.top, norm.bottom])
            _arrow(ax, [norm.top, (cx, y_out + 0.1)])
            _note(ax, cx + 0.08, y_final + 0.05, "no final LayerNorm", ha="left", style="italic")
        _arrow(ax, [(cx, branch), (skip, branch), (skip, add.y), add.right])
        ax.plot([cx], [branch], marker="o", markersize=3.5, color=_INK, zorder=3)
        _note(ax, cx, y_out + 0.12, "output", va="bottom")
    return fig


def encoder_decoder() -> Figure:
    """The encoder-decoder Transformer: encoder, memory, decoder, next tokens (6.5 x 5.5 in).

    Suggested alt text: "Block diagram of the encoder-decoder Transformer, bottom to top. Left,
    N encoder layers of self-attention and feed-forward turn the embedded source into the memory
    (B, S, D). Right, N decoder layers of causal self-attention, cross-attention to the memory
    and feed-forward read the shifted target; a linear layer and a softmax predict the next
    tokens. Every sub-layer sits in a residual block with LayerNorm."
    """
    fig, ax = _canvas(6.5, 5.5, "The encoder-decoder Transformer")
    enc_x, dec_x, box_h = 1.75, 4.5, 0.38
    y_tok, y_emb, y_pe, y_frame0 = 0.2, 0.72, 1.2, 1.42
    frames = {enc_x: 3.05, dec_x: 3.62}
    for cx, tokens, pe_dir in (
        (enc_x, r"source: $x_1\ x_2\ \cdots\ x_S$", -1),
        (dec_x, r"target shifted right: <bos> $y_1\ y_2\ \cdots$", 1),
    ):
        width = 1.5 if cx == enc_x else 1.85
        _note(ax, cx, y_tok, tokens)
        emb = _box(ax, cx, y_emb, width - 0.2, box_h, "embedding", "embedding")
        _arrow(ax, [(cx, y_tok + 0.1), emb.bottom])
        add = _add(ax, cx, y_pe)
        _arrow(ax, [emb.top, add.bottom])
        pe_x = cx + pe_dir * (width / 2 + 0.12)
        _note(ax, pe_x, y_pe, "positional\nencoding", ha="right" if pe_dir < 0 else "left")
        _arrow(ax, [(pe_x + 0.05 * -pe_dir, y_pe), (cx - pe_dir * -0.11, y_pe)])
        _frame(
            ax,
            cx - width / 2 - 0.1,
            y_frame0,
            cx + width / 2 + 0.1,
            frames[cx],
            r"$N\times$" if cx == enc_x else r"$\times N$",
            left=cx == enc_x,
        )
        name_x = cx - width / 2 - 0.18 if cx == enc_x else cx + width / 2 + 0.18
        _note(
            ax,
            name_x,
            (y_frame0 + frames[cx]) / 2 + 0.42,
            "encoder\nlayer" if cx == enc_x else "decoder\nlayer",
            ha="right" if cx == enc_x else "left",
            style="italic",
        )
    enc_attn = _box(ax, enc_x, 1.85, 1.5, box_h, "self-attention", "attention")
    enc_ffn = _box(ax, enc_x, 2.45, 1.5, box_h, "feed-forward", "feedforward")
    _arrow(ax, [(enc_x, y_pe + 0.11), enc_attn.bottom])
    _arrow(ax, [enc_attn.top, enc_ffn.bottom])
    dec_self = _box(ax, dec_x, 1.85, 1.85, box_h, "causal self-attention", "attention")
    dec_cross = _box(ax, dec_x, 2.45, 1.85, box_h, "cross-attention", "attention")
    dec_ffn = _box(ax, dec_x, 3.05, 1.85, box_h, "feed-forward", "feedforward")
    _arrow(ax, [(dec_x, y_pe + 0.11), dec_self.bottom])
    _arrow(ax, [dec_self.top, dec_cross.bottom])
    _arrow(ax, [dec_cross.top, dec_ffn.bottom])
    # The memory: the encoder's output, read by every decoder layer's cross-attention.
    mem_y, mem_x = frames[enc_x] + 0.3, 3.15
    _arrow(ax, [enc_ffn.top, (enc_x, mem_y), (mem_x, mem_y), (mem_x, dec_cross.y), dec_cross.left])
    _note(ax, (enc_x + mem_x) / 2, mem_y + 0.06, "memory $(B, S, D)$", va="bottom")
    _note(ax, mem_x - 0.06, dec_cross.y + 0.25, "keys,\nvalues", ha="right")
    _note(
        ax,
        0.15,
        4.55,
        "Each sub-layer sits in a\nresidual block with LayerNorm.\n"
        "Queries of cross-attention\ncome from the decoder.",
        ha="left",
        va="top",
        style="italic",
    )
    linear = _box(ax, dec_x, 4.05, 1.2, box_h, "linear", "linear")
    soft = _box(ax, dec_x, 4.6, 1.2, box_h, "softmax", "softmax")
    _arrow(ax, [dec_ffn.top, linear.bottom])
    _arrow(ax, [linear.top, soft.bottom])
    _arrow(ax, [soft.top, (dec_x, 4.95)])
    _note(ax, dec_x, 5.0, r"next tokens: $y_1\ y_2\ \cdots$ <eos>", va="bottom")
    return fig


def bert_encoder() -> Figure:
    """A BERT sentence encoder: three embeddings summed, N post-LN layers, mean pooling (6.5 x 5.6).

    Suggested alt text: "Block diagram of a BERT sentence encoder, bottom to top. Three
    embedding tables, each with its own index: token (the token ids), position (0 to T-1) and
    token type (the segment ids, 0 for one sentence); their rows are added and normalised by a
    LayerNorm. N post-LN encoder layers follow: self-attention with no
    causal mask, add and LayerNorm, feed-forward, add and LayerNorm, with a residual path
    around each sub-layer into its add and LayerNorm. The sentence vector is the
    mean of the last layer's vectors over the real tokens, scaled to length 1."
    """
    fig, ax = _canvas(6.5, 5.6, "A BERT sentence encoder")
    cx, box_h, width = 3.25, 0.36, 2.5
    add = _add(ax, cx, 1.2)
    for x, name, rows, index in (
        (1.35, "token", "30,522", "token ids $(B, T)$"),
        (3.25, "position", "512", "positions $0 \\ldots T-1$"),
        (5.15, "token type", "2", "type ids (0 here)"),
    ):
        _note(ax, x, 0.18, index)
        emb = _box(ax, x, 0.72, 1.6, 0.5, name, "embedding", f"{rows} rows")
        _arrow(ax, [(x, 0.3), emb.bottom])
        _arrow(
            ax,
            [emb.top, (x, add.y), add.left if x < cx else add.right]
            if x != cx
            else [emb.top, add.bottom],
        )
    norm = _box(ax, cx, 1.68, width, box_h, "LayerNorm", "norm")
    _arrow(ax, [add.top, norm.bottom])
    _note(ax, cx + width / 2 + 0.1, 1.68, "$(B, T, D)$", ha="left")
    _frame(ax, cx - width / 2 - 0.1, 1.94, cx + width / 2 + 0.4, 4.1, r"$\times N$")
    _note(ax, cx - width / 2 - 0.18, 3.05, "post-LN\nencoder\nlayer", ha="right", style="italic")
    blocks = [
        ("self-attention", "attention", "no causal mask"),
        ("add & LayerNorm", "norm", None),
        ("feed-forward", "feedforward", "GELU"),
        ("add & LayerNorm", "norm", None),
    ]
    below, skip, branch = norm.top, cx + width / 2 + 0.22, 0.0
    for i, (label, kind, sub) in enumerate(blocks):
        box = _box(ax, cx, 2.3 + 0.5 * i, width, 0.4 if sub else box_h, label, kind, sub)
        _arrow(ax, [below, box.bottom])
        if sub:  # the residual path branches off below each sub-layer
            branch = box.bottom[1] - 0.07
            ax.plot([cx], [branch], marker="o", markersize=3.5, color=_INK, zorder=3)
        else:  # ... and joins at its add & LayerNorm
            _arrow(ax, [(cx, branch), (skip, branch), (skip, box.y), box.right])
        below = box.top
    pool = _box(ax, cx, 4.45, width, 0.44, "mean over the real tokens", "op", "padding left out")
    scale = _box(ax, cx, 5.0, width, box_h, "scale to length 1", "op")
    _arrow(ax, [below, pool.bottom])
    _arrow(ax, [pool.top, scale.bottom])
    _note(ax, cx + width / 2 + 0.1, 5.0, "sentence vector $(B, D)$", ha="left")
    return fig


#: The most tokens :func:`recurrence_vs_attention` and :func:`score_grid` draw.
MAX_TOKENS = 6


def _check_tokens(tokens: Sequence[str]) -> list[str]:
    """``tokens`` as a list of 2 to :data:`MAX_TOKENS` non-empty strings, else ValueError."""
    if isinstance(tokens, str) or not all(isinstance(t, str) and t for t in tokens):
        raise ValueError(f"tokens must be a sequence of non-empty strings, got {tokens!r}")
    tokens = list(tokens)
    if not 2 <= len(tokens) <= MAX_TOKENS:
        raise ValueError(f"tokens must hold 2 to {MAX_TOKENS} strings, got {len(tokens)}")
    return tokens


def recurrence_vs_attention(num_tokens: int = 5) -> Figure:
    """An unrolled RNN above one self-attention layer, with path lengths (6.5 x 4.4 in).

    Suggested alt text (n = 5): "Above, an RNN whose path from x_1 to h_5 runs through five
    sequential states. Below, self-attention joining every input x_1 to x_5 to every output
    y_1 to y_5 in one step, the line from x_1 to y_5 highlighted: path length 1."
    """
    n = validation.check_int("num_tokens", num_tokens, minimum=2)
    if n > MAX_TOKENS:
        raise ValueError(f"num_tokens must be at most {MAX_TOKENS}, got {n}")
    fig, ax = _canvas(6.5, 4.4, "Paths between tokens: recurrence against attention")
    xs = [0.45 + 0.68 * i for i in range(n)]
    path_ink = COLOURS["attention"][1]
    # the unrolled RNN: inputs at y = 2.45, states at y = 3.3
    _note(ax, 0.08, 3.85, "recurrent network, unrolled", ha="left", style="italic")
    states = []
    for i, x in enumerate(xs):
        inp = _box(ax, x, 2.45, 0.5, 0.4, f"$x_{i + 1}$", "tensor")
        states.append(_box(ax, x, 3.3, 0.5, 0.4, f"$h_{i + 1}$", "feedforward"))
        _arrow(ax, [inp.top, states[-1].bottom], color=path_ink if i == 0 else _INK)
        if i:
            _arrow(ax, [states[i - 1].right, states[i].left], color=path_ink)
    notes_x = xs[-1] + 0.5
    _note(
        ax,
        notes_x,
        2.88,
        f"$n = {n}$ steps, one after another\n"
        f"path from $x_1$ to $h_{n}$: {n} steps\n"
        "(grows like $n$)",
        ha="left",
    )
    # one self-attention layer: inputs at y = 0.4, outputs at y = 1.55
    _note(ax, 0.08, 2.0, "one self-attention layer", ha="left", style="italic")
    ins = [_box(ax, x, 0.4, 0.5, 0.4, f"$x_{i + 1}$", "tensor") for i, x in enumerate(xs)]
    outs = [_box(ax, x, 1.55, 0.5, 0.4, f"$y_{i + 1}$", "attention") for i, x in enumerate(xs)]
    for i, a in enumerate(ins):
        for j, b in enumerate(outs):
            if (i, j) != (0, n - 1):
                _line(ax, [a.top, b.bottom], color="#B0B0B0")
    _arrow(ax, [ins[0].top, outs[-1].bottom], color=path_ink)
    _note(
        ax,
        notes_x,
        0.98,
        "1 step computes every $y_j$ at once\n"
        f"path from $x_1$ to $y_{n}$: 1 step\n"
        "(the same for any two tokens)",
        ha="left",
    )
    return fig


def score_grid(
    tokens: Sequence[str] = ("She", "went", "to", "the", "market"), row: int = 1
) -> Figure:
    """The score matrix Q Kᵀ as a grid, with the softmax row of query ``row`` highlighted (6.5 x
    3.9 in).

    Suggested alt text: "A five by five grid, the scores Q K-transpose of 'She went to the
    market': rows are queries, columns keys, each cell q_t dot k_s. The row of 'went' is
    highlighted; notes say the softmax runs along each row and the grid is one matrix product."
    """
    tokens = _check_tokens(tokens)
    n = len(tokens)
    row = validation.check_int("row", row, minimum=0)
    if row >= n:
        raise ValueError(f"row must be below the number of tokens {n}, got {row}")
    fig, ax = _canvas(6.5, 3.9, r"The score matrix $QK^{\top}$: one row per query")
    cw, ch, x0, y_head = 0.68, 0.42, 1.62, 3.05
    top = y_head - 0.3 - ch / 2 - 0.06
    for s, word in enumerate(tokens):
        _box(ax, x0 + cw * s, y_head, cw, 0.6, f"$k_{s + 1}$", "tensor", word)
    for t, word in enumerate(tokens):
        y = top - ch * t
        _box(ax, 0.62, y, 1.08, ch, f"{word}: $q_{t + 1}$", "tensor")
        for s in range(n):
            kind = "attention" if t == row else "op"
            _box(ax, x0 + cw * s, y, cw, ch, rf"$q_{t + 1}\cdot k_{s + 1}$", kind)
    right = x0 + cw * (n - 0.5) + 0.12
    _note(
        ax,
        right,
        top - ch * row,
        f"row {row + 1}: the scores of\n'{tokens[row]}' against every\nkey; the softmax runs\n"
        "along each row",
        ha="left",
    )
    _note(
        ax,
        right,
        top - ch * (n - 1) + 0.05,
        rf"$T\times S$ = {n * n} dot products" + "\nin one matrix product",
        ha="left",
    )
    _note(
        ax,
        0.08,
        0.14,
        r"$Q$ is $T\times d_k$ (one query per row), $K^{\top}$ is $d_k\times S$ "
        r"(one key per column); here $S = T$.",
        ha="left",
        style="italic",
    )
    return fig


def mask_broadcast() -> Figure:
    """How a (B, 1, S) key mask broadcasts over the queries of (B, T, S) scores (6.5 x 4.9 in).

    Suggested alt text: "For two sentences, a mask row of six cells (0 for a pad) is repeated for
    every query into a six by six grid of scores; in the padded sentence the whole last column
    is masked. A note says a (B, S) mask would put the sentence axis on the query axis."
    """
    fig, ax = _canvas(6.5, 4.9, "A $(B, 1, S)$ key mask broadcast to $(B, T, S)$")
    size, n = 0.24, 6
    grid_x = 3.3
    lengths = (6, 5)
    for b, length in enumerate(lengths):
        y_top = 4.05 - b * 1.85
        _note(ax, 0.1, y_top - 0.3, f"sentence {b + 1}", ha="left", style="italic")
        mask_y = y_top - 0.75
        for s in range(n):
            real = s < length
            _box(
                ax,
                0.35 + size * s + size / 2,
                mask_y,
                size,
                size,
                "1" if real else "0",
                "tensor" if real else "op",
            )
        _note(ax, 0.35, mask_y - 0.3, "mask row $(1, S)$", ha="left")
        _arrow(ax, [(1.95, mask_y), (grid_x - 0.12, mask_y)])
        _note(ax, 2.6, mask_y + 0.2, "repeated for\nevery query", va="bottom")
        for t in range(n):
            for s in range(n):
                real = s < length
                _box(
                    ax,
                    grid_x + size * s + size / 2,
                    y_top - 0.15 - size * t - size / 2,
                    size,
                    size,
                    "",
                    "softmax" if real else "op",
                )
        note = "every key kept" if length == n else "the pad's column:\nweight 0 for\nevery query"
        _note(ax, grid_x + size * n + 0.15, mask_y, note, ha="left")
    _note(ax, grid_x + size * n / 2, 3.97, "scores $(B, T, S)$:\none row per query", va="bottom")
    _note(
        ax,
        0.08,
        0.14,
        "A $(B, S)$ mask would be read as $(1, B, S)$: its sentence axis would land on the "
        "query axis.",
        ha="left",
        style="italic",
    )
    return fig


def _check_points(name: str, points: object, dims: int = 2) -> torch.Tensor:
    """``points`` as a float64 tensor of shape (N, 2) (or (2,) when ``dims`` is 1)."""
    t = torch.as_tensor(points, dtype=torch.float64)
    want = (2,) if dims == 1 else (None, 2)
    if t.dim() != dims or t.shape[-1] != 2 or (dims == 2 and t.shape[0] < 1):
        raise ValueError(f"{name} must have shape {want}, got {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} must be finite, got {t.tolist()}")
    return t


def _check_weights(weights: object, n: int) -> torch.Tensor:
    """``weights`` as float64 (n,), non-negative and summing to 1 (to 1e-3)."""
    w = torch.as_tensor(weights, dtype=torch.float64)
    if w.shape != (n,):
        raise ValueError(f"weights must have shape ({n},), one per point, got {tuple(w.shape)}")
    if (w < 0).any() or abs(w.sum().item() - 1) > 1e-3:
        raise ValueError(f"weights must be non-negative and sum to 1, got {w.tolist()}")
    return w


def convex_hull(points: torch.Tensor) -> torch.Tensor:
    """The ``(M, 2)`` corners of the hull of ``points (N, 2)``, counter-clockwise."""
    pts = sorted({(float(x), float(y)) for x, y in _check_points("points", points).tolist()})
    if len(pts) < 3:
        return torch.tensor(pts, dtype=torch.float64)

    def cross(o: tuple, a: tuple, b: tuple) -> float:
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower: list = []
    upper: list = []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return torch.tensor(lower[:-1] + upper[:-1], dtype=torch.float64)


def _draw_combination(
    ax: Axes, points: torch.Tensor, weights: torch.Tensor, labels: Sequence[str]
) -> torch.Tensor:
    """Shade the hull of ``points``, mark each with its label and weight, star the average."""
    hull = convex_hull(points)
    face, edge = COLOURS["softmax"]
    if len(hull) >= 3:
        ax.fill(hull[:, 0], hull[:, 1], facecolor=face, edgecolor=edge, lw=1.2, zorder=1)
    ax.scatter(points[:, 0], points[:, 1], color=_INK, s=25, zorder=3)
    average = weights @ points  # (N,) @ (N, 2) -> (2,)
    for (x, y), w, label in zip(points.tolist(), weights.tolist(), labels, strict=True):
        # each label sits on the side of its point away from the average
        right, up = x >= average[0].item(), y >= average[1].item()
        ax.annotate(
            f"{label} ({w:.2f})",
            (x, y),
            xytext=(6 if right else -6, 6 if up else -16),
            textcoords="offset points",
            ha="left" if right else "right",
            fontsize=NOTE_PT,
            color=_INK,
        )
    ink = COLOURS["attention"][1]
    ax.scatter([average[0]], [average[1]], marker="*", s=220, color=ink, zorder=4)
    ax.annotate(
        "weighted average",
        average.tolist(),
        xytext=(8, -14),
        textcoords="offset points",
        fontsize=NOTE_PT,
        color=ink,
    )
    return average


def _frame_axes(
    ax: Axes, points: torch.Tensor, xlabel: str, ylabel: str, title: str, room: float = 0.6
) -> None:
    """Equal aspect, a margin round ``points`` and the origin (``room``: more on the right)."""
    lo = torch.minimum(points.min(dim=0).values, torch.zeros(2)) - 0.5
    hi = points.max(dim=0).values + 0.5
    hi[0] += room
    ax.set_xlim(lo[0].item(), hi[0].item())
    ax.set_ylim(lo[1].item(), hi[1].item())
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)


def weighted_average_in_hull(
    points: object,
    weights: object,
    labels: Sequence[str],
    xlabel: str = "coordinate 1",
    ylabel: str = "coordinate 2",
    title: str = "A weighted average lies inside the convex hull",
) -> Figure:
    """``points (N, 2)``, their hull and their ``weights (N,)`` average, a star (6.4 x 4.2 in).

    Any weights summing to 1 put the average in the hull: an attention output is a blend of the
    values. Suggested alt text: "Labelled, weighted points with the polygon enclosing them
    shaded; a star marks the weighted average, inside the polygon."
    """
    pts = _check_points("points", points)
    w = _check_weights(weights, len(pts))
    if len(labels) != len(pts):
        raise ValueError(f"need one label per point: {len(labels)} labels, {len(pts)} points")
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    _draw_combination(ax, pts, w, labels)
    _frame_axes(ax, pts, xlabel, ylabel, title)
    fig.tight_layout()
    return fig


def query_key_value_vectors(
    query: object, keys: object, values: object, weights: object, labels: Sequence[str]
) -> Figure:
    """A 2-D attention step (6.8 x 3.9 in): left, the ``query (2,)`` and ``keys (S, 2)`` with their
    scores; right, ``values (S, 2)``, their hull and the output under ``weights (S,)``.

    Suggested alt text: "Left, the query of 'it' and the keys as arrows, each key labelled with
    its score. Right, the values with the triangle they span shaded, each labelled with its
    weight, and a star for their weighted average, inside the triangle."
    """
    q = _check_points("query", query, dims=1)
    k = _check_points("keys", keys)
    v = _check_points("values", values)
    if k.shape != v.shape:
        raise ValueError(f"keys {tuple(k.shape)} and values {tuple(v.shape)} must match")
    w = _check_weights(weights, len(k))
    if len(labels) != len(k):
        raise ValueError(f"need one label per key: {len(labels)} labels, {len(k)} keys")
    fig, (top, bottom) = plt.subplots(1, 2, figsize=(6.8, 3.9))
    key_ink, query_ink = COLOURS["linear"][1], COLOURS["attention"][1]
    for i, (key, label) in enumerate(zip(k, labels, strict=True)):
        top.annotate("", key.tolist(), (0, 0), arrowprops={"arrowstyle": "-|>", "color": key_ink})
        score = (q @ key).item()
        # the score is the length of the key's shadow on the query, times |q|
        shadow = score / (q @ q).item() * q
        top.plot(*zip(key.tolist(), shadow.tolist(), strict=True), ":", color=key_ink, lw=1)
        top.annotate(
            f"{label}: score {score:g}",
            key.tolist(),
            xytext=(6, 4 if i % 2 == 0 else -14),
            textcoords="offset points",
            fontsize=NOTE_PT,
            color=key_ink,
        )
    top.annotate(
        "", q.tolist(), (0, 0), arrowprops={"arrowstyle": "-|>", "color": query_ink, "lw": 2}
    )
    top.annotate(
        "query",
        q.tolist(),
        xytext=(-4, 4),
        textcoords="offset points",
        ha="right",
        va="bottom",
        fontsize=NOTE_PT,
        color=query_ink,
    )
    _frame_axes(
        top, torch.cat([k, q[None]]), "coordinate 1", "coordinate 2", "Scores: q · k", room=1.0
    )
    _draw_combination(bottom, v, w, labels)
    _frame_axes(bottom, v, "coordinate 1", "coordinate 2", "Output: weighted average")
    fig.tight_layout()
    return fig
