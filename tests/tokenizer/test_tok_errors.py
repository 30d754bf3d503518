"""Bad input gets one clear error line: from the library as ``UserError``, from the tool as exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sentencepiece as spm

from megacpt.errors import UserError
from megacpt.tokenizer import ExpansionConfig, SelectConfig, TrainConfig, expand_vocab
from tests.tokenizer.tok_helpers import KO, REPO, SP_BASE, write_jsonl


def _config(tmp_path: Path, **kw) -> ExpansionConfig:
    args = {"base": SP_BASE, "corpus": [KO], "output_dir": tmp_path / "out"} | kw
    return ExpansionConfig(**args)


def test_wordpiece_tokenizer_json_is_unsupported(tmp_path: Path) -> None:
    base = tmp_path / "tokenizer.json"
    base.write_text(
        json.dumps({"model": {"type": "WordPiece", "vocab": {"[UNK]": 0}}, "pre_tokenizer": None})
    )
    with pytest.raises(UserError, match="unsupported base tokenizer kind: WordPiece"):
        expand_vocab(_config(tmp_path, base=base))


def test_unigram_sentencepiece_is_unsupported(tmp_path: Path) -> None:
    (tmp_path / "t.txt").write_text("\n".join(f"word{i} text{i % 7} abc" for i in range(300)))
    spm.SentencePieceTrainer.train(
        input=str(tmp_path / "t.txt"),
        model_prefix=str(tmp_path / "uni"),
        vocab_size=40,
        model_type="unigram",
        hard_vocab_limit=False,
        minloglevel=2,
    )
    with pytest.raises(UserError, match="unsupported base tokenizer kind: SentencePiece UNIGRAM"):
        expand_vocab(_config(tmp_path, base=tmp_path / "uni.model"))


def test_garbage_base_is_rejected(tmp_path: Path) -> None:
    base = tmp_path / "tokenizer.model"
    base.write_bytes(b"\xff\x00not a model at all")
    with pytest.raises(UserError, match="not a SentencePiece model"):
        expand_vocab(_config(tmp_path, base=base))


def test_empty_corpus(tmp_path: Path) -> None:
    corpus = write_jsonl(tmp_path / "empty.jsonl", ["", "   "])
    with pytest.raises(UserError, match="empty corpus"):
        expand_vocab(_config(tmp_path, corpus=[corpus]))


def test_bad_jsonl_line_names_file_and_line(tmp_path: Path) -> None:
    corpus = tmp_path / "bad.jsonl"
    corpus.write_text('{"text": "좋아요"}\n{"txt": 1}\n', encoding="utf-8")
    with pytest.raises(UserError, match=r"bad\.jsonl:2: not a JSON object with a 'text' field"):
        expand_vocab(_config(tmp_path, corpus=[corpus]))


def test_vocab_smaller_than_base(tmp_path: Path) -> None:
    with pytest.raises(
        UserError, match="requested vocabulary size 30000 is not larger than the base tokenizer's 32000"
    ):
        expand_vocab(_config(tmp_path, target_vocab_size=30000))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: TrainConfig(trainer="wordpiece"), "train.trainer must be one of auto, .* got 'wordpiece'"),
        (lambda: TrainConfig(vocab_size=10), "train.vocab_size must be at least 100, got 10"),
        (lambda: TrainConfig(morph="jieba"), "train.morph must be one of none, mecab, kiwi, got 'jieba'"),
        (lambda: SelectConfig(max_new_tokens=0), "select.max_new_tokens must be positive, got 0"),
    ],
)
def test_bad_settings(make, message: str) -> None:
    with pytest.raises(UserError, match=f"^{message}$"):
        make()


def test_existing_output_is_not_overwritten(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match="already exists; pass --overwrite to replace it$"):
        expand_vocab(_config(tmp_path))
    with pytest.raises(UserError, match="is not an output of megacpt"):
        expand_vocab(_config(tmp_path, overwrite=True))
    assert (out / "keep.txt").read_text() == "mine"


def test_tool_prints_one_error_line_and_exits_2(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    cmd = [
        sys.executable,
        str(REPO / "tools" / "expand_vocab.py"),
        "--base",
        str(SP_BASE),
        "--corpus",
        str(KO),
    ]
    proc = subprocess.run(
        [*cmd, "--output", str(tmp_path / "o"), "--vocab-size", "100"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: requested vocabulary size 100 is not larger than the base tokenizer's 32000: "
        "expansion only appends tokens"
    ]


def test_trained_vocabulary_smaller_than_the_characters_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="Vocabulary size is smaller than required_chars"):
        expand_vocab(_config(tmp_path, train=TrainConfig(vocab_size=300)))
    assert not (tmp_path / "out").exists()


def test_whole_characters_is_refused_for_a_sentencepiece_base(tmp_path: Path) -> None:
    config = _config(tmp_path, select=SelectConfig(whole_characters=True))
    with pytest.raises(UserError, match="^--whole-characters applies only to byte-level bases"):
        expand_vocab(config)
    assert not (tmp_path / "out").exists()
