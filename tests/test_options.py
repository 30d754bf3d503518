"""Every tool's options are one typed dataclass: its command line is built from the fields (type,
default, docstring), parsing constructs the dataclass so that its checks run, and every verb's
``--help`` states what each option means and its default."""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

from megacpt.errors import UserError, exits_on_user_error
from megacpt.options import COUNT, flag, parse, parse_command
from tests.test_numeric_options import MODULES, _actions, _parser


@dataclass(frozen=True, kw_only=True)
class Example:
    """An example tool's options."""

    source: Path = flag(positional=True)
    """the file to read"""
    output: str
    """where to write"""
    size: int = flag(4, "--size", "--old-size", type=COUNT)
    """how many"""
    mode: Literal["fast", "exact"] = "exact"
    """how to work"""
    tags: tuple[str, ...] = flag((), repeat=True)
    """a tag (repeatable)"""
    names: tuple[str, ...] = ("a",)
    """one or more names"""
    limit: float | None = None
    """an optional limit"""
    check: bool = flag(True, "--no-check")
    """skip the check"""
    verbose: bool = False
    """say more"""

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 0:
            raise UserError("--limit must not be negative")


def test_fields_become_options_of_their_types() -> None:
    parsed = parse(Example, ["in.txt", "--output", "o", "--old-size", "7", "--mode", "fast", "--tags", "x",
                             "--tags", "y", "--names", "b", "c", "--limit", "0.5", "--no-check", "--verbose"],
                   "example")  # fmt: skip
    assert parsed == Example(source=Path("in.txt"), output="o", size=7, mode="fast", tags=("x", "y"),
                             names=("b", "c"), limit=0.5, check=False, verbose=True)  # fmt: skip


def test_defaults_are_the_fields_defaults() -> None:
    assert parse(Example, ["in.txt", "--output", "o"], "example") == Example(
        source=Path("in.txt"), output="o"
    )


@pytest.mark.parametrize(
    "argv, line",
    [
        (["in.txt"], "error: the following arguments are required: --output"),
        (["in.txt", "--output", "o", "--size", "0"],
         "error: argument --size/--old-size: expected an integer at least 1, got 0"),
        (["in.txt", "--output", "o", "--mode", "slow"],
         "error: argument --mode: invalid choice: 'slow' (choose from 'fast', 'exact')"),
        (["in.txt", "--output", "o", "--limit", "-1"], "error: --limit must not be negative"),
    ],
)  # fmt: skip
def test_bad_input_is_one_error_line(argv: list[str], line: str, capsys: pytest.CaptureFixture[str]) -> None:
    tool = exits_on_user_error(lambda: parse(Example, argv, "example"))
    with pytest.raises(SystemExit, match="^2$"):
        tool()
    (last,) = capsys.readouterr().err.strip().splitlines()
    assert re.sub(r" \(see \S+ --help\)$", "", last) == line


def test_help_is_the_field_docstring_with_its_default(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit, match="^0$"):
        parse(Example, ["--help"], "example")
    text = " ".join(capsys.readouterr().out.split())
    for expected in ("source the file to read", "--output OUTPUT where to write", "--size SIZE, --old-size SIZE how many (default: 4)",
                     "how to work (default: exact)", "--tags TAGS a tag (repeatable)", "one or more names (default: a)",
                     "--limit LIMIT an optional limit -", "--no-check skip the check", "--verbose say more"):  # fmt: skip
        assert expected in text


def test_an_option_on_by_default_needs_a_no_name() -> None:
    @dataclass(frozen=True, kw_only=True)
    class Bad:
        check: bool = True
        """check"""

    with pytest.raises(TypeError, match="^check: an option that is on by default needs a --no-... name$"):
        parse(Bad, [], "bad")


def test_a_command_picks_its_dataclass() -> None:
    @dataclass(frozen=True, kw_only=True)
    class Up:
        steps: int = flag(1, type=COUNT)
        """steps up"""

    @dataclass(frozen=True, kw_only=True)
    class Down:
        steps: int = flag(2, type=COUNT)
        """steps down"""

    commands = {"up": (Up, "go up"), "down": (Down, "go down")}
    assert parse_command(commands, ["down", "--steps", "3"], "moves") == Down(steps=3)
    assert parse_command(commands, ["up"], "moves") == Up()


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_option_of_every_tool_says_what_it_means_and_its_default(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    silent, no_default = [], []
    for option, action in _actions(_parser(name, monkeypatch)):
        if option == "-h" or action.help == argparse.SUPPRESS:
            continue
        if not action.help:
            silent.append(option)
        stated = action.nargs != 0 and action.default not in (None, [], ()) and not action.required
        if stated and "default" not in action.help:
            no_default.append(option)
    assert (silent, no_default) == ([], [])
