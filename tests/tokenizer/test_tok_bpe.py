"""Expansion of a real byte-level BPE base: Mistral's tekken, converted to ``tokenizer.json``."""

from __future__ import annotations

import json

from mistral_common.tokens.tokenizers.tekken import Tekkenizer
from tokenizers import Tokenizer
from transformers import AutoTokenizer

from megacpt.tokenizer import ExpansionResult
from megacpt.tokenizer.merge_bpe import ByteLevelVocab
from tests.tokenizer.tok_helpers import KO, TEKKEN_BASE, texts


def test_tekken_conversion_matches_mistral_common(tekken_base: ByteLevelVocab, all_texts: list[str]) -> None:
    base = tekken_base
    assert base.base_size == 131072
    tekken = Tekkenizer.from_file(str(TEKKEN_BASE))
    # mistral-common never matches special-token text inside a document; HF's added tokens do.
    docs = [t.replace("<unk>", "unk") for t in all_texts[::10]]
    for doc, ids in zip(docs, base.encode(docs, None)):
        assert ids == tekken.encode(doc, bos=False, eos=False)


def test_base_tokens_and_merges_kept(tekken_japanese: ExpansionResult, tekken_base: ByteLevelVocab) -> None:
    base = tekken_base
    data = json.loads((tekken_japanese.output_dir / "tokenizer.json").read_text(encoding="utf-8"))
    vocab, merges = data["model"]["vocab"], data["model"]["merges"]
    assert all(vocab[token] == i for token, i in base.vocab.items())
    assert [tuple(m) for m in merges[: len(base.merges)]] == base.merges
    assert len(merges) == len(base.merges) + tekken_japanese.num_new_tokens
    assert [t["id"] for t in data["added_tokens"]] == list(range(1000))
    new_ids = sorted(vocab[t] for t in tekken_japanese.new_tokens)
    assert new_ids == list(range(131072, tekken_japanese.new_vocab_size))
    assert len(vocab) == tekken_japanese.padded_vocab_size and tekken_japanese.padded_vocab_size % 128 == 0


def test_round_trip_and_real_vocabulary(tekken_japanese: ExpansionResult, all_texts: list[str]) -> None:
    out = tekken_japanese.output_dir
    hf = AutoTokenizer.from_pretrained(out, local_files_only=True)
    raw = Tokenizer.from_file(str(out / "tokenizer.json"))
    assert len(hf) == tekken_japanese.padded_vocab_size
    assert (
        json.loads((out / "tokenizer_config.json").read_text())["tokenizer_class"]
        == "PreTrainedTokenizerFast"
    )
    assert (hf.bos_token, hf.eos_token, hf.unk_token) == ("<s>", "</s>", "<unk>")
    docs = all_texts[::3]
    batch = hf(docs, add_special_tokens=False)["input_ids"]
    raw_batch = raw.encode_batch_fast(docs, add_special_tokens=False)
    emitted = set()
    for doc, ids, enc in zip(docs, batch, raw_batch):
        assert enc.ids == ids
        assert hf.decode(ids) == doc
        emitted.update(i for i in ids if i >= 131072)
    assert len(emitted) > tekken_japanese.num_new_tokens // 2


def test_japanese_shorter_english_unchanged(tekken_japanese: ExpansionResult) -> None:
    stats = {s.language: s for s in tekken_japanese.stats}
    assert stats["ja"].token_ratio < 0.8
    assert stats["en"].new_tokens == stats["en"].base_tokens


def test_korean_text_untouched_by_japanese_tokens(
    tekken_japanese: ExpansionResult, tekken_base: ByteLevelVocab
) -> None:
    base = tekken_base
    docs = texts(KO)[::10]
    before = base.encode(docs, None)
    after = base.encode(docs, tekken_japanese.new_tokens)
    assert sum(map(len, after)) <= sum(map(len, before))
