"""Tests for attention_book.plots.attention_heatmap."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from attention_book import plots  # noqa: E402


def test_heatmap_labels_and_annotations():
    w = torch.tensor([[0.25, 0.25, 0.5], [1.0, 0.0, 0.0]])
    ax = plots.attention_heatmap(w, ["it", "cat"], ["cat", "sat", "mat"], title="demo")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["cat", "sat", "mat"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["it", "cat"]
    assert ax.get_title() == "demo"
    assert sorted(t.get_text() for t in ax.texts) == sorted(
        ["0.25", "0.25", "0.50", "1.00", "0.00", "0.00"]
    )
    assert ax.images[0].get_cmap().name == plots.ATTENTION_CMAP
    plt.close(ax.figure)


def test_heatmap_large_matrix_is_not_annotated():
    w = torch.softmax(torch.randn(12, 12), dim=-1)
    ax = plots.attention_heatmap(w, [f"t{i}" for i in range(12)])
    assert len(ax.texts) == 0
    plt.close(ax.figure)


def test_heatmap_rejects_wrong_labels_and_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3\) need 2 query labels and 3 key labels"):
        plots.attention_heatmap(torch.zeros(2, 3), ["a", "b"], ["x", "y"])
    with pytest.raises(ValueError, match="2-d"):
        plots.attention_heatmap(torch.zeros(2, 3, 4), ["a", "b"])


def test_book_style_sets_dpi_and_readable_fonts():
    from matplotlib import font_manager

    with matplotlib.rc_context():
        plots.use_book_style()
        assert plt.rcParams["figure.dpi"] >= 150 and plt.rcParams["savefig.dpi"] >= 150
        for key in (
            "font.size",
            "axes.titlesize",
            "axes.labelsize",
            "xtick.labelsize",
            "ytick.labelsize",
            "legend.fontsize",
        ):
            size = font_manager.FontProperties(size=plt.rcParams[key]).get_size_in_points()
            assert size >= plots.MIN_FONT_PT, key
        fig, ax = plt.subplots()
        assert fig.dpi == plt.rcParams["figure.dpi"]
        ax = plots.attention_heatmap(torch.full((2, 2), 0.5), ["a", "b"], ax=ax)
        assert min(t.get_fontsize() for t in ax.texts) >= plots.MIN_FONT_PT
        plt.close(fig)


def test_log_ticks_round_values_inside_limits():
    fig, ax = plt.subplots()
    ax.loglog([2048, 4096, 8192], [80.0, 450.0, 1700.0])
    plots.log_ticks(ax, (2048, 4096, 8192))
    low, high = ax.get_ylim()
    ticks = list(ax.get_yticks())
    assert ticks and all(low <= t <= high for t in ticks)
    assert {100.0, 300.0, 1000.0} <= set(ticks)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["2,048", "4,096", "8,192"]
    assert "1,000" in [t.get_text() for t in ax.get_yticklabels()]
    plt.close(fig)


def test_log_ticks_rejects_non_positive_limits():
    fig, ax = plt.subplots()
    ax.plot([0.0, 1.0], [-1.0, 1.0])
    with pytest.raises(ValueError, match="positive y limits"):
        plots.log_ticks(ax, (0.5,))
    plt.close(fig)
