"""The ``megacpt`` command: every verb's ``--help`` names the verb and answers before any heavy import."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from megacpt.cli import VERBS, main

HEAVY = ("torch", "transformers", "megatron", "datatrove", "scipy")  # numpy (~0.1 s) may load

PROBE = """
import json, sys
from megacpt.cli import main
try:
    main([sys.argv[1], "--help"])
except SystemExit as exit:
    code = exit.code
print(json.dumps({"code": code, "heavy": sorted(m for m in %r if m in sys.modules)}))
"""


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_help_names_the_verb_and_imports_nothing_heavy(verb: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE % (HEAVY,), verb],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    usage, *_, last = done.stdout.splitlines()
    assert usage.startswith(f"usage: megacpt {verb} ")
    assert json.loads(last) == {"code": 0, "heavy": []}


def test_the_program_name_is_restored_after_a_verb(capsys: pytest.CaptureFixture[str]) -> None:
    before = sys.argv[0]
    with pytest.raises(SystemExit, match="^0$"):
        main(["mix", "--help"])
    assert sys.argv[0] == before
    assert capsys.readouterr().out.startswith("usage: megacpt mix ")


def test_an_unknown_verb_is_one_error_line_and_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cleen"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == "error: unknown verb 'cleen'"
