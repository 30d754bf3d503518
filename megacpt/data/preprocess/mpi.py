"""Preprocessing under ``mpirun`` (mpi4py): each rank encodes every ``size``-th shard and sends its
stream to rank 0, whose sink writes every shard in plan order into the one token file.

Only rank 0 writes, so the other ranks need to read the inputs but share no output file system
with it, and the output is the single-process run's byte for byte. A rank's send completes when
rank 0 takes it, which holds fast ranks back to the writer's pace. Every wait polls with a short
sleep: Open MPI's blocking calls spin a core while they wait, one the encoders need. The exchange
always ends the same way, so that no message is left unmatched: each rank ends its stream with
``end`` (after its last shard, its own failure, or rank 0's word to stop), and rank 0 sends every
rank ``final`` and reads every stream to its ``end``, then all meet in ``together``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar, cast

from megacpt.data.preprocess.encode import Item
from megacpt.data.preprocess.plan import Task
from megacpt.data.preprocess.sink import Sink
from megacpt.errors import UserError
from megacpt.fingerprint import disagreement, host

T = TypeVar("T")

DATA, FINAL = 71, 72
POLL_S = 0.002


def launched_rank() -> int:
    """This process's MPI rank as set by the launcher (0 when not launched by mpirun)."""
    return int(next((os.environ[v] for v in ("OMPI_COMM_WORLD_RANK", "PMI_RANK") if v in os.environ), "0"))


def world() -> Any:
    """MPI.COMM_WORLD when launched by mpirun with several ranks, else None."""
    size = next((os.environ[v] for v in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE") if v in os.environ), "1")
    if int(size) <= 1:
        return None
    try:
        from mpi4py import MPI
    except ImportError as err:
        raise UserError(
            f"launched as {size} MPI ranks but mpi4py is missing: pip install 'megacpt[mpi]'"
        ) from err
    return MPI.COMM_WORLD


def _settle(comm: Any, error: BaseException | None) -> None:
    """Meet every rank; raise on all of them if any one failed (its own error on the failed rank)."""
    barrier = comm.Ibarrier()
    while not barrier.Test():
        time.sleep(0.05)
    errors = comm.allgather(None if error is None else (type(error).__name__, str(error)))
    for rank, failure in enumerate(errors):
        if failure is not None:
            if error is not None:
                raise error
            kind, message = failure
            raise (UserError if kind == "UserError" else RuntimeError)(f"rank {rank}: {message}")


def _attempt(comm: Any, action: Callable[[], T], runs_here: bool) -> tuple[T | None, BaseException | None]:
    if not runs_here:
        return None, None
    try:
        return action(), None
    except BaseException as err:
        if comm is None:
            raise
        return None, err


def together(comm: Any, action: Callable[[], T], root_only: bool) -> T:
    """Run ``action`` on rank 0 (``root_only``) or every rank, so that a failure on any rank
    raises on all of them instead of leaving the others waiting; rank 0's result is shared."""
    result, error = _attempt(comm, action, comm is None or not root_only or comm.Get_rank() == 0)
    if comm is None:
        return cast(T, result)
    _settle(comm, error)
    return cast(T, comm.bcast(result, root=0))


def each(comm: Any, action: Callable[[], T]) -> T:
    """Run ``action`` on every rank and return this rank's own result; a failure on any rank (an
    input it cannot read, a tokenizer it cannot load) raises on all of them."""
    result, error = _attempt(comm, action, True)
    if comm is not None:
        _settle(comm, error)
    return cast(T, result)


def agree(comm: Any, description: dict[str, str]) -> None:
    """Raise the same ``UserError`` on every rank when any rank's ``description`` of its inputs and
    settings differs from rank 0's (a node that sees other files)."""
    if comm is None:
        return
    problem = disagreement(comm.allgather((host(), description)))
    if problem:
        raise UserError(f"the MPI ranks must read the same inputs with the same settings: {problem}")


def _send(comm: Any, message: tuple[Any, ...]) -> None:
    request = comm.isend(message, dest=0, tag=DATA)
    while not request.Test():
        time.sleep(POLL_S)


def send_stream(comm: Any, stream: Iterator[Item]) -> None:
    """Rank > 0: send ``stream``'s items to rank 0, stopping early if it says ``final`` first."""
    try:
        for item in stream:
            if comm.iprobe(source=0, tag=FINAL):
                break  # rank 0 failed; its error is reported by ``together``
            _send(comm, ("item", item))
    except Exception as err:
        _send(comm, ("error", type(err).__name__, str(err)))
        raise
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()
        _send(comm, ("end",))
        while not comm.iprobe(source=0, tag=FINAL):
            time.sleep(POLL_S)
        comm.recv(source=0, tag=FINAL)


class _Remote:
    """Rank 0's view of another rank's stream."""

    def __init__(self, comm: Any, rank: int) -> None:
        self.comm, self.rank, self.ended = comm, rank, False

    def _next(self) -> tuple[Any, ...]:
        while not self.comm.iprobe(source=self.rank, tag=DATA):
            time.sleep(POLL_S)
        message = self.comm.recv(source=self.rank, tag=DATA)
        self.ended = message[0] == "end"
        return message

    def __iter__(self) -> Iterator[Item]:
        while not self.ended:
            message = self._next()
            if message[0] == "item":
                yield message[1]
            elif message[0] == "error":
                _, kind, text = message
                raise (UserError if kind == "UserError" else RuntimeError)(f"rank {self.rank}: {text}")
        raise RuntimeError(f"rank {self.rank} ended its stream early")

    def drain(self) -> None:
        while not self.ended:
            self._next()


def root_write(comm: Any, sink: Sink, tasks: list[Task], local: Iterator[Item]) -> None:
    """Rank 0: write every task from its rank's stream (``local`` for rank 0's own)."""
    size = comm.Get_size()
    remotes = {rank: _Remote(comm, rank) for rank in range(1, size)}
    streams = {rank: iter(remote) for rank, remote in remotes.items()}
    try:
        sink.write(tasks, lambda k: local if k % size == 0 else streams[k % size])
    finally:
        close = getattr(local, "close", None)
        if close is not None:
            close()
        for rank in remotes:
            comm.isend(("final",), dest=rank, tag=FINAL).Wait()  # small: buffered at once
        for remote in remotes.values():
            remote.drain()
