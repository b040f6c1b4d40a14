"""Data parallelism under `torchrun`: which process this is, the process group, and its collectives.

One PPO runs in N processes (`torchrun --nproc-per-node N duo-ai train ...`, or RANK, WORLD_SIZE,
MASTER_ADDR and MASTER_PORT set by hand for each process). Each process steps its own share of the
environments and seeds them with its own seed; gradients and the statistics that must be global
are reduced across processes with `torch.distributed` (NCCL between GPUs, gloo on CPUs); rank 0
alone writes files. With WORLD_SIZE unset or 1 nothing here starts and nothing is synchronised.

No hangs: the rendezvous and every collective wait at most `distributed_timeout_s`, and a process
that dies closes its sockets, so the others fail at once. Either way each process ends with one
`DistributedError` line naming its rank. The one longer wait is `wait_for_main`, while rank 0
evaluates alone: it lasts as long as rank 0 is alive (up to `MAIN_WAIT_S`).
"""

from __future__ import annotations

import atexit
import datetime
import hashlib
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch

from duo_ai.core import errors
from duo_ai.core.errors import ConfigError, DistributedError, DuoAIError

T = TypeVar("T")

# How long the other ranks wait while rank 0 alone evaluates or writes (a dead rank 0 ends it at once).
MAIN_WAIT_S = 24 * 3600


@dataclass(frozen=True)
class ProcessContext:
    """This process's place in a data-parallel job (rank 0 of 1 when not launched by torchrun)."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @classmethod
    def from_env(cls) -> ProcessContext:
        try:
            ctx = cls(
                rank=int(os.environ.get("RANK", 0)),
                local_rank=int(os.environ.get("LOCAL_RANK", 0)),
                world_size=int(os.environ.get("WORLD_SIZE", 1)),
            )
        except ValueError:
            raise ConfigError("RANK, LOCAL_RANK and WORLD_SIZE must be integers (torchrun sets them)") from None
        if ctx.world_size < 1 or not 0 <= ctx.rank < ctx.world_size or ctx.local_rank < 0:
            raise ConfigError(
                f"RANK={ctx.rank} WORLD_SIZE={ctx.world_size} LOCAL_RANK={ctx.local_rank}: the rank must be in "
                "[0, WORLD_SIZE); launch with torchrun, which sets them"
            )
        return ctx

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def seed(self, base_seed: int) -> int:
        """A distinct seed per process, so processes explore different levels and actions."""
        return base_seed + 1_000_003 * self.rank


# The job's groups once started: the default group (NCCL or gloo), a gloo group for host-side
# objects and numbers, and a gloo group with a long timeout for waiting on rank 0.
_GROUPS: dict[str, Any] = {}


def start(ctx: ProcessContext, device: torch.device, timeout_s: float) -> None:
    """Join the job's process group (NCCL for a CUDA device, else gloo); a no-op for one process.

    The group lasts as long as the process (left at exit, or by `stop`): runs one after the other
    in the same processes (`--seeds`) share it, since a torchrun job's rendezvous happens once.
    """
    if not ctx.distributed or torch.distributed.is_initialized():
        return
    missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(name)]
    if missing:
        raise ConfigError(
            f"WORLD_SIZE={ctx.world_size} asks for data-parallel training but {' and '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not set: launch with torchrun --nproc-per-node "
            f"{ctx.world_size} ..., set MASTER_ADDR and MASTER_PORT (rank 0's host, a free port) for every "
            "process, or unset WORLD_SIZE to train in one process"
        )
    port = os.environ["MASTER_PORT"]
    if not (port.isdigit() and 1 <= int(port) <= 65535):
        raise ConfigError(f"MASTER_PORT={port!r} is not a port number; set it to a free port in 1-65535, e.g. 29500")
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    timeout = datetime.timedelta(seconds=timeout_s)
    where = f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}"
    try:
        torch.distributed.init_process_group(backend, timeout=timeout, rank=ctx.rank, world_size=ctx.world_size)
        host = torch.distributed.new_group(backend="gloo", timeout=timeout) if backend != "gloo" else None
        wait = torch.distributed.new_group(backend="gloo", timeout=datetime.timedelta(seconds=MAIN_WAIT_S))
    except (RuntimeError, ValueError) as e:  # DistStoreError, DistNetworkError, gloo errors
        raise DistributedError(
            f"rank {ctx.rank} of {ctx.world_size}: the rendezvous at {where} did not complete within "
            f"distributed_timeout_s={timeout_s:g} ({_first_line(e)}); start all {ctx.world_size} processes "
            "(torchrun does), check MASTER_ADDR/MASTER_PORT and the network, or unset WORLD_SIZE"
        ) from None
    _GROUPS.update(ctx=ctx, host=host, wait=wait, timeout_s=timeout_s, backend=backend)
    atexit.register(stop)


def stop() -> None:
    """Leave the process group (after an error too: gloo then exits cleanly). Only at the end of the
    process's work: a torchrun job cannot join a group again."""
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    _GROUPS.clear()


def _first_line(error: BaseException) -> str:
    """The gist of a torch.distributed error: its first line, without gloo's source location."""
    line = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return re.sub(r"^\[[^\]]*\.(cc|cpp):\d+\]\s*", "", line)[:300]


def _collective(what: str, call: Callable[[], T]) -> T:
    """Run one collective; a peer that died or hung becomes a one-line `DistributedError`."""
    try:
        return call()
    except RuntimeError as e:
        ctx, timeout = _GROUPS.get("ctx", ProcessContext()), _GROUPS.get("timeout_s", 0)
        raise DistributedError(
            f"rank {ctx.rank} of {ctx.world_size}: {what} failed ({_first_line(e)}); another process died "
            f"or did not answer within distributed_timeout_s={timeout:g}: see the errors of the other ranks "
            "(torchrun prints each one's) and rank 0's train.log"
        ) from None


# -- device tensors (the default group) --------------------------------------------------------


def all_reduce_sum_(tensor: torch.Tensor, what: str = "a reduction") -> torch.Tensor:
    """Sum `tensor` over all processes, in place."""
    return _collective(what, lambda: torch.distributed.all_reduce(tensor) or tensor)


def average_gradients(parameters: Iterable[torch.nn.Parameter], world_size: int) -> None:
    """Replace each gradient with its mean over the processes: one all-reduce of one flat buffer."""
    grads = [p.grad for p in parameters if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads])
    all_reduce_sum_(flat, "the gradient all-reduce").div_(world_size)
    for grad, piece in zip(grads, flat.split([g.numel() for g in grads]), strict=True):
        grad.copy_(piece.view_as(grad))


def broadcast_from_main_(tensors: Iterable[torch.Tensor]) -> None:
    """Overwrite `tensors` with rank 0's (e.g. a model's initial weights), in place."""
    for tensor in tensors:
        _collective("the broadcast of rank 0's weights", lambda t=tensor: torch.distributed.broadcast(t, src=0))


# -- host numbers and objects (a gloo group) ---------------------------------------------------


def all_reduce_host(values: np.ndarray, what: str = "a reduction of statistics") -> np.ndarray:
    """The sum over all processes of a numpy array (as float64)."""
    tensor = torch.from_numpy(np.array(values, dtype=np.float64))
    _collective(what, lambda: torch.distributed.all_reduce(tensor, group=_GROUPS.get("host")))
    return tensor.numpy()


def gather_to_main(obj: Any, what: str = "gathering the processes' states") -> list[Any] | None:
    """Every process's `obj`, in rank order, on rank 0 (None elsewhere)."""
    ctx = _GROUPS["ctx"]
    out = [None] * ctx.world_size if ctx.is_main else None
    _collective(what, lambda: torch.distributed.gather_object(obj, out, dst=0, group=_GROUPS.get("host")))
    return out


def scatter_from_main(objs: list[Any] | None, what: str = "handing out rank 0's states") -> Any:
    """Rank r receives `objs[r]` of rank 0's list (others pass None)."""
    out = [None]
    _collective(what, lambda: torch.distributed.scatter_object_list(out, objs, src=0, group=_GROUPS.get("host")))
    return out[0]


def broadcast_object(obj: Any, what: str = "a broadcast from rank 0") -> Any:
    box = [obj]
    _collective(what, lambda: torch.distributed.broadcast_object_list(box, src=0, group=_GROUPS.get("host")))
    return box[0]


def wait_for_main() -> None:
    """Wait (as long as rank 0 lives, up to MAIN_WAIT_S) for rank 0 to finish work it does alone."""
    _collective("waiting for rank 0", lambda: torch.distributed.barrier(group=_GROUPS.get("wait")))


def on_main(ctx: ProcessContext, fn: Callable[[], T]) -> T | None:
    """Run `fn` on rank 0 only; if it fails there, every process raises the same one-line error.

    Rank 0 returns `fn()`, the others None. Without this a check that fails on rank 0 alone (a run
    folder that exists) would leave the others waiting for it at their next collective.
    """
    if not ctx.distributed:
        return fn()
    result, failure = None, None
    if ctx.is_main:
        try:
            result = fn()
        except DuoAIError as e:
            failure = (type(e).__name__, str(e))
        except BaseException as e:
            broadcast_object(("DistributedError", f"rank 0 failed: {type(e).__name__}: {_first_line(e)}"))
            raise
    failure = broadcast_object(failure)
    if failure is not None:
        if ctx.is_main:
            raise _error_of(*failure)
        raise _error_of(failure[0], f"(rank 0) {failure[1]}")
    return result


def _error_of(kind: str, message: str) -> DuoAIError:
    cls = getattr(errors, kind, DuoAIError)
    return cls(message) if isinstance(cls, type) and issubclass(cls, DuoAIError) else DuoAIError(message)


def check_same_config(ctx: ProcessContext, resolved: str, stage: str = "") -> None:
    """Refuse to train when the processes resolved different configs (a hash of each, all-gathered).

    `stage` says when, for the message (e.g. after building, when a coordination run has measured
    its base penalty into the config)."""
    if not ctx.distributed:
        return
    digest = hashlib.sha256(resolved.encode()).hexdigest()
    digests = [None] * ctx.world_size
    _collective(
        "comparing the processes' configs",
        lambda: torch.distributed.all_gather_object(digests, digest, group=_GROUPS.get("host")),
    )
    differ = [rank for rank, other in enumerate(digests) if other != digests[0]]
    if differ:
        ranks = ", ".join(map(str, differ))
        raise ConfigError(
            f"the processes resolved different configs{stage} (rank(s) {ranks} differ from rank 0): start every "
            "process with the same command, config files and overrides"
        )
