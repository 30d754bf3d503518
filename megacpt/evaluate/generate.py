"""Greedy continuations of prompts by a Hugging Face causal LM: the quick look at what a model writes.

Bits per byte says how well a model predicts text; a few continuations say whether it writes the
language or repeats itself. ``transformers``' own ``generate`` decodes (greedy, no sampling, no
repetition penalty: what the model itself prefers, degenerations included), one prompt at a time so
no padding enters. Prompts are encoded without special tokens, as the training data is. torch is
imported on use, so ``megacpt generate --help`` stays quick.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from megacpt.errors import UserError


@dataclass(frozen=True)
class Continuation:
    prompt: str
    continuation: str
    new_tokens: int


def prompt_of(text: str, chars: int) -> str:
    """The first ``chars`` characters of ``text`` on one line, cut back to a space when there is one."""
    line = " ".join(text.split())
    if len(line) <= chars:
        return line
    cut = line.rfind(" ", 0, chars + 1)
    return line[: cut if cut > chars // 2 else chars]


def greedy_continuations(
    model_dir: str | os.PathLike, prompts: Sequence[str], max_new_tokens: int
) -> list[Continuation]:
    """Each prompt continued greedily by the model in ``model_dir`` for up to ``max_new_tokens``."""
    import torch

    from megacpt.evaluate.hf import load

    if max_new_tokens < 1:
        raise UserError(f"--max-new-tokens must be positive, got {max_new_tokens}")
    if not prompts:
        raise UserError("no prompts to continue")
    model, tokenizer = load(model_dir)
    out = []
    for prompt in prompts:
        ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
        if ids.shape[1] == 0:
            raise UserError(f"prompt {prompt!r} encodes to no tokens")
        with torch.no_grad():
            generated = model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0,
            )[0, ids.shape[1] :]
        text = tokenizer.decode(generated, skip_special_tokens=True)
        out.append(Continuation(prompt, text, int(generated.shape[0])))
    return out
