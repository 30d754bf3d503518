"""``megacpt generate``: greedy continuations of JSONL prompts by a Hugging Face model (``megacpt.evaluate``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from megacpt.atomic import check_output, write_atomic
from megacpt.errors import UserError, exits_on_user_error
from megacpt.evaluate.generate import greedy_continuations, prompt_of
from megacpt.options import COUNT, NON_NEGATIVE, ArgumentParser, add_json_key, add_overwrite
from megacpt.tokenizer.corpus import iter_texts

GENERATE_DOC = """Continue prompts greedily with a Hugging Face causal LM (an export, or a base model).

Example (what the adapted model writes after the first words of a few held-out documents):

    megacpt generate --model runs/quickstart/final_hf --prompts heldout.jsonl --limit 3 \\
        --prompt-chars 40 --output continuations.jsonl

Each output line is {"prompt", "continuation", "new_tokens"}; without --output the lines are printed.
"""


def _generate_args(argv: list[str] | None) -> argparse.Namespace:
    p = ArgumentParser(prog="megacpt generate", description=GENERATE_DOC.split("\n")[0])
    p.add_argument("--model", required=True, type=Path, help="Hugging Face model directory")
    p.add_argument("--prompts", required=True, type=Path, help="JSONL file, one prompt (or document) a line")
    add_json_key(p, "text")
    p.add_argument("--output", type=Path, default=None, help="JSONL file to write (default: print)")
    p.add_argument(
        "--max-new-tokens", type=COUNT, default=32, help="tokens to generate per prompt (default: 32)"
    )
    p.add_argument(
        "--prompt-chars",
        type=NON_NEGATIVE,
        default=0,
        help="cut each text to its first N characters, back to a space (default: 0, the whole text)",
    )
    p.add_argument("--limit", type=NON_NEGATIVE, default=0, help="only the first N prompts (default: 0, all)")
    add_overwrite(p)
    return p.parse_args(argv)


@exits_on_user_error
def generate_main(argv: list[str] | None = None) -> None:
    args = _generate_args(argv)
    if not (args.model / "config.json").is_file():
        raise UserError(f"{args.model} is not a Hugging Face model directory (no config.json)")
    if not args.prompts.is_file():
        raise UserError(f"prompts file {args.prompts} does not exist")
    if args.output is not None:
        check_output(args.output, [args.prompts, args.model], args.overwrite)

    texts = list(iter_texts([args.prompts], args.json_key))
    if not texts:
        raise UserError(f"{args.prompts} holds no non-empty {args.json_key!r} field")
    texts = texts[: args.limit or None]
    prompts = [prompt_of(t, args.prompt_chars) if args.prompt_chars else t for t in texts]
    lines = [
        json.dumps(
            {"prompt": c.prompt, "continuation": c.continuation, "new_tokens": c.new_tokens},
            ensure_ascii=False,
        )
        for c in greedy_continuations(args.model, prompts, args.max_new_tokens)
    ]
    if args.output is None:
        print("\n".join(lines))
    else:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(args.output, "\n".join(lines) + "\n")
        print(f"wrote {len(lines)} continuations to {args.output}")
