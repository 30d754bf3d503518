"""Session fixtures: one real expansion per base family, shared by the tests that inspect it."""

from __future__ import annotations

import pytest

from megacpt.tokenizer import ExpansionConfig, ExpansionResult, SelectConfig, TrainConfig, expand_vocab
from megacpt.tokenizer.load import load_base
from megacpt.tokenizer.merge_bpe import ByteLevelVocab
from tests.tokenizer.tok_helpers import EN, JA, KO, SP_BASE, TEKKEN_BASE, texts, write_jsonl


@pytest.fixture(scope="session")
def sp_korean(tmp_path_factory: pytest.TempPathFactory) -> ExpansionResult:
    """Mistral-7B SentencePiece + at most 16,000 Korean tokens trained on all Korean train text."""
    out = tmp_path_factory.mktemp("sp_ko") / "tok"
    config = ExpansionConfig(
        base=SP_BASE,
        corpus=[KO],
        output_dir=out,
        language="ko",
        heldout={"en": [EN]},
        select=SelectConfig(max_new_tokens=16000),
        pad_to_multiple_of=64,
    )
    return expand_vocab(config)


@pytest.fixture(scope="session")
def tekken_japanese(tmp_path_factory: pytest.TempPathFactory) -> ExpansionResult:
    """Mistral tekken (byte-level BPE) + Japanese tokens from an HF BPE trained on a subset."""
    tmp = tmp_path_factory.mktemp("tekken_ja")
    corpus = write_jsonl(tmp / "ja.jsonl", texts(*JA)[::3])
    config = ExpansionConfig(
        base=TEKKEN_BASE,
        corpus=[corpus],
        output_dir=tmp / "tok",
        language="ja",
        heldout={"en": [EN]},
        train=TrainConfig(vocab_size=6000),  # the trainer follows the base: hf_bpe
        select=SelectConfig(max_new_tokens=3000),
        pad_to_multiple_of=128,
    )
    return expand_vocab(config)


@pytest.fixture(scope="session")
def tekken_base() -> ByteLevelVocab:
    base = load_base(TEKKEN_BASE)
    assert isinstance(base, ByteLevelVocab)
    return base


@pytest.fixture(scope="session")
def en_texts() -> list[str]:
    return texts(EN)


@pytest.fixture(scope="session")
def all_texts() -> list[str]:
    return texts(KO, *JA, EN)
