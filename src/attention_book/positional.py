"""Sinusoidal encoding and its shift matrices (Vaswani et al., 2017, section 3.5), and rotary
position embedding (RoPE, Su et al., 2021): the same rotations, applied to queries and keys."""

from __future__ import annotations

import torch
from torch import Tensor

from attention_book import validation

#: The base of the wavelengths, 10000 in the paper.
BASE = 10000.0


def angular_frequencies(d_model: int) -> Tensor:
    """float64 ``(D/2,)``: omega_i = 1 / 10000^(2i/D), decreasing from 1."""
    validation.check_positive_int("d_model", d_model)
    if d_model % 2:
        raise ValueError(f"d_model must be even to pair sines with cosines, got {d_model}")
    two_i = torch.arange(0, d_model, 2, dtype=torch.float64)  # (D/2,)
    return 1.0 / BASE ** (two_i / d_model)  # (D/2,)


def sinusoidal_encoding(num_positions: int, d_model: int) -> Tensor:
    """float32 ``(num_positions, D)``: sin(pos omega_i) and cos(pos omega_i) in pair i."""
    validation.check_positive_int("num_positions", num_positions)
    omega = angular_frequencies(d_model)  # (D/2,)
    # Computed in float64: at positions in the thousands float32 angles lose digits.
    pos = torch.arange(num_positions, dtype=torch.float64)[:, None]  # (P, 1)
    angle = pos * omega  # (P, 1) * (D/2,) -> (P, D/2)
    pe = torch.empty(num_positions, d_model, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(angle)
    pe[:, 1::2] = torch.cos(angle)
    return pe.float()  # (P, D)


def shift_matrix(k: int, d_model: int) -> Tensor:
    """float64 ``(D, D)`` M_k with PE(pos + k) = M_k PE(pos): pair i turned by k omega_i.

    M_k is orthogonal and does not depend on pos; M_a M_b = M_(a+b) and M_(-k) = M_k^T."""
    if isinstance(k, bool) or not isinstance(k, int):
        raise TypeError(f"k must be an int, got {type(k).__name__}")
    angle = k * angular_frequencies(d_model)  # (D/2,)
    c, s = torch.cos(angle), torch.sin(angle)  # (D/2,) each
    even = torch.arange(0, d_model, 2)  # the sine coordinate of each pair
    m = torch.zeros(d_model, d_model, dtype=torch.float64)
    # angle addition: sin((p+k)w) = sin(pw) cos(kw) + cos(pw) sin(kw),
    #                 cos((p+k)w) = cos(pw) cos(kw) - sin(pw) sin(kw)
    m[even, even], m[even, even + 1] = c, s
    m[even + 1, even], m[even + 1, even + 1] = -s, c
    return m  # (D, D)


def rope_cos_sin(
    positions: Tensor, d: int, base: float = BASE, dtype: torch.dtype = torch.float32
) -> tuple[Tensor, Tensor]:
    """``(cos, sin)``, each ``(T, d)``: RoPE's angles ``pos * base^(-2i/d)`` for ``positions (T,)``.

    Pair i is (x_i, x_(i + d/2)) (rotate-half); the angles are computed in float64, then cast."""
    validation.check_positive_int("d", d)
    if d % 2:
        raise ValueError(f"RoPE rotates pairs of coordinates, so d must be even, got {d}")
    integer = isinstance(positions, Tensor) and not positions.dtype.is_floating_point
    if not integer or positions.dtype in (torch.bool, torch.complex64, torch.complex128):
        raise ValueError(f"positions must be a (T,) integer tensor, got {positions!r}")
    if positions.dim() != 1:
        raise ValueError(f"positions must be a (T,) integer tensor, got shape {positions.shape}")
    if not validation.check_number("base", base) > 1:
        raise ValueError(f"base must be a finite number greater than 1, got {base!r}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
    two_i = torch.arange(0, d, 2, dtype=torch.float64, device=positions.device)  # (d/2,)
    omega = 1.0 / base ** (two_i / d)  # (d/2,)
    # float64 angles, as in sinusoidal_encoding: far positions keep their digits.
    angle = positions.double()[:, None] * omega  # (T, 1) * (d/2,) -> (T, d/2)
    angle = torch.cat([angle, angle], dim=-1)  # (T, d/2) -> (T, d)
    return angle.cos().to(dtype), angle.sin().to(dtype)


def rotate_half(x: Tensor) -> Tensor:
    """(x_1, x_2) -> (-x_2, x_1) on the two halves of the last dimension: a quarter turn."""
    if x.shape[-1] % 2:
        raise ValueError(f"rotate_half needs an even last dimension, got shape {tuple(x.shape)}")
    x1, x2 = x.chunk(2, dim=-1)  # (..., d) -> 2 x (..., d/2)
    return torch.cat([-x2, x1], dim=-1)  # (..., d)


def rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """``(..., T, d) -> (..., T, d)``: each pair turned by the angles of :func:`rope_cos_sin`."""
    return x * cos + rotate_half(x) * sin  # (..., T, d)


def apply_rope(x: Tensor, positions: Tensor, base: float = BASE) -> Tensor:
    """RoPE in LLaMA's rotate-half layout on ``x (..., T, d)`` at ``positions (T,)``, same shape.

    Applied to queries and keys, it makes the score q_m . k_n depend on m - n only."""
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.dim() < 2:
        raise TypeError("x must be a floating-point tensor of shape (..., T, d)")
    if not isinstance(positions, Tensor) or positions.shape != (x.shape[-2],):
        raise ValueError(
            f"positions must be ({x.shape[-2]},), one per row of x {tuple(x.shape)}; "
            f"got {getattr(positions, 'shape', positions)}"
        )
    cos, sin = rope_cos_sin(positions, x.shape[-1], base, x.dtype)  # (T, d) each
    return rotate(x, cos, sin)  # (..., T, d)
