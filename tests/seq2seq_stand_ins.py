"""Small stand-ins for the encode/decode API, shared by the decoding and training tests."""

import torch
from torch import nn

from attention_book import transformer

PAD, BOS, EOS = 0, 1, 2


class MarkovModel(nn.Module):
    """A stand-in with the encode/decode API: the next token depends on the last token and on
    the mean of the source's (non-padding) embeddings. Small enough to search exhaustively."""

    def __init__(self, src_vocab: int = 6, tgt_vocab: int = 5, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.transition = nn.Parameter(2.0 * torch.randn(tgt_vocab, tgt_vocab, generator=g))
        self.src_embed = nn.Parameter(torch.randn(src_vocab, tgt_vocab, generator=g))

    def encode(self, src):
        memory = self.src_embed[src]  # (B, S) -> (B, S, V)
        return memory, (src != PAD)[:, None, None, :]  # (B, S, V), (B, 1, 1, S)

    def decode(self, tgt, memory, src_mask):
        keep = src_mask[:, 0, 0, :, None].float()  # (B, S, 1)
        context = (memory * keep).sum(1) / keep.sum(1)  # (B, V)
        return self.transition[tgt] + context[:, None, :]  # (B, T, V)


def small_transformer(seed: int = 0, eos_bias: float = 0.0) -> transformer.Transformer:
    torch.manual_seed(seed)
    config = transformer.TransformerConfig(
        src_vocab_size=9, tgt_vocab_size=7, d_model=16, num_heads=2, d_ff=32, max_len=16
    )
    model = transformer.Transformer(config).eval()
    with torch.no_grad():
        model.generator.weight.mul_(4.0)  # sharper, more varied next-token choices
        model.generator.bias.zero_()
        model.generator.bias[EOS] = eos_bias  # let some sequences end early
    return model


def random_src(batch: int = 6, length: int = 5, vocab: int = 9, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(3, vocab, (batch, length), generator=g)  # (B, S)
    src[0, -2:] = PAD  # one padded source
    return src


class RecordingMarkov(MarkovModel):
    """MarkovModel that remembers every source it encodes, and works as ``model(src, tgt)``."""

    def __init__(self):
        super().__init__()
        self.sources = []

    def encode(self, src):
        self.sources.append(src)
        return super().encode(src)

    def forward(self, src, tgt):
        return self.decode(tgt, *self.encode(src))


def padded_anywhere():
    """Three sources padded on the right, on the left, and inside the row; the last column is
    padding in every row, so only it may be dropped."""
    return torch.tensor(
        [[3, 4, 5, PAD, PAD, PAD], [PAD, PAD, 3, 4, 5, PAD], [3, PAD, 4, 5, PAD, PAD]]
    )
