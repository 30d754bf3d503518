"""Bits per byte of a Hugging Face causal LM on JSONL documents, with its own tokenizer.

The reference for every bits-per-byte figure outside training: the base model before adaptation,
the benchmarks' resized models, and the agreement tests with the trainer and lm-evaluation-harness.
Plain ``transformers`` forward passes over the windows of ``megacpt.evaluate.windows``, batched by
length with right padding; documents are encoded without special tokens.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch

from megacpt.evaluate.windows import Score, document_windows


def load(model_dir: str | os.PathLike) -> tuple[Any, Any]:
    """(model in eval mode, fp32; tokenizer) from a Hugging Face directory."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    return model, tokenizer


@torch.no_grad()
def score_documents(
    model: Any, tokenizer: Any, texts: Sequence[str], *, prefix: int, seq_length: int, batch_size: int = 8
) -> Score:
    """Summed NLL of ``texts`` (each its own document) under ``model``; see ``windows``."""
    ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    windows = sorted(
        (w for doc in ids for w in document_windows(doc, prefix, seq_length)), key=lambda w: -len(w.targets)
    )
    score = Score(bytes=sum(len(t.encode("utf-8")) for t in texts), documents=len(texts))
    for start in range(0, len(windows), batch_size):
        batch = windows[start : start + batch_size]
        width = len(batch[0].targets)
        inputs = torch.zeros(len(batch), width, dtype=torch.long)
        targets = torch.full((len(batch), width), -100, dtype=torch.long)
        for row, window in enumerate(batch):
            inputs[row, : len(window.inputs)] = torch.tensor(window.inputs)
            targets[row, : len(window.targets)] = torch.tensor(window.targets)
        logits = model(input_ids=inputs).logits.float()
        score.nll += float(
            torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100, reduction="sum"
            )
        )
        score.tokens += int((targets != -100).sum())
    return score
