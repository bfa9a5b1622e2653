"""The parts of a block besides attention: position-wise feed-forward networks and RMSNorm."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attention_book import validation

ACTIVATIONS = ("relu", "gelu")


class FeedForward(nn.Module):
    """FFN(x) = w_2(dropout(act(w_1 x))) (section 3.3), act ``"relu"`` or ``"gelu"``."""

    def __init__(
        self, d_model: int, d_ff: int, dropout: float = 0.0, activation: str = "relu"
    ) -> None:
        super().__init__()
        self.d_model = validation.check_positive_int("d_model", d_model)
        validation.check_positive_int("d_ff", d_ff)
        dropout = validation.check_probability("dropout", dropout)
        self.activation = validation.check_choice("activation", activation, ACTIVATIONS)
        self.w_1 = nn.Linear(d_model, d_ff)
        self.w_2 = nn.Linear(d_ff, d_model)
        self.dropout = nn.Dropout(dropout)
        self._act = F.relu if activation == "relu" else F.gelu

    def forward(self, x: Tensor) -> Tensor:
        """``(..., D) -> (..., D)``."""
        hidden = self._act(self.w_1(x))  # (..., D) -> (..., d_ff)
        return self.w_2(self.dropout(hidden))  # (..., d_ff) -> (..., D)


class SwiGLU(nn.Module):
    """W_down(SiLU(x W_gate) * x W_up) (Shazeer, 2020), no biases."""

    def __init__(self, d_model: int, d_ff: int):
        super().__init__()
        validation.check_positive_int("d_model", d_model)
        validation.check_positive_int("d_ff", d_ff)
        self.w_gate = nn.Linear(d_model, d_ff, bias=False)
        self.w_up = nn.Linear(d_model, d_ff, bias=False)
        self.w_down = nn.Linear(d_ff, d_model, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """``(..., D) -> (..., D)``."""
        return self.w_down(F.silu(self.w_gate(x)) * self.w_up(x))  # (..., d_ff) -> (..., D)


class RMSNorm(nn.Module):
    """x / rms(x) * g (Zhang and Sennrich, 2019); the mean square is computed in float32, as in
    transformers (in float16 it overflows above 256 and the output would be zeros)."""

    def __init__(self, d: int, eps: float = 1e-5):
        super().__init__()
        validation.check_positive_int("d", d)
        self.eps = validation.check_number("eps", eps)
        if not self.eps > 0:
            raise ValueError(f"eps must be positive, got {eps}")
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x: Tensor) -> Tensor:
        """``(..., d) -> (..., d)``, in the dtype of ``x``."""
        h = x.float()
        inv_rms = torch.rsqrt(h.pow(2).mean(dim=-1, keepdim=True) + self.eps)  # (..., 1)
        return self.weight * (h * inv_rms).to(x.dtype)


def norm_layer(kind: str, d: int, eps: float) -> nn.Module:
    """``nn.LayerNorm(d, eps)`` for ``kind="layer"``, :class:`RMSNorm` for ``"rms"``."""
    validation.check_choice("norm", kind, ("layer", "rms"))
    return nn.LayerNorm(d, eps=eps) if kind == "layer" else RMSNorm(d, eps)


def feed_forward(d_model: int, d_ff: int, dropout: float, activation: str) -> nn.Module:
    """:class:`FeedForward` for ``"relu"`` or ``"gelu"``, :class:`SwiGLU` for ``"swiglu"``."""
    if activation == "swiglu":
        return SwiGLU(d_model, d_ff)
    return FeedForward(d_model, d_ff, dropout, activation)


def xavier_init(module: nn.Module) -> None:
    """Xavier-uniform init of every matrix of ``module``, as ``torch.nn.Transformer`` does."""
    for p in module.parameters():
        if p.dim() > 1:
            nn.init.xavier_uniform_(p)
