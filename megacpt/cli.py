"""The ``megacpt`` command: one verb per pipeline stage, each the command-line face of its package.

    megacpt clean | perplexity-model | expand | preprocess | mix | convert | resize | plan | train | generate
            | lm-eval-tasks | quickstart  [ARGS...]
    python -m megacpt VERB [ARGS...]            # the same, without the installed script

``megacpt VERB --help`` shows the verb's options. The scripts in ``tools/`` and ``python -m
megacpt.train`` run the same code under their documented names.
"""

from __future__ import annotations

import importlib
import sys

from megacpt.options import PROGRAM

# verb -> (module, function, what it does)
VERBS: dict[str, tuple[str, str, str]] = {
    "clean": ("megacpt.clean.cli", "main", "normalise, filter and deduplicate a JSONL corpus"),
    "perplexity-model": (
        "megacpt.clean.cli",
        "perplexity_model_main",
        "a reference model of one language, for clean --perplexity-model",
    ),
    "expand": ("megacpt.tokenizer.cli", "main", "add target-language tokens to a base tokenizer"),
    "preprocess": ("megacpt.data.cli", "preprocess_main", "tokenise text into Megatron .bin/.idx datasets"),
    "mix": ("megacpt.data.cli", "mix_main", "a data mixture's share of a token budget per dataset"),
    "convert": ("megacpt.convert.cli", "convert_main", "convert checkpoints: GGUF, Hugging Face, Megatron"),
    "resize": ("megacpt.convert.cli", "resize_main", "grow and initialise embedding rows for a tokenizer"),
    "plan": ("megacpt.plan.cli", "main", "validate a layout, estimate memory and FLOPs, rank layouts"),
    "train": ("megacpt.train", "main", "train (continual pretraining in stages) from a YAML config"),
    "generate": (
        "megacpt.evaluate.cli",
        "generate_main",
        "greedy continuations of prompts by a Hugging Face model",
    ),
    "lm-eval-tasks": (
        "megacpt.evaluate.lm_eval_tasks",
        "main",
        "lm-evaluation-harness tasks: bits per byte of held-out JSONL",
    ),
    "quickstart": (
        "megacpt.recipes.quickstart",
        "main",
        "the whole pipeline on the bundled text, with a report",
    ),
}


def usage() -> str:
    width = max(map(len, VERBS))
    lines = [f"  {verb:<{width}}  {what}" for verb, (_, _, what) in VERBS.items()]
    return "usage: megacpt VERB [ARGS...]\n\nverbs:\n" + "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    if argv[0] not in VERBS:
        print(f"{usage()}\n\nerror: unknown verb {argv[0]!r}", file=sys.stderr)
        return 2
    module, function, _ = VERBS[argv[0]]
    program, sys.argv[0] = sys.argv[0], f"{PROGRAM} {argv[0]}"  # argparse's prog: usage names the verb
    try:
        result = getattr(importlib.import_module(module), function)(argv[1:])
    finally:
        sys.argv[0] = program
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
