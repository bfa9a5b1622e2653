"""Tests for attention_book.positional: sinusoidal_encoding, angular_frequencies, shift_matrix."""

import math

import pytest
import torch
from torch.testing import assert_close

from attention_book import positional


def _reference(num_positions: int, d_model: int) -> torch.Tensor:
    """The paper's formula, one entry at a time, in Python floats."""
    pe = torch.zeros(num_positions, d_model, dtype=torch.float64)
    for pos in range(num_positions):
        for i in range(d_model // 2):
            angle = pos / 10000 ** (2 * i / d_model)
            pe[pos, 2 * i] = math.sin(angle)
            pe[pos, 2 * i + 1] = math.cos(angle)
    return pe


@pytest.mark.parametrize(("num_positions", "d_model"), [(1, 2), (7, 4), (50, 16), (33, 10)])
def test_matches_loop_reference(num_positions, d_model):
    pe = positional.sinusoidal_encoding(num_positions, d_model)
    assert pe.shape == (num_positions, d_model)
    assert_close(pe, _reference(num_positions, d_model).float(), rtol=0, atol=1e-7)


def test_far_positions_match_reference():
    # float64 angles keep position 9999 accurate to float32 rounding
    pe = positional.sinusoidal_encoding(10_000, 8)
    row = torch.tensor(
        [f(9999 / 10000 ** (2 * i / 8)) for i in range(4) for f in (math.sin, math.cos)],
        dtype=torch.float64,
    )
    assert_close(pe[9999], row.float(), rtol=0, atol=1e-7)


def test_dtype_and_bounds():
    pe = positional.sinusoidal_encoding(2000, 64)
    assert pe.dtype == torch.float32
    assert pe.abs().max() <= 1.0
    assert_close(pe[0, 0::2], torch.zeros(32))  # sin(0) = 0
    assert_close(pe[0, 1::2], torch.ones(32))  # cos(0) = 1


def test_each_pair_lies_on_the_unit_circle():
    pe = positional.sinusoidal_encoding(500, 32).double()
    radius2 = pe[:, 0::2] ** 2 + pe[:, 1::2] ** 2  # (P, D/2)
    assert_close(radius2, torch.ones_like(radius2), rtol=0, atol=1e-6)


def test_angular_frequencies():
    omega = positional.angular_frequencies(8)
    assert omega.dtype == torch.float64 and omega.shape == (4,)
    expected = torch.tensor([1.0, 10000**-0.25, 10000**-0.5, 10000**-0.75], dtype=torch.float64)
    assert_close(omega, expected)
    assert (omega.diff() < 0).all()


def test_shift_is_a_rotation_of_each_pair():
    # PE(pos + k) = M_k PE(pos), with a 2x2 rotation per pair: the property section 3.5 cites
    d, k = 16, 7
    pe = positional.sinusoidal_encoding(200, d).double()
    c, s = (
        torch.cos(k * positional.angular_frequencies(d)),
        torch.sin(k * positional.angular_frequencies(d)),
    )
    sin_next = pe[:-k, 0::2] * c + pe[:-k, 1::2] * s
    cos_next = pe[:-k, 1::2] * c - pe[:-k, 0::2] * s
    assert_close(sin_next, pe[k:, 0::2], rtol=0, atol=1e-6)
    assert_close(cos_next, pe[k:, 1::2], rtol=0, atol=1e-6)


def test_positions_get_distinct_vectors():
    pe = positional.sinusoidal_encoding(2000, 64).double()
    dist = torch.cdist(pe, pe)  # (P, P)
    dist.fill_diagonal_(float("inf"))  # a position is not its own neighbour
    closest = dist.min()
    assert closest > 1.4  # no two of the 2,000 vectors coincide or nearly coincide
    p, q = divmod(dist.argmin().item(), 2000)
    assert abs(p - q) == 1  # the closest pairs are neighbours
    # every neighbour pair is equally far apart: the distance depends on the offset alone
    assert_close(dist.diagonal(1), closest.expand(1999), rtol=0, atol=1e-6)


@pytest.mark.parametrize("k", [1, 2, 9, 250, 1500])
def test_dot_product_depends_only_on_the_offset(k):
    d = 32
    pe = positional.sinusoidal_encoding(2000, d).double()
    dots = (pe[:-k] * pe[k:]).sum(-1)  # PE(p) . PE(p + k) for every p
    expected = torch.cos(k * positional.angular_frequencies(d)).sum()  # sum_i cos(k omega_i)
    assert_close(dots, expected.expand_as(dots), rtol=0, atol=1e-5)


@pytest.mark.parametrize("k", [0, 1, 7, 100, 1000, -5])
def test_shift_matrix_moves_every_position_by_k(k):
    d = 16
    pe = positional.sinusoidal_encoding(3000, d).double()
    m_k = positional.shift_matrix(k, d)
    assert m_k.shape == (d, d) and m_k.dtype == torch.float64
    lo = max(0, -k)  # positions pos with pos and pos + k both in range
    hi = 3000 - max(0, k)
    shifted = pe[lo:hi] @ m_k.T  # rows: (M_k PE(pos))^T
    assert_close(shifted, pe[lo + k : hi + k], rtol=0, atol=1e-6)


def test_shift_matrix_is_a_group_of_rotations():
    d = 12
    m3, m4, m7 = (positional.shift_matrix(k, d) for k in (3, 4, 7))
    eye = torch.eye(d, dtype=torch.float64)
    assert_close(positional.shift_matrix(0, d), eye)
    assert_close(m3 @ m3.T, eye)  # orthogonal
    assert_close(m3 @ m4, m7)  # shifts add
    assert_close(positional.shift_matrix(-3, d), m3.T)  # going back is the inverse
    blocks = m7.reshape(d // 2, 2, d // 2, 2)  # (pair, 2, pair, 2)
    off_diagonal = ~torch.eye(d // 2, dtype=torch.bool)
    assert (blocks.permute(0, 2, 1, 3)[off_diagonal] == 0).all()  # pairs do not mix


def test_shift_matrix_rejects_bad_arguments():
    with pytest.raises(TypeError, match="k must be an int, got float"):
        positional.shift_matrix(1.0, 8)
    with pytest.raises(TypeError, match="k must be an int, got bool"):
        positional.shift_matrix(True, 8)
    with pytest.raises(ValueError, match="even"):
        positional.shift_matrix(1, 7)
    with pytest.raises(ValueError, match="positive int"):
        positional.shift_matrix(1, 0)


@pytest.mark.parametrize(
    ("num_positions", "d_model", "message"),
    [
        (0, 8, "num_positions must be a positive int"),
        (-3, 8, "num_positions must be a positive int"),
        (2.0, 8, "num_positions must be a positive int"),
        (True, 8, "num_positions must be a positive int"),
        (5, 0, "d_model must be a positive int"),
        (5, "8", "d_model must be a positive int"),
        (5, 7, "d_model must be even"),
    ],
)
def test_rejects_bad_arguments(num_positions, d_model, message):
    with pytest.raises(ValueError, match=message):
        positional.sinusoidal_encoding(num_positions, d_model)


@pytest.mark.parametrize(
    ("d_model", "message"), [(0, "positive int"), (3, "even"), (4.0, "positive")]
)
def test_angular_frequencies_rejects_bad_width(d_model, message):
    with pytest.raises(ValueError, match=message):
        positional.angular_frequencies(d_model)


def _rope_reference(x: torch.Tensor, positions: list[int], base: float) -> torch.Tensor:
    """Rotate-half RoPE written out: pair (i, i + d/2) turned by pos * base^(-2i/d)."""
    d = x.shape[-1]
    out = torch.empty_like(x, dtype=torch.float64)
    for t, pos in enumerate(positions):
        for i in range(d // 2):
            a = pos / base ** (2 * i / d)
            x1, x2 = x[..., t, i].double(), x[..., t, i + d // 2].double()
            out[..., t, i] = x1 * math.cos(a) - x2 * math.sin(a)
            out[..., t, i + d // 2] = x1 * math.sin(a) + x2 * math.cos(a)
    return out.to(x.dtype)


@pytest.mark.parametrize("base", [10000.0, 100000.0])
def test_apply_rope_matches_a_direct_implementation(base):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 5, 8)
    positions = [0, 1, 7, 100, 4095]
    out = positional.apply_rope(x, torch.tensor(positions), base=base)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert_close(out, _rope_reference(x, positions, base), rtol=0, atol=1e-5)
    assert_close(out.norm(dim=-1), x.norm(dim=-1))  # rotations keep lengths


@pytest.mark.parametrize("shift", [1, 5, 1000])
def test_rope_score_depends_only_on_the_offset(shift):
    torch.manual_seed(1)
    q, k = torch.randn(64, dtype=torch.float64), torch.randn(64, dtype=torch.float64)

    def score(m: int, n: int) -> torch.Tensor:
        qm = positional.apply_rope(q[None], torch.tensor([m]))[0]
        kn = positional.apply_rope(k[None], torch.tensor([n]))[0]
        return qm @ kn

    for m, n in [(3, 0), (10, 10), (2, 9)]:
        assert_close(score(m + shift, n + shift), score(m, n), rtol=1e-9, atol=1e-9)
    assert not torch.isclose(score(3, 0), score(4, 0))  # a different offset changes the score


def test_rope_at_position_zero_is_the_identity_and_uses_the_sinusoid_frequencies():
    x = torch.randn(4, 6)
    assert_close(positional.apply_rope(x, torch.zeros(4, dtype=torch.long)), x)
    cos, sin = positional.rope_cos_sin(torch.tensor([1]), 6)
    omega = positional.angular_frequencies(6).float()
    assert_close(cos[0], torch.cat([omega.cos(), omega.cos()]))
    assert_close(sin[0], torch.cat([omega.sin(), omega.sin()]))
    assert_close(
        positional.rotate_half(torch.tensor([1.0, 2.0, 3.0, 4.0])),
        torch.tensor([-3.0, -4.0, 1.0, 2.0]),
    )


def test_apply_rope_rejects_bad_arguments():
    with pytest.raises(ValueError, match="even"):
        positional.apply_rope(torch.randn(3, 5), torch.arange(3))
    with pytest.raises(ValueError, match="positions"):
        positional.apply_rope(torch.randn(3, 4), torch.arange(4))
    with pytest.raises(ValueError, match="integer"):
        positional.apply_rope(torch.randn(3, 4), torch.arange(3.0))
    with pytest.raises(TypeError, match="floating"):
        positional.apply_rope(torch.ones(3, 4, dtype=torch.long), torch.arange(3))
    with pytest.raises(ValueError, match="base"):
        positional.apply_rope(torch.randn(3, 4), torch.arange(3), base=1.0)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"positions": torch.tensor([True, False])}, ValueError, "integer tensor"),
        ({"positions": torch.zeros(2, 2, dtype=torch.long)}, ValueError, r"\(T,\)"),
        ({"base": float("inf")}, ValueError, "base must be a finite number"),
        ({"base": 1.0}, ValueError, "greater than 1"),
        ({"dtype": torch.int64}, TypeError, "floating-point torch.dtype"),
    ],
)
def test_rope_cos_sin_refuses_what_would_give_a_wrong_rotation(kwargs, error, message):
    args = {"positions": torch.arange(3), "d": 4, **kwargs}
    with pytest.raises(error, match=message):
        positional.rope_cos_sin(**args)


def test_rope_cos_sin_in_half_precision_has_the_dtype_asked_for():
    cos, sin = positional.rope_cos_sin(torch.arange(3), 4, dtype=torch.bfloat16)
    assert cos.dtype == sin.dtype == torch.bfloat16


def test_rotate_half_refuses_an_odd_width():
    with pytest.raises(ValueError, match="even last dimension"):
        positional.rotate_half(torch.zeros(2, 5))  # it used to split 5 into 3 and 2
