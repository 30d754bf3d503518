"""Every numeric option of every tool is range-checked when parsed: ``--shard-mb 0`` once made
282,802 files from a 142 KB input."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Iterator

import pytest

from megacpt.cli import VERBS, main

MODULES = {**{verb: (module, function) for verb, (module, function, _) in VERBS.items()},
           "lm_eval_tasks": ("megacpt.evaluate.lm_eval_tasks", "main"),
           "quickstart": ("megacpt.recipes.quickstart", "main")}  # fmt: skip


class _Parsed(Exception):
    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser


def _parser(name: str, monkeypatch: pytest.MonkeyPatch) -> argparse.ArgumentParser:
    def capture(self: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        raise _Parsed(self)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", capture)
    monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", capture)
    module, function = MODULES[name]
    with pytest.raises(_Parsed) as parsed:
        getattr(importlib.import_module(module), function)([])
    return parsed.value.parser


def _actions(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.Action]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from ((f"{name} {n}", a) for n, a in _actions(sub))
        elif action.option_strings:
            yield action.option_strings[0], action


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_numeric_option_has_a_range(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    unchecked = [
        option
        for option, action in _actions(_parser(name, monkeypatch))
        if action.type in (int, float)
        or (action.type is None and action.nargs != 0 and isinstance(action.default, (int, float))
            and not isinstance(action.default, bool))
    ]  # fmt: skip
    assert unchecked == []


@pytest.mark.parametrize(
    "argv, line",
    [
        (["preprocess", "--input", "x.jsonl", "--output-prefix", "o", "--tokenizer", "t", "--shard-mb", "0"],
         "argument --shard-mb: expected a number above 0, got 0"),
        (["preprocess", "--input", "x.jsonl", "--output-prefix", "o", "--tokenizer", "t", "--workers", "-1"],
         "argument --workers: expected an integer at least 1, got -1"),
        (["clean", "in", "out", "--near-dup-threshold", "1.5"],
         "argument --near-dup-threshold: expected a number at least 0 and at most 1, got 1.5"),
        (["expand", "--base", "b", "--corpus", "c", "--output", "o", "--max-new-tokens", "0"],
         "argument --max-new-tokens: expected an integer at least 1, got 0"),
        (["resize", "--input", "i", "--output", "o", "--base-tokenizer", "b", "--tokenizer", "t",
          "--distill-tokens", "0"], "argument --distill-tokens: expected an integer at least 1, got 0"),
        (["plan", "c.yaml", "--nodes", "nan"], "argument --nodes: expected an integer at least 1, got 'nan'"),
        (["generate", "--model", "m", "--prompts", "p", "--max-new-tokens", "0"],
         "argument --max-new-tokens: expected an integer at least 1, got 0"),
    ],
)  # fmt: skip
def test_an_out_of_range_value_is_one_error_line(
    argv: list[str], line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit, match="^2$"):
        main(argv)
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"error: {line} (see megacpt {argv[0]} --help)"
