"""Command-line flags that several tools share: one name, one meaning, one help text.

- ``--json-keys``: the JSON field(s) holding document text (Megatron-LM's name; tools that read one
  field take exactly one);
- ``--workers``: how many cores a tool may use (processes or threads, as its help says);
- ``--overwrite``: replace an existing output. Without it an existing output is an error. With
  it the new output is still written aside and swapped in only when complete, so a failed run
  leaves the old output as it was.
"""

from __future__ import annotations

import argparse
import os

from megacpt.errors import UserError

OVERWRITE_HELP = "replace an existing output (written aside, swapped in only when complete)"


def add_json_key(parser: argparse.ArgumentParser, default: str, *, old_name: str | None = None) -> None:
    """``--json-keys KEY``: the one JSON field a tool reads (``old_name``: a hidden alias kept working)."""
    names = ["--json-keys", *([old_name] if old_name else [])]
    parser.add_argument(
        *names,
        dest="json_key",
        default=default,
        metavar="KEY",
        help=f"JSON field holding the text (default: {default})",
    )


def add_json_keys(parser: argparse.ArgumentParser, default: list[str]) -> None:
    """``--json-keys KEY [KEY ...]``: JSON fields (or Parquet columns), one dataset each."""
    parser.add_argument(
        "--json-keys",
        nargs="+",
        default=default,
        metavar="KEY",
        help=f"JSON fields / Parquet columns to read, one dataset each (default: {' '.join(default)})",
    )


def add_workers(
    parser: argparse.ArgumentParser, default: int, what: str, *, old_name: str | None = None
) -> None:
    """``--workers N``: the cores a tool may use; ``what`` says as what (processes, threads)."""
    names = ["--workers", *([old_name] if old_name else [])]
    parser.add_argument(
        *names, dest="workers", type=int, default=default, help=f"{what} (default: {default})"
    )


def add_overwrite(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)


def refuse_to_replace(source: str | os.PathLike, output: str | os.PathLike, overwrite: bool) -> None:
    """Before any work: an existing ``output`` needs ``overwrite``, and never may it be ``source``."""
    if os.path.exists(output) and os.path.realpath(output) == os.path.realpath(source):
        raise UserError(f"the output {output} is the input: write to a new path")
    if os.path.exists(output) and not overwrite:
        raise UserError(f"{output} already exists; pass --overwrite to replace it")
