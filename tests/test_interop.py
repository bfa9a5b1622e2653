"""Tests for attention_book.interop: one adapter for PyTorch's attention and layers.

The equality of each copy with its original, masks and dropout included, is tested beside the
module it builds (tests/test_multihead.py, tests/test_transformer.py).
"""

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from attention_book import interop, multihead, transformer


@pytest.mark.parametrize(
    ("module", "kind"),
    [
        (nn.MultiheadAttention(8, 2, batch_first=True), multihead.MultiHeadAttention),
        (nn.TransformerEncoderLayer(8, 2, 16, batch_first=True), transformer.EncoderLayer),
        (nn.TransformerDecoderLayer(8, 2, 16, batch_first=True), transformer.DecoderLayer),
    ],
)
def test_from_torch_builds_the_book_module_of_the_same_kind(module, kind):
    assert isinstance(interop.from_torch(module.eval()), kind)


def test_from_torch_copies_an_encoder_layer_exactly():
    torch.manual_seed(0)
    ref = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True).eval()
    x = torch.randn(2, 3, 8)
    assert_close(interop.from_torch(ref)(x)[0], ref(x))


def test_from_torch_refuses_other_modules():
    with pytest.raises(TypeError, match="got Linear"):
        interop.from_torch(nn.Linear(2, 2))
