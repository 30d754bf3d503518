"""``megacpt generate``: greedy continuations of JSONL prompts by a Hugging Face model (``megacpt.evaluate``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from megacpt.atomic import check_output, write_atomic
from megacpt.errors import UserError, exits_on_user_error
from megacpt.evaluate.generate import greedy_continuations, prompt_of
from megacpt.options import COUNT, NON_NEGATIVE, flag, json_key_flag, overwrite_flag, parse
from megacpt.tokenizer.corpus import iter_texts

GENERATE_DOC = """Continue prompts greedily with a Hugging Face causal LM (an export, or a base model).

Example (what the adapted model writes after the first words of a few held-out documents):

    megacpt generate --model runs/quickstart/final_hf --prompts heldout.jsonl --limit 3 \\
        --prompt-chars 40 --output continuations.jsonl

Each output line is {"prompt", "continuation", "new_tokens"}; without --output the lines are printed.
"""


@dataclass(frozen=True, kw_only=True)
class GenerateOptions:
    """``megacpt generate``'s options."""

    model: Path
    """Hugging Face model directory"""
    prompts: Path
    """JSONL file, one prompt (or document) a line"""
    json_key: str = json_key_flag("text")
    output: Path | None = flag(None, default_text="print")
    """JSONL file to write"""
    max_new_tokens: int = flag(32, type=COUNT)
    """tokens to generate per prompt"""
    prompt_chars: int = flag(0, type=NON_NEGATIVE)
    """cut each text to its first N characters, back to a space (0: the whole text)"""
    limit: int = flag(0, type=NON_NEGATIVE)
    """only the first N prompts (0: all)"""
    overwrite: bool = overwrite_flag()


@exits_on_user_error
def generate_main(argv: list[str] | None = None) -> None:
    args = parse(GenerateOptions, argv, GENERATE_DOC.split("\n")[0], module_form="megacpt generate")
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
