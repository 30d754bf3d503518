"""Which part of the input each task reads: contiguous blocks, so that the tasks' outputs, one after
the other, are the input's order.

The inputs are seen as one stream of bytes cut into ``tasks`` equal blocks. A plain file is split
at the block boundaries (a line belongs to the block where it starts); a compressed file cannot be
entered in the middle, so it goes whole to the block where it starts. A task may get no bytes at
all (more tasks than plain bytes); it then writes empty outputs.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass

from megacpt.clean.documents import OFFSET_BITS, position, read_lines
from megacpt.errors import UserError
from megacpt.inputs import compression_of, open_binary


@dataclass(frozen=True)
class Unit:
    """The lines of input ``index`` that start in bytes [start, end) (``end`` None: to its end)."""

    index: int
    start: int
    end: int | None


def plan_tasks(paths: list[str], tasks: int) -> list[list[Unit]]:
    """Each task's units, in input order."""
    sizes = [os.path.getsize(p) for p in paths]
    block = max(math.ceil(sum(sizes) / tasks), 1)
    plan: list[list[Unit]] = [[] for _ in range(tasks)]
    base = 0
    for index, (path, size) in enumerate(zip(paths, sizes, strict=True)):
        if compression_of(path):
            plan[min(base // block, tasks - 1)].append(Unit(index, 0, None))
        else:
            start = 0
            while start < size or (start == 0 and size == 0):
                task = min((base + start) // block, tasks - 1)
                stop = size if task == tasks - 1 else min(size, (task + 1) * block - base)
                plan[task].append(Unit(index, start, None if stop >= size else stop))
                if stop <= start:
                    break
                start = stop
        base += size
    return plan


def read_unit(path: str, unit: Unit, max_line_bytes: int) -> Iterator[tuple[int, bytes | None]]:
    """(position, line bytes or None for a line too long) for each line of ``unit``."""
    with open_binary(path) as stream:
        offset = unit.start
        if offset:
            stream.seek(offset - 1)
            if stream.read(1) != b"\n":  # mid-line: that line belongs to the unit before
                while piece := stream.readline(1 << 20):
                    offset += len(piece)
                    if piece.endswith(b"\n"):
                        break
        for start, raw in read_lines(stream, max_line_bytes, offset, unit.end):
            if start >> OFFSET_BITS:
                raise UserError(
                    f"{path} holds more than {1 << OFFSET_BITS} bytes: split it into smaller files"
                )
            yield position(unit.index, start), raw
