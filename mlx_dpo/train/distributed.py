"""Data-parallel training over `mx.distributed`, for processes started by `mlx.launch` (ring or MPI).

Every rank holds the whole model and walks the same global batch order (a pure function of the seed);
rank r takes pairs r, r + W, r + 2W, ... of each global batch of B pairs. Each rank's loss is its pairs'
sum divided by (global pairs / W), so averaging the gradients across ranks (mlx's `average_gradients`)
gives exactly the gradient of the global batch's mean loss, and the optimizer step is the same
everywhere. Rank 0 alone writes the run dir, metrics, checkpoints and the reference cache; the other
ranks receive what rank 0 read (a checkpoint, a cached reference) as a broadcast.

A dead peer surfaces as an error from the backend ("connection to a peer was lost"), which the
trainer reports. A peer that hangs without closing its sockets would block a collective forever, so
every wait on the other ranks runs under a watchdog that ends the process after `timeout` seconds.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten, tree_map, tree_unflatten

from .batching import make_batch
from ..errors import TrainingStopped, UsageError
from .events import announce_error

WATCHDOG_EXIT = 75  # distinct from the trainer's 1 / 130 / 143, so scripts can tell a timeout apart
LAUNCH_ENV = ("MLX_RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK")


@dataclass
class World:
    """This process's place among the ranks; size 1 (no communication at all) when not launched."""
    group: Any = None
    rank: int = 0
    size: int = 1
    timeout: float = 600.0
    _deadline: float | None = field(default=None, repr=False)
    _what: str = field(default="", repr=False)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    # ---------------------------------------------------------------- collectives
    def all_sum(self, tree):
        """Element-wise sum over ranks of an array or a tree of arrays."""
        if not self.distributed:
            return tree
        return tree_map(lambda a: mx.distributed.all_sum(a, group=self.group), tree)

    def broadcast(self, tree):
        """Rank 0's arrays on every rank: a sum in which the other ranks contribute zeros (exact)."""
        if not self.distributed:
            return tree
        # Sorted keys: the ranks' trees may hold the same arrays in a different insertion order (a
        # restored optimizer state), and collectives must be issued in the same order everywhere.
        flat = sorted(tree_flatten(tree), key=lambda kv: kv[0])
        return tree_unflatten([(k, self.all_sum(v if self.is_main else mx.zeros_like(v))) for k, v in flat])

    def gather_floats(self, values: list[float]) -> list[list[float]]:
        """Each rank's `values`, in rank order (per-rank memory and throughput for the metrics)."""
        if not self.distributed:
            return [list(values)]
        with self.waiting("gathering per-rank figures"):
            out = mx.distributed.all_gather(mx.array([values], dtype=mx.float32), group=self.group)
            mx.eval(out)
        return np.array(out).tolist()

    def any(self, flag: bool, what: str = "agreeing on a stop") -> bool:
        """True on every rank if it is true on one (a stop request that reached only one process)."""
        if not self.distributed:
            return flag
        with self.waiting(what):
            total = self.all_sum(mx.array(int(flag), dtype=mx.int32))
            mx.eval(total)
        return int(total.item()) > 0

    def broadcast_text(self, text: str, what: str = "receiving the run settings from rank 0") -> str:
        """Rank 0's string on every rank (the resolved config, so all ranks train the same run)."""
        if not self.distributed:
            return text
        data = np.frombuffer(text.encode(), dtype=np.uint8) if self.is_main else np.zeros(0, np.uint8)
        with self.waiting(what):
            n = self.all_sum(mx.array(len(data) if self.is_main else 0, dtype=mx.int32))
            buf = np.zeros(int(n.item()), np.uint8)
            buf[: len(data)] = data
            sent = self.broadcast(mx.array(buf))
            mx.eval(sent)
        return bytes(np.array(sent)).decode()

    def shard(self, items: list) -> list:
        return items[self.rank::self.size]

    # ---------------------------------------------------------------- hang protection
    @contextmanager
    def waiting(self, what: str):
        """Run a block that waits on other ranks; a watchdog ends the process if it takes too long."""
        if not self.distributed:
            yield
            return
        self._what, self._deadline = what, time.monotonic() + self.timeout
        try:
            yield
        except RuntimeError as e:
            if is_peer_lost(e):
                raise peer_lost(self.rank, f"while {what}", e) from None
            raise
        finally:
            self._deadline = None

    def start_watchdog(self) -> None:
        if self.distributed:
            threading.Thread(target=self._watch, name="mlx-dpo-watchdog", daemon=True).start()

    def _watch(self) -> None:
        # Touches no MLX state (arrays belong to the main thread): it only reads a deadline.
        while True:
            time.sleep(min(1.0, self.timeout / 4))
            deadline = self._deadline
            if deadline is not None and time.monotonic() > deadline:
                try:  # the launcher may be gone (closed pipe): exit whether or not this can be said
                    sys.stderr.write(f"error: rank {self.rank}: no answer from the other ranks for "
                                     f"{self.timeout:.0f}s while {self._what}; a process of this run has died "
                                     "or hung. Stopping (resume with --resume once all machines are up; "
                                     "--dist-timeout sets this limit).\n")
                    sys.stderr.flush()
                finally:
                    os._exit(WATCHDOG_EXIT)  # the main thread is blocked inside a collective: no clean exit


SINGLE = World()  # one process, no communication


def peer_lost(rank: int, when: str, e: BaseException) -> TrainingStopped:
    """The error for a lost peer, printed at once: mlx.launch SIGTERMs the surviving ranks as soon as one
    dies, which could otherwise end this process before the message is out."""
    err = TrainingStopped(f"rank {rank}: lost the connection to another rank {when} "
                          f"({str(e).strip().splitlines()[0]}); a process of this run died or its machine went "
                          "away. The run stopped; resume it with --resume.")
    try:
        print(f"error: {err}", file=sys.stderr, flush=True)
        announce_error(str(err), 1)
        err.reported = True
    except (OSError, ValueError):
        pass
    return err


def is_peer_lost(e: BaseException) -> bool:
    text = str(e).lower()
    return any(m in text for m in ("[ring]", "[mpi]", "connection to a peer", "peer was lost"))


def launched() -> bool:
    """Started by mlx.launch or mpirun (a single plain process never initialises a backend)."""
    return any(k in os.environ for k in LAUNCH_ENV)


def init_world(timeout: float = 600.0) -> World:
    if not launched() or not mx.distributed.is_available():
        return World(timeout=timeout)
    group = mx.distributed.init()
    world = World(group=group, rank=group.rank(), size=group.size(), timeout=timeout)
    world.start_watchdog()
    return world


def check_batch_split(batch_size: int, world: World) -> int:
    """Pairs per rank in each global batch of `batch_size` pairs."""
    if batch_size % world.size:
        raise UsageError(f"--batch-size {batch_size} cannot be split evenly over {world.size} processes; "
                         f"use a multiple of {world.size} (it is the global batch)")
    return batch_size // world.size


def local_batch(pairs, global_indices: list[int], world: World, local_size: int, pad_multiple: int,
                pad_id: int = 0, make_batch=make_batch):
    """This rank's share of one global batch, padded to `local_size` pairs (`make_batch` builds it)."""
    mine = world.shard(global_indices)
    if mine:
        return make_batch(pairs, mine, local_size, pad_multiple, pad_id)
    # A short last batch with fewer pairs than ranks: this rank still joins the collectives, with
    # a batch that carries no weight (pair_mask 0).
    batch = make_batch(pairs, global_indices[:1], local_size, pad_multiple, pad_id)
    batch.pair_mask[:] = 0.0
    batch.n_tokens = 0
    return batch


def local_rows(layout, pairs, global_indices: list[int], world: World, pad_multiple: int, pad_id: int = 0) -> list:
    """This rank's packed rows (`--tokens-per-batch`) of one global batch: its share of the pairs, packed.

    Ranks may end up with different numbers of rows. That is fine: a rank sums its rows' gradients
    locally and joins the ranks' average once, on the step's last micro-batch, like every rank."""
    mine = world.shard(global_indices)
    if mine:
        return layout.parts(pairs, mine, len(mine), pad_multiple, pad_id)
    # Fewer pairs than ranks in a short last batch: one row that carries no weight (pair_mask 0).
    row = layout.parts(pairs, global_indices[:1], 1, pad_multiple, pad_id)[0]
    row.pair_mask[:] = 0.0
    row.n_tokens = 0
    return [row]
