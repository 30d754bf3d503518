"""Command-line flags that several tools share: one name, one meaning, one help text.

- ``ArgumentParser``: argparse's, with a bad command line reported as one ``error:`` line, and
  ``program``: the name its usage shows (``megacpt VERB``);
- ``--json-keys``: the JSON field(s) holding document text (Megatron-LM's name; tools that read one
  field take exactly one);
- ``--workers``: how many cores a tool may use (processes or threads, as its help says);
- numbers: ``ranged`` types (``COUNT``, ``NON_NEGATIVE``, ``POSITIVE``, ``SHARE``) refuse a value out
  of range at parse time, with argparse's one ``error:`` line;
- ``--overwrite``: replace an existing output. Without it an existing output is an error. With
  it the new output is still written aside and swapped in only when complete, so a failed run
  leaves the old output as it was; and it never replaces an input, a folder holding an input, or a
  folder that is not megacpt's own earlier output of the same kind (``megacpt.atomic.check_output``).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from typing import NoReturn

PROGRAM = "megacpt"  # the installed command; its verbs' usage reads ``megacpt VERB``


def program(module_form: str) -> str:
    """The name a verb's usage shows: ``megacpt VERB`` when run through the ``megacpt`` command, else
    its module form (``python -m megacpt.train``)."""
    return sys.argv[0] if sys.argv[0].startswith(f"{PROGRAM} ") else module_form


class ArgumentParser(argparse.ArgumentParser):
    """``argparse``'s parser, but a bad command line is one ``error:`` line (status 2), like every
    other refusal of megacpt's tools, not a usage block; ``--help`` shows the usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


Number = int | float


def ranged(kind: type[int] | type[float], low: Number | None = None, high: Number | None = None, *,
           above: bool = False) -> Callable[[str], Number]:  # fmt: skip
    """An argparse ``type`` for a ``kind`` number in ``[low, high]`` (``low`` itself excluded when
    ``above``), so that an option out of range is refused when parsed, before any work."""
    bounds = []
    if low is not None:
        bounds.append(f"{'above' if above else 'at least'} {low}")
    if high is not None:
        bounds.append(f"at most {high}")
    wanted = ("an integer" if kind is int else "a number") + (" " + " and ".join(bounds) if bounds else "")

    def parse(text: str) -> Number:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}") from None
        too_low = low is not None and (value <= low if above else value < low)
        if not math.isfinite(value) or too_low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text}")
        return value

    parse.__name__ = wanted  # argparse names the type by it
    return parse


COUNT = ranged(int, 1)  # how many of something, at least one
NON_NEGATIVE = ranged(int, 0)  # a count or index where 0 means none / the default
POSITIVE = ranged(float, 0, above=True)  # a size or duration
SHARE = ranged(float, 0, 1)  # a fraction or probability

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
        *names, dest="workers", type=COUNT, default=default, help=f"{what} (default: {default})"
    )


def add_overwrite(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
