"""Tests for attention_book.distributed: every distributed computation equals one process.

The per-rank functions below are top-level functions of this module, so that the processes that
launch starts can import them by name.
"""

import inspect
import multiprocessing
import os
import re
import time

import pytest
import torch
import torch.distributed as dist
from torch.testing import assert_close

from attention_book import attention, distributed, gpt, multihead

# ---------------------------------------------------------------------------------------------
# Per-rank functions
# ---------------------------------------------------------------------------------------------


def echo(rank, world_size, *args, **kwargs):
    t = torch.tensor([float(rank)])
    dist.all_reduce(t)
    return rank, world_size, args, kwargs, t.item(), os.getpid()


def fail_on_rank_one(rank, world_size, pid_dir):
    (pid_dir / f"{rank}.pid").write_text(str(os.getpid()))
    if rank == 1:
        raise KeyError("rank one is broken")
    dist.barrier()  # the other ranks wait for rank 1, which never comes
    return rank


def sleep_forever(rank, world_size, pid_dir):
    (pid_dir / f"{rank}.pid").write_text(str(os.getpid()))
    time.sleep(600)


def exit_without_a_word(rank, world_size):
    if rank == 0:
        os._exit(3)
    return rank


def ring_chunks(rank, world_size, q, k, v, q_lengths, kv_lengths, causal):
    """Rank r's chunk of q (lengths q_lengths) and of k, v (lengths kv_lengths), ring-attended."""
    q = q.split(q_lengths, dim=-2)[rank]  # (B, H, T_r, d_k)
    k, v = (t.split(kv_lengths, dim=-2)[rank] for t in (k, v))  # (B, H, S_r, d)
    with distributed.counting_sends() as sent:
        out = distributed.ring_attention(q, k, v, causal=causal)
    return out, sum(sent)


def ring_with_bad_input(rank, world_size, what):
    q = k = v = torch.randn(1, 2, 4, 8)
    if rank == 1 and what == "d_k":
        q = k = torch.randn(1, 2, 4, 6)
    if rank == 1 and what == "length":
        q = k = v = torch.randn(1, 2, 5, 8)
    if rank == 1 and what == "3d":
        q = torch.randn(2, 4, 8)
    return distributed.ring_attention(q, k, v, causal=(what == "length"))


def ring_in_subgroup(rank, world_size, q, k, v):
    group = dist.new_group([1, 2])
    if rank == 0:
        return None
    mine = rank - 1
    q, k, v = (t.chunk(2, dim=-2)[mine] for t in (q, k, v))
    return distributed.ring_attention(q, k, v, causal=True, group=group)


# ---------------------------------------------------------------------------------------------
# launch
# ---------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _seed_and_no_process_left():
    torch.manual_seed(0)
    yield
    # launch joins every rank it started, whether fn returned, raised or hung.
    assert multiprocessing.active_children() == []


def written_pids(pid_dir):
    """The process ids that ranks wrote before they were stopped (a slow start may write none)."""
    return [int(f.read_text()) for f in pid_dir.glob("*.pid")]


def wait_gone(pids, seconds=10.0):
    """True once none of ``pids`` is a live process."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        alive = []
        for pid in pids:
            try:
                os.kill(pid, 0)
                alive.append(pid)
            except ProcessLookupError:
                pass
        if not alive:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_launch_returns_every_rank_in_order(world_size):
    results = distributed.launch(echo, world_size, "a", 2, key="value")
    expected_sum = sum(range(world_size))
    for rank, (r, w, args, kwargs, total, _) in enumerate(results):
        assert (r, w, args, kwargs, total) == (
            rank,
            world_size,
            ("a", 2),
            {"key": "value"},
            expected_sum,
        )
    assert wait_gone([res[-1] for res in results])


@pytest.mark.parametrize("world_size", [0, -1, True, 2.5, "2"])
def test_launch_refuses_a_bad_world_size(world_size):
    with pytest.raises(ValueError, match="world_size"):
        distributed.launch(echo, world_size)


def test_launch_refuses_a_function_a_process_cannot_import():
    def local(rank, world_size):
        return rank

    for fn in (local, lambda rank, world_size: rank):
        with pytest.raises(TypeError, match="top level of a .py file"):
            distributed.launch(fn, 2)
    with pytest.raises(TypeError, match="must be a function"):
        distributed.launch("echo", 2)


def test_launch_refuses_a_function_from_an_interactive_session(monkeypatch):
    import sys
    import types

    main = types.ModuleType("__main__")  # a notebook's __main__ has no __file__
    monkeypatch.setitem(sys.modules, "__main__", main)

    def from_notebook(rank, world_size):
        return rank

    from_notebook.__module__, from_notebook.__qualname__ = "__main__", "from_notebook"
    with pytest.raises(TypeError, match="interactive session"):
        distributed.launch(from_notebook, 2)


def test_a_rank_that_raises_is_named_with_its_traceback_and_no_process_survives(tmp_path):
    with pytest.raises(distributed.RankError) as info:
        distributed.launch(fail_on_rank_one, 3, tmp_path)
    assert info.value.rank == 1
    assert "rank 1 of 3 raised" in str(info.value)
    assert "rank one is broken" in str(info.value) and "fail_on_rank_one" in str(info.value)
    assert isinstance(info.value.__cause__, KeyError)
    assert wait_gone(written_pids(tmp_path))  # and the fixture: every rank was joined


def test_a_hang_ends_at_the_timeout_and_no_process_survives(tmp_path):
    start = time.monotonic()
    with pytest.raises(TimeoutError, match=r"ranks \[0, 1\] of 2 did not finish within 5 s"):
        distributed.launch(sleep_forever, 2, tmp_path, timeout_s=5)
    assert time.monotonic() - start < 30
    assert wait_gone(written_pids(tmp_path))  # and the fixture: every rank was joined


def test_a_rank_that_dies_without_a_word_is_reported():
    with pytest.raises(distributed.RankError, match="rank 0 of 2 exited with code 3"):
        distributed.launch(exit_without_a_word, 2)


@pytest.mark.parametrize("timeout_s", [0, -1.0, float("nan")])
def test_launch_refuses_a_bad_timeout(timeout_s):
    with pytest.raises(ValueError, match="timeout_s"):
        distributed.launch(echo, 2, timeout_s=timeout_s)


def test_collectives_worker_shows_what_each_collective_moves():
    r0, r1 = distributed.launch(distributed.collectives_worker, 2)
    assert r0["all_reduce"] == r1["all_reduce"] == [3.0, 6.0]
    assert r0["all_gather"] == r1["all_gather"] == [[1.0, 2.0], [2.0, 4.0]]
    assert (r0["recv"], r1["recv"]) == ([0.0, 0.0], [7.0, 8.0])


# ---------------------------------------------------------------------------------------------
# ring_attention
# ---------------------------------------------------------------------------------------------


def full(q, k, v, causal):
    mask = attention.causal_mask(q.shape[-2]) if causal else None
    return attention.scaled_dot_product_attention(q, k, v, mask)[0]


@pytest.mark.parametrize("world_size", [1, 2, 3])
@pytest.mark.parametrize("causal", [False, True])
def test_ring_attention_equals_attention_on_the_whole_sequence(world_size, causal):
    B, H, T, d_k, d_v = 2, 3, 6 * world_size, 8, 5
    q, k, v = torch.randn(B, H, T, d_k), torch.randn(B, H, T, d_k), torch.randn(B, H, T, d_v)
    lengths = [T // world_size] * world_size
    results = distributed.launch(ring_chunks, world_size, q, k, v, lengths, lengths, causal)
    out = torch.cat([o for o, _ in results], dim=-2)  # (B, H, T, d_v)
    assert_close(out, full(q, k, v, causal), atol=1e-5, rtol=0)
    # Each rank passes on W - 1 blocks of keys and values, skipped or not.
    block = B * H * (T // world_size) * (d_k + d_v) * 4
    assert [s for _, s in results] == [(world_size - 1) * block] * world_size


def test_ring_attention_takes_unequal_chunks_without_causal():
    q, k, v = torch.randn(1, 2, 10, 4), torch.randn(1, 2, 13, 4), torch.randn(1, 2, 13, 3)
    results = distributed.launch(ring_chunks, 3, q, k, v, [2, 5, 3], [6, 1, 6], False)
    out = torch.cat([o for o, _ in results], dim=-2)
    assert_close(out, full(q, k, v, False), atol=1e-5, rtol=0)


def test_ring_attention_runs_in_a_subgroup():
    q, k, v = (torch.randn(1, 2, 8, 4) for _ in range(3))
    _, a, b = distributed.launch(ring_in_subgroup, 3, q, k, v)
    assert_close(torch.cat([a, b], dim=-2), full(q, k, v, True), atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "what, messages",
    [
        ("length", ["causal ring_attention needs T_r = S_r"] * 2),
        ("d_k", [r"ranks disagree on \(B, H, d_k, d_v, dtype\)"] * 2),
        ("3d", [r"the inputs of rank\(s\) \[1\] are invalid", r"takes \(B, H, len, d\)"]),
    ],
)
def test_ring_attention_errors_reach_every_rank(what, messages):
    """Every rank raises, rank 0 too although its inputs are fine: none waits forever."""
    with pytest.raises(distributed.RankError) as info:
        distributed.launch(ring_with_bad_input, 2, what, timeout_s=60)
    assert isinstance(info.value.__cause__, ValueError)
    assert re.search(messages[info.value.rank], str(info.value))


def test_ring_worker_returns_output_bytes_and_peak():
    q, k, v = (torch.randn(1, 1, 64, 8) for _ in range(3))
    results = distributed.launch(distributed.ring_worker, 2, q, k, v, True, True)
    assert_close(torch.cat([o for o, _, _ in results], -2), full(q, k, v, True), atol=1e-5, rtol=0)
    assert [s for _, s, _ in results] == [2 * 32 * 8 * 4] * 2
    assert all(peak > 32 * 32 * 4 for _, _, peak in results)  # at least a block of scores


# ---------------------------------------------------------------------------------------------
# shard_heads
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("world_size", [1, 2, 3, 6])
@pytest.mark.parametrize("bias", [True, False])
def test_shards_sum_to_the_whole_module(world_size, bias):
    mha = multihead.MultiHeadAttention(24, 6, bias=bias).eval()
    x = torch.randn(2, 5, 24)
    mask = attention.causal_mask(5)
    shards = [distributed.shard_heads(mha, r, world_size) for r in range(world_size)]
    assert [list(s.heads) for s in shards] == [
        list(range(r * 6 // world_size, (r + 1) * 6 // world_size)) for r in range(world_size)
    ]
    total = sum(s(x, x, x, mask) for s in shards)  # what an all-reduce computes
    assert_close(total, mha(x, x, x, mask)[0])


def test_shards_cover_cross_attention_and_a_padding_mask():
    mha = multihead.MultiHeadAttention(16, 4).eval()
    x, memory = torch.randn(2, 3, 16), torch.randn(2, 7, 16)
    padding = torch.ones(2, 1, 1, 7, dtype=torch.bool)
    padding[0, ..., 5:] = False
    total = sum(distributed.shard_heads(mha, r, 2)(x, memory, memory, padding) for r in range(2))
    assert_close(total, mha(x, memory, memory, padding)[0])


@pytest.mark.parametrize("world_size", [2, 3])
def test_heads_worker_all_reduces_to_the_whole_module(world_size):
    mha = multihead.MultiHeadAttention(24, 6).eval()
    x = torch.randn(2, 5, 24)
    results = distributed.launch(distributed.heads_worker, world_size, mha, x)
    with torch.no_grad():
        expected = mha(x, x, x)[0]
    for out, sent in results:
        assert_close(out, expected, atol=1e-5, rtol=0)
        assert sent == x.numel() * 4


def test_shard_heads_refuses_what_it_cannot_split():
    mha = multihead.MultiHeadAttention(24, 6)
    with pytest.raises(ValueError, match="num_heads=6 does not split evenly over world_size=4"):
        distributed.shard_heads(mha, 0, 4)
    with pytest.raises(ValueError, match=r"rank must be in \[0, world_size=2\), got 2"):
        distributed.shard_heads(mha, 2, 2)
    with pytest.raises(ValueError, match="rank"):
        distributed.shard_heads(mha, -1, 2)
    with pytest.raises(ValueError, match="world_size"):
        distributed.shard_heads(mha, 0, 0)
    with pytest.raises(TypeError, match="MultiHeadAttention, got MultiheadAttention"):
        distributed.shard_heads(torch.nn.MultiheadAttention(24, 6), 0, 2)
    mha.num_kv_heads = 2  # grouped-query attention: not supported
    with pytest.raises(ValueError, match="num_kv_heads=2 for num_heads=6"):
        distributed.shard_heads(mha, 0, 2)
    mha.num_kv_heads = 6
    mha.rope = object()
    with pytest.raises(ValueError, match="rope"):
        distributed.shard_heads(mha, 0, 2)


def test_shard_is_a_copy_and_refuses_a_per_head_mask():
    mha = multihead.MultiHeadAttention(8, 2)
    shard = distributed.shard_heads(mha, 1, 2)
    with torch.no_grad():
        shard.w_q.weight.zero_()
    assert mha.w_q.weight.abs().sum() > 0
    x = torch.randn(1, 3, 8)
    with pytest.raises(ValueError, match="one mask for all heads"):
        shard(x, x, x, torch.ones(1, 2, 3, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="rotary"):
        shard(x, x, x, rope=(torch.ones(3, 4), torch.zeros(3, 4)))
    with pytest.raises(
        ValueError, match=r"query must be \(B, len, d_model=8\).*got query \(3, 8\)"
    ):
        shard(x[0], x, x)
    with pytest.raises(ValueError, match=r"key must be \(B, len, d_model=8\).*key \(1, 3, 4\)"):
        shard(x, x[..., :4], x)


# ---------------------------------------------------------------------------------------------
# Data parallelism
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("world_size", [2, 3])
def test_ddp_training_equals_one_process(world_size):
    config = gpt.GPTConfig(vocab_size=11, d_model=16, num_heads=2, num_layers=1, d_ff=32, max_len=8)
    ids = torch.randint(1, 11, (6, 9))
    inputs, labels = ids[:, :-1], ids[:, 1:]
    one = distributed.train_gpt(config, inputs, labels, steps=3, lr=0.5)
    results = distributed.launch(distributed.ddp_worker, world_size, config, inputs, labels, 3, 0.5)
    unique = {id(p): p for p in gpt.GPT(config).parameters()}.values()  # the tied matrix once
    grad_bytes = sum(p.numel() * 4 for p in unique)
    for params, sent in results:
        assert params.keys() == one.keys()
        for name in one:
            assert_close(params[name], one[name], atol=1e-5, rtol=0)
        assert sent == grad_bytes
    torch.manual_seed(0)  # the initial parameters of train_gpt(seed=0)
    moved = {n: (one[n] - p).abs().max() for n, p in gpt.GPT(config).named_parameters()}
    assert max(moved.values()) > 1e-3  # the parameters did move: the test is not vacuous


def test_collectives_worker_needs_two_ranks():
    with pytest.raises(distributed.RankError, match="send/recv needs 2 ranks, not world_size=1"):
        distributed.launch(distributed.collectives_worker, 1)


def test_shard_heads_refuses_a_grouped_query_module_built_as_such():
    if "num_kv_heads" not in inspect.signature(multihead.MultiHeadAttention).parameters:
        pytest.skip("this MultiHeadAttention has no num_kv_heads")
    mha = multihead.MultiHeadAttention(24, 6, num_kv_heads=2)
    with pytest.raises(ValueError, match="num_kv_heads=2 for num_heads=6"):
        distributed.shard_heads(mha, 0, 2)
