"""Attention across processes, on one machine with gloo on 127.0.0.1: :func:`launch`, head
parallelism (:func:`shard_heads`, Shoeybi et al., 2019) and :func:`ring_attention` (Liu et
al., 2023). The chapter's per-rank ``*_worker`` functions live here, because a process
started by :func:`launch` imports its function by name."""

from __future__ import annotations

import contextlib
import datetime
import importlib
import math
import multiprocessing as mp
import os
import pickle
import queue
import socket
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from attention_book import attention, gpt, measure, multihead, train, validation

#: Seconds :func:`launch` waits for all ranks before it stops them and raises TimeoutError.
DEFAULT_TIMEOUT_S = 120.0
HOST = "127.0.0.1"


class RankError(RuntimeError):
    """A rank of :func:`launch` raised; ``rank`` names it, the message holds its traceback."""

    def __init__(self, message: str, rank: int) -> None:
        super().__init__(message)
        self.rank = rank


# --------------------------------------------------------------------------------------------
# Launching processes
# --------------------------------------------------------------------------------------------


def _loopback_interface() -> str | None:
    """The name of the loopback interface ("lo" on Linux, "lo0" on macOS), if one is found."""
    with contextlib.suppress(OSError, AttributeError):
        for _, name in socket.if_nameindex():
            if name.startswith("lo"):
                return name
    return None


def _importable_name(fn: object) -> tuple[str, str]:
    """``(module, qualname)`` by which a child process can import ``fn``, or a clear TypeError."""
    if not callable(fn):
        raise TypeError(f"fn must be a function, got {type(fn).__name__}")
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    advice = (
        "launch starts fresh processes, which import fn by its module and name: define it at "
        "the top level of a .py file (a notebook's functions cannot be imported), as the "
        "per-rank functions in attention_book.distributed are"
    )
    if not isinstance(module, str) or not isinstance(qualname, str):
        raise TypeError(f"fn {fn!r} has no module and name to import it by; {advice}")
    if "<" in qualname:  # <lambda>, <locals>
        raise TypeError(f"fn {module}.{qualname} is not importable; {advice}")
    main = sys.modules.get("__main__")
    if module == "__main__" and not getattr(main, "__file__", None):
        raise TypeError(f"fn {qualname} was defined in an interactive session; {advice}")
    return module, qualname


def _resolve(module: str, qualname: str) -> Callable[..., Any]:
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _run_rank(
    rank: int,
    world_size: int,
    port: int,
    target: tuple[str, str],
    sys_path: list[str],
    args: tuple,
    kwargs: dict,
    timeout_s: float,
    results: Any,
) -> None:
    """The body of each child process: join the group, call fn, send back its result."""
    sys.path[:] = sys_path
    interface = _loopback_interface()
    if interface is not None:
        os.environ.setdefault("GLOO_SOCKET_IFNAME", interface)  # gloo's sockets: 127.0.0.1 only
    torch.set_num_threads(1)  # several processes share the cores; one thread each
    joined = False
    try:
        fn = _resolve(*target)
        store = dist.TCPStore(HOST, port, world_size, is_master=False)
        timeout = datetime.timedelta(seconds=timeout_s)
        dist.init_process_group(
            "gloo", store=store, rank=rank, world_size=world_size, timeout=timeout
        )
        joined = True
        results.put((rank, True, pickle.dumps(fn(rank, world_size, *args, **kwargs))))
    except BaseException as exc:  # noqa: BLE001 - every failure goes back to the caller
        text = traceback.format_exc()
        try:
            payload = pickle.dumps(exc)
        except Exception:  # noqa: BLE001 - an exception that cannot be pickled: text only
            payload = None
        results.put((rank, False, (text, payload)))
    finally:
        # Reported first: if a peer is stuck in a collective, the caller stops this process.
        if joined:
            dist.destroy_process_group()


#: Modules the fork server imports once for all ranks, seconds that every rank would otherwise
#: pay: torch.broadcast_shapes (used by the input checks) imports sympy on its first call, and
#: DistributedDataParallel imports torch._dynamo when it is built.
_PRELOAD = [
    "torch",
    "torch.distributed",
    "torch.fx.experimental.symbolic_shapes",
    "torch._dynamo",
    __name__,
]


def _context() -> mp.context.BaseContext:
    """forkserver where it exists: the server imports torch once, and each rank forks from it."""
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(_PRELOAD)
        return ctx
    return mp.get_context("spawn")


def launch(
    fn: Callable[..., Any],
    world_size: int = 2,
    *args: Any,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    **kwargs: Any,
) -> list:
    """``[fn(0, world_size, ...), fn(1, ...), ...]``: ``fn`` run in ``world_size`` processes.

    The ranks form one gloo group on 127.0.0.1 (a free port), one thread each, forked from a
    forkserver that imports torch once; call it under ``if __name__ == "__main__":``. ``args``,
    ``kwargs`` and results must pickle. After ``timeout_s`` every rank is stopped and
    TimeoutError raised; a rank that raises gives a :class:`RankError`."""
    target = _importable_name(fn)
    world_size = validation.check_positive_int("world_size", world_size)
    timeout_s = validation.check_float("timeout_s", timeout_s)
    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be positive, got {timeout_s}")
    ctx = _context()
    store = dist.TCPStore(HOST, 0, world_size + 1, is_master=True, wait_for_workers=False)
    results = ctx.Queue()
    procs = [
        ctx.Process(
            target=_run_rank,
            args=(r, world_size, store.port, target, list(sys.path), args, kwargs),
            kwargs={"timeout_s": timeout_s, "results": results},
            daemon=True,
        )
        for r in range(world_size)
    ]
    values: dict[int, Any] = {}
    finished = False
    try:
        for p in procs:
            p.start()
        deadline = time.monotonic() + timeout_s
        while len(values) < world_size:
            try:
                rank, ok, payload = results.get(timeout=0.05)
            except queue.Empty:
                _check_alive(procs, values, results, deadline, timeout_s)
                continue
            if ok:
                values[rank] = pickle.loads(payload)
            else:
                _raise_rank_error(rank, world_size, *payload)
        finished = True
    finally:
        _stop(procs, grace_s=5.0 if finished else 0.0)
        results.close()
        results.join_thread()
        del store
    return [values[r] for r in range(world_size)]


def _check_alive(procs: list, values: dict, results: Any, deadline: float, timeout_s: float):
    """Raise if a rank died without a word or time is up."""
    for rank, p in enumerate(procs):
        if rank not in values and p.exitcode is not None:
            with contextlib.suppress(queue.Empty):  # its last message may still be in the pipe
                r, ok, payload = results.get(timeout=1.0)
                if ok:
                    values[r] = pickle.loads(payload)
                    return
                _raise_rank_error(r, len(procs), *payload)
            raise RankError(
                f"rank {rank} of {len(procs)} exited with code {p.exitcode} without a result",
                rank,
            )
    if time.monotonic() > deadline:
        missing = [r for r in range(len(procs)) if r not in values]
        raise TimeoutError(
            f"launch: ranks {missing} of {len(procs)} did not finish within {timeout_s:g} s "
            f"(a hang? every rank must call the same collectives in the same order); "
            f"all ranks were stopped"
        )


def _raise_rank_error(rank: int, world_size: int, text: str, payload: bytes | None):
    cause = None
    if payload is not None:
        with contextlib.suppress(Exception):
            cause = pickle.loads(payload)
    message = f"rank {rank} of {world_size} raised; its traceback:\n{text.rstrip()}"
    raise RankError(message, rank) from cause


def _stop(procs: list, grace_s: float) -> None:
    """Let ranks exit for ``grace_s``, then terminate, then kill: no process outlives launch."""
    deadline = time.monotonic() + grace_s
    for p in procs:
        if p.pid is not None:
            p.join(timeout=max(0.0, deadline - time.monotonic()))
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        if p.pid is not None:
            p.join(timeout=2.0)
        if p.is_alive():
            p.kill()
            p.join()


# --------------------------------------------------------------------------------------------
# Counting what is sent
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def counting_sends() -> Iterator[list[int]]:
    """Yield a list that collects the bytes of every point-to-point send inside the block."""
    sent: list[int] = []
    originals = dist.send, dist.isend

    def wrap(op: Callable[..., Any]) -> Callable[..., Any]:
        def counted(tensor: Tensor, *args: Any, **kwargs: Any) -> Any:
            sent.append(tensor.numel() * tensor.element_size())
            return op(tensor, *args, **kwargs)

        return counted

    dist.send, dist.isend = wrap(originals[0]), wrap(originals[1])
    try:
        yield sent
    finally:
        dist.send, dist.isend = originals


# --------------------------------------------------------------------------------------------
# Head parallelism
# --------------------------------------------------------------------------------------------


class HeadShard(multihead.MultiHeadAttention):
    """One rank's heads of a ``MultiHeadAttention``; only rank 0 keeps W_O's bias. ``heads``: their
    indices in the full module."""

    def __init__(self, mha: nn.Module, rank: int, world_size: int) -> None:
        nn.Module.__init__(self)  # its projections are slices of mha's, built here
        H, d_k, D = mha.num_heads, mha.d_k, mha.w_o.weight.shape[0]
        self.d_model, self.d_k, self.dropout, self.layer_idx = D, d_k, 0.0, 0
        self.num_heads = self.num_kv_heads = H // world_size
        first = rank * self.num_heads
        self.heads = range(first, first + self.num_heads)
        rows = slice(first * d_k, (first + self.num_heads) * d_k)  # this rank's features
        width = self.num_heads * d_k
        bias = mha.w_q.bias is not None
        dtype, device = mha.w_o.weight.dtype, mha.w_o.weight.device
        self.w_q, self.w_k, self.w_v = (
            nn.Linear(D, width, bias=bias, dtype=dtype, device=device) for _ in range(3)
        )
        self.w_o = nn.Linear(width, D, bias=bias and rank == 0, dtype=dtype, device=device)
        with torch.no_grad():
            for mine, full in ((self.w_q, mha.w_q), (self.w_k, mha.w_k), (self.w_v, mha.w_v)):
                mine.weight.copy_(full.weight[rows])  # (D, D) -> (H_r d_k, D): rows
                if bias:
                    mine.bias.copy_(full.bias[rows])  # (D,) -> (H_r d_k,)
            self.w_o.weight.copy_(mha.w_o.weight[:, rows])  # (D, D) -> (D, H_r d_k): columns
            if self.w_o.bias is not None:
                self.w_o.bias.copy_(mha.w_o.bias)

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        mask: Tensor | None = None,
        rope: object = None,
    ) -> Tensor:
        """This rank's part ``(B, T, D)`` of the output; the ranks' parts sum to the whole."""
        if rope is not None:
            raise ValueError("a head shard does not apply rotary position embeddings (rope)")
        if isinstance(mask, Tensor) and mask.dim() == 4 and mask.shape[1] != 1:
            raise ValueError(
                f"a head shard takes one mask for all heads, (T, S) or (B, 1, T, S); got "
                f"{tuple(mask.shape)}"
            )
        return super().forward(query, key, value, mask, need_weights=True)[0]  # (B, T, D)


def shard_heads(mha: nn.Module, rank: int, world_size: int) -> nn.Module:
    """The heads of ``mha`` that ``rank`` of ``world_size`` computes (Megatron-LM), as a copy.

    Head h uses rows ``h d_k .. (h + 1) d_k`` of W_Q, W_K, W_V and the same columns of W_O, so
    ``Concat(heads) W_O`` is a sum over heads that an all-reduce completes. ``mha`` needs a
    ``num_heads`` divisible by ``world_size`` and no grouped keys."""
    if not isinstance(mha, multihead.MultiHeadAttention):
        raise TypeError(
            f"shard_heads takes a multihead.MultiHeadAttention, got {type(mha).__name__}"
        )
    world_size = validation.check_positive_int("world_size", world_size)
    rank = validation.check_non_negative_int("rank", rank)
    if rank >= world_size:
        raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
    H = mha.num_heads
    if H % world_size != 0:
        raise ValueError(
            f"num_heads={H} does not split evenly over world_size={world_size} ranks: each rank "
            f"needs a whole number of heads"
        )
    kv_heads = getattr(mha, "num_kv_heads", H)
    if kv_heads != H:
        raise ValueError(
            f"shard_heads supports one key-value head per query head; this module has "
            f"num_kv_heads={kv_heads} for num_heads={H}"
        )
    if getattr(mha, "rope", None) not in (None, False):
        raise ValueError("shard_heads does not support rotary position embeddings (rope)")
    D, d_k = mha.w_o.weight.shape[0], mha.d_k
    for name in ("w_q", "w_k", "w_v"):
        if tuple(getattr(mha, name).weight.shape) != (H * d_k, D):
            raise ValueError(
                f"shard_heads expects {name} of shape (H d_k, D) = {(H * d_k, D)}, got "
                f"{tuple(getattr(mha, name).weight.shape)}"
            )
    return HeadShard(mha, rank, world_size)


# --------------------------------------------------------------------------------------------
# Sequence parallelism: ring attention
# --------------------------------------------------------------------------------------------

_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def _shape_code(q: object, k: object, v: object) -> tuple[list[int], Exception | None]:
    """This rank's ``[ok, B, H, T_r, S_r, d_k, d_v, dtype]`` and its local error, if any."""
    try:
        validation.check_attention_inputs(q, k, v)
        for name, x in (("q", q), ("k", k), ("v", v)):
            if x.dim() != 4:
                raise ValueError(
                    f"ring_attention takes (B, H, len, d) tensors; {name} has shape "
                    f"{tuple(x.shape)}"
                )
        if q.shape[:2] != k.shape[:2] or k.shape[:2] != v.shape[:2]:
            raise ValueError(
                f"q, k and v need the same (B, H); got q {tuple(q.shape)}, k {tuple(k.shape)}, "
                f"v {tuple(v.shape)}"
            )
        if q.dtype not in _DTYPES:
            raise TypeError(f"ring_attention supports {_DTYPES}, got {q.dtype}")
    except (TypeError, ValueError) as exc:
        return [0, -1, -1, -1, -1, -1, -1, -1], exc
    B, H, T_r, d_k = q.shape
    return [1, B, H, T_r, k.shape[2], d_k, v.shape[3], _DTYPES.index(q.dtype)], None


def ring_attention(
    q: Tensor, k: Tensor, v: Tensor, *, causal: bool = False, group: Any = None
) -> Tensor:
    """Rank r's rows ``(B, H, T_r, d_v)`` of attention over a sequence chunked across the ranks.

    Called by every rank at once, with its chunk's ``q (B, H, T_r, d_k)``, ``k`` and ``v``. In
    W - 1 steps each rank passes its keys and values to rank r + 1 and folds what it holds into
    an online softmax, as :func:`attention_book.efficient.blockwise_attention` does. With
    ``causal`` (equal chunks), later blocks are skipped. Bad inputs raise on every rank."""
    if not isinstance(causal, bool):
        raise TypeError(f"causal must be a bool, got {type(causal).__name__}")
    rank, W = dist.get_rank(group), dist.get_world_size(group)
    code, error = _shape_code(q, k, v)
    codes = [torch.zeros(8, dtype=torch.long) for _ in range(W)]
    dist.all_gather(codes, torch.tensor(code), group=group)  # every rank sees every shape
    codes = [c.tolist() for c in codes]
    if error is not None:
        raise error
    bad = [j for j, c in enumerate(codes) if c[0] == 0]
    if bad:
        raise ValueError(f"ring_attention: the inputs of rank(s) {bad} are invalid")
    fields = [tuple(c[1:3] + c[5:]) for c in codes]  # (B, H, d_k, d_v, dtype)
    if len(set(fields)) != 1:
        raise ValueError(
            f"ring_attention: ranks disagree on (B, H, d_k, d_v, dtype): {dict(enumerate(fields))}"
        )
    lengths = [(c[3], c[4]) for c in codes]  # (T_j, S_j) per rank
    if causal and len({n for pair in lengths for n in pair}) != 1:
        raise ValueError(
            f"causal ring_attention needs T_r = S_r, equal on every rank (so that chunk j is "
            f"positions j T_r .. (j + 1) T_r - 1); got (T_r, S_r) per rank {lengths}"
        )
    send_to = dist.get_global_rank(group, (rank + 1) % W) if group is not None else (rank + 1) % W
    recv_from = dist.get_global_rank(group, (rank - 1) % W) if group is not None else (rank - 1) % W

    B, H, T_r, d_k = q.shape
    scale = 1 / math.sqrt(d_k)
    running_max = q.new_full((B, H, T_r, 1), float("-inf"))  # (B, H, T_r, 1)
    running_sum = q.new_zeros((B, H, T_r, 1))  # (B, H, T_r, 1)
    acc = q.new_zeros((B, H, T_r, v.shape[-1]))  # (B, H, T_r, d_v)
    for step in range(W):
        source = (rank - step) % W  # whose chunk of keys and values this rank holds now
        requests = []
        if step < W - 1:  # pass the held block on while computing with it
            S_next = lengths[(source - 1) % W][1]
            k_next = k.new_empty((B, H, S_next, k.shape[-1]))  # (B, H, S_j, d_k)
            v_next = v.new_empty((B, H, S_next, v.shape[-1]))  # (B, H, S_j, d_v)
            requests = [
                dist.isend(k.contiguous(), send_to, group=group),
                dist.isend(v.contiguous(), send_to, group=group),
                dist.irecv(k_next, recv_from, group=group),
                dist.irecv(v_next, recv_from, group=group),
            ]
        if not (causal and source > rank):  # a causal rank skips blocks from its future
            scores = q @ (k.transpose(-2, -1) * scale)  # (B, H, T_r, d_k) @ (B, H, d_k, S_j)
            if causal and source == rank:  # the diagonal block: the causal triangle
                scores = scores.masked_fill(
                    ~attention.causal_mask(T_r, device=q.device), float("-inf")
                )
            new_max = torch.maximum(running_max, scores.amax(dim=-1, keepdim=True))
            correction = torch.exp(running_max - new_max)  # rescales what was summed so far
            p = torch.exp(scores - new_max)  # (B, H, T_r, S_j)
            running_sum = running_sum * correction + p.sum(dim=-1, keepdim=True)
            acc = acc * correction + p @ v  # (B, H, T_r, S_j) @ (B, H, S_j, d_v)
            running_max = new_max
            del scores, p
        for request in requests:
            request.wait()
        if requests:
            k, v = k_next, v_next
    out = acc / running_sum  # every query has seen at least one key: the sum is positive
    if not torch.isfinite(out).all():
        raise ValueError(
            f"ring_attention output on rank {rank} is not finite: q, k or v hold NaN or inf, "
            f"or the scores overflow {q.dtype}"
        )
    return out


# --------------------------------------------------------------------------------------------
# Per-rank functions that the chapter runs with launch
# --------------------------------------------------------------------------------------------


def collectives_worker(rank: int, world_size: int) -> dict[str, list]:
    """Three collectives on small tensors; returns what this rank then holds.

    all-reduce sums a tensor over the ranks, all-gather gives every rank
    every rank's tensor, and send/recv moves one tensor from rank 0 to rank 1.
    """
    if world_size < 2:
        raise ValueError(f"send/recv needs 2 ranks, not world_size={world_size}")
    x = torch.tensor([1.0, 2.0]) * (rank + 1)  # rank r holds (r + 1) * [1, 2]
    summed = x.clone()
    dist.all_reduce(summed)  # in place: the sum over ranks
    gathered = [torch.zeros(2) for _ in range(world_size)]
    dist.all_gather(gathered, x)  # gathered[j] = rank j's x
    received = torch.zeros(2)
    if rank == 0:
        dist.send(torch.tensor([7.0, 8.0]), dst=1)
    elif rank == 1:
        dist.recv(received, src=0)
    return {
        "mine": x.tolist(),
        "all_reduce": summed.tolist(),
        "all_gather": [g.tolist() for g in gathered],
        "recv": received.tolist(),
    }


def _train_gpt(model: nn.Module, inputs: Tensor, labels: Tensor, steps: int, lr: float) -> None:
    """Plain SGD on one batch; Adam would divide near-zero gradients (W_K's bias) by their own size,
    so their signs, decided by the last bits, would change the steps."""
    loss_fn = lambda m, step: gpt.lm_loss(m, inputs, labels)  # the same batch every step
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    train.fit(model, loss_fn, steps, optimizer=optimizer, progress=False)


def train_gpt(
    config: gpt.GPTConfig, inputs: Tensor, labels: Tensor, steps: int, lr: float, seed: int = 0
) -> dict[str, Tensor]:
    """One process: train a fresh GPT (seeded) on ``(inputs, labels)``; return its parameters."""
    torch.manual_seed(seed)
    model = gpt.GPT(config)
    _train_gpt(model, inputs, labels, steps, lr)
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def _counting_allreduce(sent, bucket):  # DDP refuses string annotations here
    """A DDP communication hook: count the bucket's bytes, then average it over the ranks."""
    buffer = bucket.buffer()
    sent.append(buffer.numel() * buffer.element_size())
    buffer.div_(dist.get_world_size())
    return dist.all_reduce(buffer, async_op=True).get_future().then(lambda f: f.value()[0])


def ddp_worker(
    rank: int,
    world_size: int,
    config: gpt.GPTConfig,
    inputs: Tensor,
    labels: Tensor,
    steps: int,
    lr: float,
    seed: int = 0,
) -> tuple[dict[str, Tensor], int]:
    """Train the GPT of :func:`train_gpt` with DDP on this rank's rows of the batch; return its
    parameters and the gradient bytes it all-reduced per step."""
    torch.manual_seed(seed)
    model = gpt.GPT(config)
    ddp = nn.parallel.DistributedDataParallel(model)
    sent: list[int] = []
    ddp.register_comm_hook(sent, _counting_allreduce)
    share = inputs.shape[0] // world_size
    rows = slice(rank * share, (rank + 1) * share)
    _train_gpt(ddp, inputs[rows], labels[rows], steps, lr)
    params = {name: p.detach().clone() for name, p in model.named_parameters()}
    return params, sum(sent) // steps


def heads_worker(
    rank: int, world_size: int, mha: nn.Module, x: Tensor, mask: Tensor | None = None
) -> tuple[Tensor, int]:
    """``(output (B, T, D), bytes)``: this rank's heads of ``mha`` on ``x``, all-reduced."""
    shard = shard_heads(mha, rank, world_size)
    with torch.no_grad():
        out = shard(x, x, x, mask)  # (B, T, D), this rank's part of the sum
    dist.all_reduce(out)  # the sum over ranks
    return out, out.numel() * out.element_size()


def ring_worker(
    rank: int,
    world_size: int,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    causal: bool = False,
    memory: bool = False,
) -> tuple[Tensor, int, int | None]:
    """``(output, bytes sent, peak memory or None)``: this rank's chunk through the ring."""
    q, k, v = (t.chunk(world_size, dim=-2)[rank].contiguous() for t in (q, k, v))  # (B, H, T/W, d)
    outputs = []
    run = lambda: outputs.append(ring_attention(q, k, v, causal=causal))
    with counting_sends() as sent:
        peak = measure.peak_memory(run) if memory else run()
    return outputs[0], sum(sent), peak
