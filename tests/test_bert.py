"""Tests for attention_book.bert on small random models: names, pooling, masks, and equality
with transformers' BertModel (a test-only reference, built offline from a config)."""

from __future__ import annotations

import json

import pytest
import torch
from torch.testing import assert_close

from attention_book import bert

SMALL = bert.BertConfig(
    vocab_size=50, d_model=16, num_heads=4, num_layers=2, d_ff=32, max_len=20, eps=1e-12
)


def _random_bert_state(config: bert.BertConfig):
    """A random transformers BertModel and its state dict (Hugging Face names)."""
    transformers = pytest.importorskip("transformers")
    hf_config = transformers.BertConfig(
        vocab_size=config.vocab_size,
        hidden_size=config.d_model,
        num_attention_heads=config.num_heads,
        num_hidden_layers=config.num_layers,
        intermediate_size=config.d_ff,
        max_position_embeddings=config.max_len,
        layer_norm_eps=config.eps,
        hidden_act="gelu",
        attn_implementation="eager",
    )
    torch.manual_seed(0)
    model = transformers.BertModel(hf_config).eval()
    with torch.no_grad():  # LayerNorms start at (1, 0): randomise them so a swap would show
        for name, p in model.named_parameters():
            if "LayerNorm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model, {k: v for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def small_pair():
    hf, state = _random_bert_state(SMALL)
    ours = bert.BertEncoder(SMALL).eval()
    bert.load_bert_state(ours, state)
    return hf, ours


def test_config_from_json_reads_a_bert_config(tmp_path):
    raw = {
        "model_type": "bert",
        "hidden_act": "gelu",
        "vocab_size": 50,
        "hidden_size": 16,
        "num_attention_heads": 4,
        "num_hidden_layers": 2,
        "intermediate_size": 32,
        "max_position_embeddings": 20,
        "type_vocab_size": 2,
        "layer_norm_eps": 1e-12,
    }
    (tmp_path / "config.json").write_text(json.dumps(raw))
    assert bert.BertConfig.from_json(tmp_path / "config.json") == SMALL
    (tmp_path / "relu.json").write_text(json.dumps(raw | {"hidden_act": "relu"}))
    with pytest.raises(ValueError, match="relu"):
        bert.BertConfig.from_json(tmp_path / "relu.json")


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="divisible"):
        bert.BertConfig(d_model=10, num_heads=4)
    with pytest.raises(ValueError, match="num_layers"):
        bert.BertConfig(num_layers=0)
    with pytest.raises(ValueError, match="eps"):
        bert.BertConfig(eps=0.0)


def test_encoder_layers_use_bert_eps_and_exact_gelu():
    model = bert.BertEncoder(SMALL)
    assert model.embeddings.norm.eps == 1e-12
    assert all(layer.norm1.eps == layer.norm2.eps == 1e-12 for layer in model.layers)
    assert all(layer.ff.activation == "gelu" and not layer.norm_first for layer in model.layers)


def test_embeddings_sum_three_tables_then_normalise():
    torch.manual_seed(0)
    emb = bert.BertEmbeddings(SMALL)
    ids = torch.tensor([[3, 4, 5]])
    types = torch.tensor([[0, 1, 1]])
    x = emb.token.weight[ids] + emb.position.weight[:3] + emb.token_type.weight[types]
    assert_close(emb(ids, types), emb.norm(x))
    assert_close(emb(ids), emb(ids, torch.zeros_like(ids)))


def test_book_name_maps_every_kind_of_tensor():
    assert bert.book_name("encoder.layer.3.attention.self.query.weight") == (
        "layers.3.self_attn.w_q.weight"
    )
    assert bert.book_name("encoder.layer.0.output.LayerNorm.bias") == "layers.0.norm2.bias"
    assert bert.book_name("encoder.layer.5.intermediate.dense.weight") == "layers.5.ff.w_1.weight"
    assert bert.book_name("embeddings.LayerNorm.weight") == "embeddings.norm.weight"
    assert bert.book_name("pooler.dense.weight") is None
    assert bert.book_name("embeddings.position_ids") is None
    with pytest.raises(ValueError, match="unexpected"):
        bert.book_name("encoder.layer.0.crossattention.self.query.weight")


def test_load_bert_state_rejects_a_checkpoint_that_does_not_fit(small_pair):
    hf, _ = small_pair
    state = dict(hf.state_dict())
    del state["encoder.layer.1.output.dense.bias"]
    with pytest.raises(ValueError, match="missing"):
        bert.load_bert_state(bert.BertEncoder(SMALL), state)


def test_hidden_states_and_attentions_match_transformers(small_pair):
    hf, ours = small_pair
    ids = torch.tensor([[1, 7, 9, 2, 0, 0], [1, 3, 4, 5, 6, 2]])
    real = ids != 0
    with torch.no_grad():
        ref = hf(ids, attention_mask=real.long(), output_attentions=True)
    hidden = ours(ids, real)
    assert_close(hidden[real], ref.last_hidden_state[real], atol=1e-5, rtol=0)
    layers = ours.attention_weights(ids, real)  # N x (B, H, T, T)
    assert isinstance(layers, list) and len(layers) == SMALL.num_layers
    weights = torch.stack(layers, dim=1)  # N x (B, H, T, T) -> (B, N, H, T, T)
    assert weights.shape == (2, SMALL.num_layers, SMALL.num_heads, 6, 6)
    ref_weights = torch.stack(ref.attentions, dim=1)  # N x (B, H, T, T) -> (B, N, H, T, T)
    assert_close(weights, ref_weights, atol=1e-5, rtol=0)
    assert (weights[0, ..., 4:] == 0).all()  # padded keys get exactly zero weight


def test_attention_weights_leave_no_state_behind(small_pair):
    _, ours = small_pair
    ids = torch.tensor([[1, 2, 3]])
    before = ours(ids)
    ours.attention_weights(ids)
    assert not any(hasattr(layer, "self_weights") for layer in ours.layers)
    torch.testing.assert_close(ours(ids), before)


def test_padding_changes_nothing_for_real_tokens(small_pair):
    _, ours = small_pair
    alone = ours(torch.tensor([[1, 7, 9, 2]]))
    padded = ours(torch.tensor([[1, 7, 9, 2, 0, 0]]), torch.tensor([[True] * 4 + [False] * 2]))
    assert_close(padded[:, :4], alone, atol=1e-6, rtol=0)


def test_encoder_rejects_bad_ids(small_pair):
    _, ours = small_pair
    with pytest.raises(TypeError, match="LongTensor"):
        ours(torch.zeros(1, 3))
    with pytest.raises(ValueError, match=r"outside the vocabulary \[0, 50\)"):
        ours(torch.tensor([[1, 50]]))
    with pytest.raises(ValueError, match="length 21"):
        ours(torch.ones(1, 21, dtype=torch.long))
    with pytest.raises(ValueError, match="real must be"):
        ours(torch.tensor([[1, 2]]), torch.tensor([[1, 1]]))


def test_mean_pool_averages_real_tokens_only():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])  # (1, 3, 2)
    real = torch.tensor([[True, True, False]])
    assert_close(bert.mean_pool(hidden, real), torch.tensor([[2.0, 3.0]]))
    with pytest.raises(ValueError, match="at least one"):
        bert.mean_pool(hidden, torch.zeros(1, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="bool mask"):
        bert.mean_pool(hidden, torch.ones(1, 3))


def test_an_empty_batch_gives_empty_hidden_states(small_pair):
    _, ours = small_pair
    assert ours(torch.zeros(0, 4, dtype=torch.long)).shape == (0, 4, SMALL.d_model)
