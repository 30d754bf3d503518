"""How long ``--help`` takes with megacpt's dataclass-built command line, against tyro and
jsonargparse building it from the same options dataclass (``CleanOptions``).

    python bench/cli_startup.py [--repeats 7]      # tyro / jsonargparse: pip install them first

Each run is a fresh interpreter (as a user's shell gives); the median wall time of ``--repeats`` runs
is printed per library as a markdown table, with the modules each one imported; then the same for
every verb's ``megacpt VERB --help``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

PROBES = {
    "python alone (no tool)": "pass",
    "megacpt (argparse from the dataclass)": "from megacpt.clean.cli import main; main(['--help'])",
    "tyro": "import tyro; from megacpt.clean.cli import CleanOptions; tyro.cli(CleanOptions, args=['--help'])",
    "jsonargparse": "from jsonargparse import CLI; from megacpt.clean.cli import CleanOptions; "
    "CLI(CleanOptions, args=['--help'])",
}
COUNT = "import atexit, sys, json; atexit.register(lambda: print(json.dumps(len(sys.modules)), file=sys.stderr)); "


def timed(code: str) -> tuple[float, int] | None:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", COUNT + code], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        return None
    return seconds, json.loads(done.stderr.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    repeats = parser.parse_args().repeats
    print("| builder | median --help wall s | modules loaded |\n|---|---|---|")
    for name, code in PROBES.items():
        runs = [timed(code) for _ in range(repeats)]
        if any(r is None for r in runs):
            print(f"| {name} | not installed or failed | |")
            continue
        print(f"| {name} | {statistics.median(r[0] for r in runs):.3f} | {runs[0][1]} |")  # type: ignore[index]
    from megacpt.cli import VERBS

    print("\n| megacpt VERB --help | median wall s | modules loaded |\n|---|---|---|")
    for verb in VERBS:
        runs = [timed(f"from megacpt.cli import main; main([{verb!r}, '--help'])") for _ in range(repeats)]
        if any(r is None for r in runs):
            print(f"| {verb} | failed | |")
            continue
        print(f"| {verb} | {statistics.median(r[0] for r in runs):.3f} | {runs[0][1]} |")  # type: ignore[index]


if __name__ == "__main__":
    main()
