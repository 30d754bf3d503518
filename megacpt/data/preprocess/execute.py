"""Who encodes which shard, in one process: here in order, or in a pool of worker processes.

gigatoken encodes on ``workers`` threads of this process, so with it (or with one worker) the
shards are encoded here, in order. The other tokenizers hold the GIL: ``workers`` spawned processes
then take every ``workers``-th shard each, in order, and their streams are read back in plan order.
Either way a process's shards come out as one ordered stream of items (``encode.Item``), encoded on
a thread (``on_thread``) while the sink writes the previous batch. A worker encodes a few batches
ahead at most, so a slow shard holds the others back instead of filling memory. Each worker writes
to a pipe whose only write end it holds, so a worker that dies (killed, out of memory), even halfway
through sending a batch, ends its pipe and fails the run with its exit code instead of hanging it.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import threading
from collections.abc import Generator, Iterator
from multiprocessing.connection import Connection
from typing import Any, NoReturn, TypeVar

from megacpt.data.config import PreprocessConfig
from megacpt.data.preprocess.encode import Item, encoded_stream
from megacpt.data.preprocess.plan import Task
from megacpt.errors import UserError
from megacpt.processes import die_with_parent
from megacpt.tokenizer.encoders import TextTokenizer, load_tokenizer

T = TypeVar("T")
QUEUED_BATCHES = 4  # per pool worker


def load(cfg: PreprocessConfig, backend: str, sample: list[str] | None = None) -> TextTokenizer:
    """The tokenizer; ``backend`` ``auto`` checks gigatoken against the reference on ``sample``."""
    return load_tokenizer(
        cfg.tokenizer,
        cfg.tokenizer_kind,
        backend,
        sample or [],
        merge_file=cfg.merge_file,
        tiktoken_encoding=cfg.tiktoken_encoding,
    )


def threaded(tok: TextTokenizer) -> bool:
    """Whether ``tok`` encodes on threads (gigatoken), so that one process uses every worker."""
    return tok.backend == "gigatoken"


def local_stream(cfg: PreprocessConfig, tasks: list[Task], tok: TextTokenizer, flat: bool) -> Iterator[Item]:
    """The items of ``tasks``, in order, encoded by this process or its pool (``flat``: ids as
    arrays, to be sent to another process)."""
    if cfg.workers == 1 or len(tasks) <= 1 or threaded(tok):
        return encoded_stream(cfg, tasks, tok, flat)
    return _pool_stream(cfg, tasks, "gigatoken" if threaded(tok) else "reference")


def _pool_stream(cfg: PreprocessConfig, tasks: list[Task], backend: str) -> Iterator[Item]:
    ctx = mp.get_context("spawn")
    count = min(cfg.workers, len(tasks))
    pipes = [ctx.Pipe(duplex=False) for _ in range(count)]
    workers = [
        ctx.Process(
            target=_pool_worker,
            args=(cfg, backend, tasks[w::count], pipes[w][1], os.getpid()),
            name=f"megacpt-preprocess-{w}",
            daemon=True,
        )
        for w in range(count)
    ]
    for worker, (_, write_end) in zip(workers, pipes):
        worker.start()
        write_end.close()  # the worker holds the only write end: its death ends the pipe
    try:
        for k, (index, _) in enumerate(tasks):
            while True:
                got, batch = _receive(pipes[k % count][0], workers[k % count])
                if got != index:
                    raise RuntimeError(f"worker {k % count} sent shard {got} where shard {index} was due")
                yield got, batch
                if batch is None:
                    break
    finally:
        for worker in workers:
            worker.terminate()
        for worker, (read_end, _) in zip(workers, pipes):
            worker.join()
            read_end.close()


def _receive(source: Connection, worker: Any) -> Item:
    while not source.poll(0.2):
        if not worker.is_alive():
            _worker_died(worker)
    try:
        message = source.recv()
    except (EOFError, OSError):  # the worker died before or while sending this message
        _worker_died(worker)
    if message[0] == "error":
        _, kind, text = message
        raise (UserError if kind == "UserError" else RuntimeError)(text)
    return message[1]


def _worker_died(worker: Any) -> NoReturn:
    worker.join()
    code = worker.exitcode
    how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
    raise UserError(f"preprocessing worker {worker.name} {how}; rerun the same command to resume") from None


def _pool_worker(
    cfg: PreprocessConfig, backend: str, tasks: list[Task], out: Connection, parent: int
) -> None:
    die_with_parent(parent)  # a killed run's workers must not keep running
    try:
        tok = load(cfg, backend)
        for item in on_thread(encoded_stream(cfg, tasks, tok, flat=True), ahead=QUEUED_BATCHES):
            out.send(("item", item))
    except Exception as err:
        out.send(("error", type(err).__name__, str(err)))
    finally:
        out.close()


def on_thread(stream: Iterator[T], ahead: int = 2) -> Generator[T, None, None]:
    """``stream``'s items, made on a thread up to ``ahead`` in advance; its exceptions are raised
    here, and closing this iterator stops and closes ``stream``."""
    items: queue.Queue[tuple[str, Any]] = queue.Queue(ahead)
    stop = threading.Event()

    def put(message: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                items.put(message, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in stream:
                if not put(("item", item)):
                    return
            put(("end", None))
        except BaseException as err:
            put(("error", err))
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="megacpt-encode", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = items.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        thread.join()
