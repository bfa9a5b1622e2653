"""Tests for attention_book.diagrams: the four block diagrams draw, read and do not collide."""

import itertools

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import FancyArrowPatch  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from attention_book import diagrams, plots  # noqa: E402

#: Each diagram, and the labels (substrings of its texts) that its teaching needs.
DIAGRAMS = {
    "qkv_flow": (
        diagrams.qkv_flow,
        [
            "$X$",
            "W_Q",
            "W_K",
            "W_V",
            "$Q$",
            "$K$",
            "$V$",
            "QK^{\\top}",
            "sqrt{d_k}",
            "softmax",
            "sums to 1",
            "T\\times S",
            "T\\times d_v",
            "never enters the weights",
        ],
    ),
    "multi_head": (
        diagrams.multi_head,
        [
            "W_Q",
            "W_K",
            "W_V",
            "W_O",
            "split",
            "d_k = D/H",
            "head 1",
            "head 4",
            "concat",
            "(B, T, D)",
            "(B, H, T, d_k)",
            "output",
        ],
    ),
    "post_ln_vs_pre_ln": (
        diagrams.post_ln_vs_pre_ln,
        [
            "post-LN",
            "pre-LN",
            "LayerNorm",
            "Sublayer",
            "final LayerNorm",
            "\\mathrm{LayerNorm}(x + \\mathrm{Sublayer}(x))",
            "x + \\mathrm{Sublayer}(\\mathrm{LayerNorm}(x))",
            "N",
        ],
    ),
    "encoder_decoder": (
        diagrams.encoder_decoder,
        [
            "source",
            "embedding",
            "positional",
            "self-attention",
            "feed-forward",
            "memory",
            "causal self-attention",
            "cross-attention",
            "shifted right",
            "<bos>",
            "linear",
            "softmax",
            "<eos>",
            "N\\times",
            "\\times N",
        ],
    ),
}


def _texts(fig: Figure) -> list[Text]:
    """Every visible, non-empty text of the figure."""
    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]


def _drawn(fig: Figure):
    """The figure's renderer, after one draw (the tests only read the drawn figure)."""
    if not getattr(fig, "_test_drawn", False):
        fig.canvas.draw()
        fig._test_drawn = True
    return fig.canvas.get_renderer()


@pytest.fixture(scope="module", params=list(DIAGRAMS), ids=list(DIAGRAMS))
def drawn(request):
    """(name, figure) for each diagram with its default arguments, drawn once per module."""
    fig = DIAGRAMS[request.param][0]()
    yield request.param, fig
    plt.close(fig)


def test_returns_a_figure_without_axes_decoration(drawn):
    _, fig = drawn
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 1
    assert not fig.axes[0].axison
    assert fig.dpi >= 150
    width, _ = fig.get_size_inches()
    assert 6.0 <= width <= 7.0


def test_has_the_labels_the_teaching_needs(drawn):
    name, fig = drawn
    text = "\n".join(t.get_text() for t in _texts(fig))
    missing = [label for label in DIAGRAMS[name][1] if label not in text]
    assert not missing, f"{name} lacks {missing}"


def test_every_text_is_readable(drawn):
    _, fig = drawn
    small = [
        (t.get_text(), t.get_fontsize())
        for t in _texts(fig)
        if t.get_fontsize() < plots.MIN_FONT_PT
    ]
    assert not small


def test_no_two_texts_overlap(drawn):
    name, fig = drawn
    renderer = _drawn(fig)
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in _texts(fig)]
    clashes = [
        (a, b)
        for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2)
        if box_a.overlaps(box_b)
    ]
    assert not clashes, f"{name}: overlapping texts {clashes}"


def _points_along(paths) -> np.ndarray:
    """Points every half pixel along every segment of ``paths`` (display coordinates)."""
    points = []
    for path in paths:
        for poly in path.to_polygons(closed_only=False):
            for a, b in zip(poly[:-1], poly[1:], strict=True):
                n = max(2, int(np.hypot(*(b - a)) * 2) + 1)
                points.append(a + np.linspace(0.0, 1.0, n)[:, None] * (b - a))
    return np.concatenate(points)


def test_no_line_or_arrow_crosses_a_text(drawn):
    """Arrows and lines pass beside the labels, never through them."""
    name, fig = drawn
    renderer = _drawn(fig)
    ax = fig.axes[0]
    paths = [line.get_transform().transform_path(line.get_path()) for line in ax.lines]
    paths += [
        p.get_transform().transform_path(p.get_path())
        for p in ax.patches
        if isinstance(p, FancyArrowPatch)
    ]
    points = _points_along(paths)
    crossed = []
    for t in _texts(fig):
        box = t.get_window_extent(renderer).padded(-1.0)
        inside = (
            (points[:, 0] > box.x0)
            & (points[:, 0] < box.x1)
            & (points[:, 1] > box.y0)
            & (points[:, 1] < box.y1)
        )
        if inside.any():
            crossed.append(t.get_text())
    assert not crossed, f"{name}: lines cross {crossed}"


def test_everything_lies_inside_the_figure(drawn):
    name, fig = drawn
    renderer = _drawn(fig)
    page = fig.bbox
    artists = _texts(fig) + list(fig.axes[0].patches) + list(fig.axes[0].lines)
    outside = []
    for artist in artists:
        box = artist.get_window_extent(renderer)
        if (
            box.x0 < page.x0 - 0.5
            or box.y0 < page.y0 - 0.5
            or box.x1 > page.x1 + 0.5
            or box.y1 > page.y1 + 0.5
        ):
            outside.append(artist)
    assert not outside, f"{name}: {outside} reach outside the figure"


def test_texts_in_boxes_fit_their_box(drawn):
    """A label drawn on a box lies inside the box, so no label spills over a border."""
    name, fig = drawn
    renderer = _drawn(fig)
    ax = fig.axes[0]
    boxes = [p.get_window_extent(renderer) for p in ax.patches if p.get_zorder() == 2]
    for t in _texts(fig):
        if t.get_zorder() != 3:
            continue
        tb = t.get_window_extent(renderer)
        centre = ((tb.x0 + tb.x1) / 2, (tb.y0 + tb.y1) / 2)
        hosts = [b for b in boxes if b.contains(*centre)]
        for b in hosts:
            assert b.x0 <= tb.x0 and tb.x1 <= b.x1 and b.y0 <= tb.y0 and tb.y1 <= b.y1, (
                f"{name}: {t.get_text()!r} spills out of its box"
            )


def test_one_colour_per_kind_of_block():
    """The same kind of block has the same colour in every diagram, and kinds differ."""
    faces = [face for face, _ in diagrams.COLOURS.values()]
    assert len(set(faces)) == len(faces)
    figs = [make() for make, _ in DIAGRAMS.values()]
    try:
        used = {
            matplotlib.colors.to_hex(p.get_facecolor())
            for fig in figs
            for p in fig.axes[0].patches
            if p.get_zorder() == 2
        }
    finally:
        for fig in figs:
            plt.close(fig)
    allowed = {matplotlib.colors.to_hex(face) for face in faces} | {"#ffffff"}
    assert used <= allowed
    for kind in ("attention", "feedforward", "norm", "embedding", "linear", "softmax"):
        assert matplotlib.colors.to_hex(diagrams.COLOURS[kind][0]) in used


@pytest.mark.parametrize("num_heads", [1, 2, 3, 5, 8, diagrams.MAX_HEADS, np.int64(6)])
def test_multi_head_draws_any_allowed_number_of_heads(num_heads):
    fig = diagrams.multi_head(num_heads)
    try:
        texts = [t.get_text() for t in _texts(fig)]
        assert f"head {int(num_heads)}" in texts
        assert any(f"H = {int(num_heads)}" in t for t in texts)
        expected_heads = min(int(num_heads), 4) if num_heads <= 4 else 3
        assert sum(t.startswith("head ") for t in texts) == expected_heads
        if num_heads > 4:
            assert "$\\cdots$" in texts
        renderer = _drawn(fig)
        boxes = [t.get_window_extent(renderer) for t in _texts(fig)]
        assert not any(a.overlaps(b) for a, b in itertools.combinations(boxes, 2))
    finally:
        plt.close(fig)


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (0, "num_heads must be a positive int, got 0"),
        (-2, "num_heads must be a positive int, got -2"),
        (diagrams.MAX_HEADS + 1, f"at most {diagrams.MAX_HEADS}"),
        (2.0, "num_heads must be a positive int, got 2.0 of type float"),
        ("4", "of type str"),
        (True, "of type bool"),
        (None, "of type NoneType"),
        (torch.tensor([2, 3]), "of type Tensor"),
    ],
)
def test_multi_head_rejects_bad_num_heads(bad, match):
    before = plt.get_fignums()
    with pytest.raises(ValueError, match=match):
        diagrams.multi_head(bad)
    assert plt.get_fignums() == before  # nothing half-drawn is left open


def test_alt_text_in_every_docstring():
    for make, _ in DIAGRAMS.values():
        assert "Suggested alt text" in make.__doc__
