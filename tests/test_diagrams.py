"""Tests for attention_book.diagrams: the block diagrams draw, read and do not collide; the
geometric figures put the weighted average inside the hull."""

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
    "bert_encoder": (
        diagrams.bert_encoder,
        [
            "token ids",
            "positions $0",
            "type ids (0 here)",
            "token",
            "position",
            "token type",
            "LayerNorm",
            "self-attention",
            "no causal mask",
            "feed-forward",
            "add & LayerNorm",
            "mean over the real tokens",
            "length 1",
            "\\times N",
        ],
    ),
    "recurrence_vs_attention": (
        diagrams.recurrence_vs_attention,
        ["$x_1$", "$h_1$", "$h_5$", "$y_5$", "recurrent", "self-attention", "5 steps", "1 step"],
    ),
    "score_grid": (
        diagrams.score_grid,
        ["$k_1$", "market", "went: $q_2$", "q_2\\cdot k_5", "softmax", "25 dot products"],
    ),
    "mask_broadcast": (
        diagrams.mask_broadcast,
        ["(B, 1, S)", "(B, T, S)", "every query", "weight 0", "(1, B, S)", "sentence 2"],
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
    return np.concatenate(points) if points else np.empty((0, 2))


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


def test_recurrence_vs_attention_draws_every_length_and_rejects_bad_ones():
    for n in (2, diagrams.MAX_TOKENS):
        fig = diagrams.recurrence_vs_attention(n)
        try:
            texts = [t.get_text() for t in _texts(fig)]
            assert f"$h_{n}$" in texts and f"$y_{n}$" in texts
            assert any(f"{n} steps" in t for t in texts)
        finally:
            plt.close(fig)
    for bad in (1, diagrams.MAX_TOKENS + 1, 2.5):
        with pytest.raises(ValueError, match="num_tokens"):
            diagrams.recurrence_vs_attention(bad)


def test_score_grid_has_one_cell_per_pair_and_checks_its_input():
    tokens = ["a", "b", "c"]
    fig = diagrams.score_grid(tokens, row=2)
    try:
        texts = [t.get_text() for t in _texts(fig)]
        cells = [t for t in texts if "\\cdot" in t]
        assert len(cells) == 9 and any("9 dot products" in t for t in texts)
        assert any("'c'" in t for t in texts)  # the note names the highlighted row
    finally:
        plt.close(fig)
    with pytest.raises(ValueError, match="row must be below"):
        diagrams.score_grid(tokens, row=3)
    with pytest.raises(ValueError, match="2 to"):
        diagrams.score_grid(["a"])
    with pytest.raises(ValueError, match="non-empty strings"):
        diagrams.score_grid("abc")


def test_convex_hull_keeps_the_corners_only():
    square = torch.tensor([[0.0, 0], [1, 0], [1, 1], [0, 1], [0.5, 0.5], [0.2, 0.7]])
    hull = diagrams.convex_hull(square)
    assert {tuple(p) for p in hull.tolist()} == {(0, 0), (1, 0), (1, 1), (0, 1)}
    # counter-clockwise: the shoelace area is positive
    x, y = hull[:, 0], hull[:, 1]
    area = 0.5 * (x * y.roll(-1) - x.roll(-1) * y).sum()
    assert area.item() == pytest.approx(1.0)


def _inside(point: torch.Tensor, hull: torch.Tensor) -> bool:
    """Whether ``point`` lies in the counter-clockwise polygon ``hull`` (boundary included)."""
    a, b = hull, hull.roll(-1, dims=0)
    cross = (b[:, 0] - a[:, 0]) * (point[1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (point[0] - a[:, 0])
    return bool((cross >= -1e-12).all())


def test_weighted_average_in_hull_marks_the_average_inside():
    points = torch.tensor([[0.2, 1.6], [1.8, 1.4], [1.5, 0.2], [0.3, 0.4]])
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        weights = torch.rand(4, generator=gen)
        weights /= weights.sum()
        fig = diagrams.weighted_average_in_hull(points, weights, list("abcd"))
        try:
            ax = fig.axes[0]
            star = ax.collections[-1].get_offsets()[0]
            expected = (weights.double() @ points.double()).numpy()
            np.testing.assert_allclose(star, expected)
            assert _inside(torch.tensor(star), diagrams.convex_hull(points))
            assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()
            assert all(t.get_fontsize() >= plots.MIN_FONT_PT for t in ax.texts)
        finally:
            plt.close(fig)


def test_query_key_value_vectors_labels_scores_and_weights():
    fig = diagrams.query_key_value_vectors(
        [0.0, 1.0],
        [[2.0, 1], [1, 1], [1, 2]],
        [[2.0, 1], [1, 3], [1, 2]],
        [0.25, 0.25, 0.5],
        ["cat", "sat", "mat"],
    )
    try:
        texts = [t.get_text() for ax in fig.axes for t in ax.texts]
        for label in ("cat: score 1", "sat: score 1", "mat: score 2", "mat (0.50)", "query"):
            assert label in texts
        assert 6.0 <= fig.get_size_inches()[0] <= 7.0
    finally:
        plt.close(fig)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (([[0.0, 1, 2]], [1.0], ["a"]), "points must have shape"),
        (([[0.0, 1], [1, 0]], [0.5, 0.6], ["a", "b"]), "sum to 1"),
        (([[0.0, 1], [1, 0]], [1.5, -0.5], ["a", "b"]), "non-negative"),
        (([[0.0, 1], [1, 0]], [1.0], ["a", "b"]), "one per point"),
        (([[0.0, 1], [1, 0]], [0.5, 0.5], ["a"]), "one label per point"),
        (([[0.0, float("nan")]], [1.0], ["a"]), "finite"),
    ],
)
def test_weighted_average_in_hull_rejects_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        diagrams.weighted_average_in_hull(*args)


def test_query_key_value_vectors_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="query must have shape"):
        diagrams.query_key_value_vectors([0.0, 1, 2], [[1.0, 0]], [[1.0, 0]], [1.0], ["a"])
    with pytest.raises(ValueError, match="must match"):
        diagrams.query_key_value_vectors([0.0, 1], [[1.0, 0]], [[1.0, 0], [0, 1]], [1.0], ["a"])
