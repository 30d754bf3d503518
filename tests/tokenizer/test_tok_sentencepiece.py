"""Expansion of a real SentencePiece base (Mistral-7B, Llama-2 family) with Korean tokens."""

from __future__ import annotations

import json

import pytest
import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2 as sp_pb2
from transformers import AutoTokenizer

from megacpt.tokenizer import ExpansionConfig, ExpansionResult, SelectConfig, expand_vocab
from tests.tokenizer.tok_helpers import JA, SP_BASE


def _proto(path) -> sp_pb2.ModelProto:
    proto = sp_pb2.ModelProto()
    proto.ParseFromString(path.read_bytes())
    return proto


def test_base_pieces_keep_id_string_score_and_type(sp_korean: ExpansionResult) -> None:
    base, merged = _proto(SP_BASE), _proto(sp_korean.output_dir / "tokenizer.model")
    assert len(merged.pieces) == sp_korean.padded_vocab_size > len(base.pieces)
    for old, new in zip(base.pieces, merged.pieces):
        assert (old.piece, old.score, old.type) == (new.piece, new.score, new.type)
    assert merged.trainer_spec.byte_fallback and merged.normalizer_spec == base.normalizer_spec
    hf_vocab = json.loads((sp_korean.output_dir / "tokenizer.json").read_text())["model"]["vocab"]
    assert all(hf_vocab[p.piece] == i for i, p in enumerate(base.pieces))


def test_new_tokens_are_normal_vocabulary_reached_by_tokenisation(sp_korean: ExpansionResult) -> None:
    out = sp_korean.output_dir
    assert 0 < sp_korean.num_new_tokens <= 16000
    assert sp_korean.padded_vocab_size % 64 == 0
    merged = _proto(out / "tokenizer.model")
    new = merged.pieces[sp_korean.base_vocab_size : sp_korean.new_vocab_size]
    assert [p.piece for p in new] == sp_korean.new_tokens
    assert all(p.type == sp_pb2.ModelProto.SentencePiece.NORMAL for p in new)
    added = json.loads((out / "tokenizer.json").read_text())["added_tokens"]
    assert all(t["id"] < sp_korean.base_vocab_size for t in added)
    rows = (out / "new_tokens.tsv").read_text(encoding="utf-8").splitlines()[1:]
    sp = spm.SentencePieceProcessor(model_file=str(out / "tokenizer.model"))
    for row in rows[:: max(1, len(rows) // 200)]:
        token, token_id, freq, text = row.split("\t")
        assert sp.id_to_piece(int(token_id)) == token
        # Under the threshold only if a frequent character or a part another new token is merged from.
        is_part = any(t != token and (t.startswith(token) or t.endswith(token)) for t in sp_korean.new_tokens)
        assert int(freq) >= 2 or len(json.loads(text)) == 1 or is_part
    emitted = {i for ids in sp.encode(["대한민국의 수도는 서울입니다. 정부가 발표했다."]) for i in ids}
    assert any(i >= sp_korean.base_vocab_size for i in emitted)


def test_hf_tokenizer_matches_model_and_round_trips(sp_korean: ExpansionResult, all_texts: list[str]) -> None:
    out = sp_korean.output_dir
    hf = AutoTokenizer.from_pretrained(out, local_files_only=True)
    sp = spm.SentencePieceProcessor(model_file=str(out / "tokenizer.model"))
    assert len(hf) == sp.get_piece_size() == sp_korean.padded_vocab_size
    # "<unk>" is literal text in WikiText; HF matches it as the special token, SentencePiece does not.
    docs = [t.replace("<unk>", "unk") for t in all_texts] + ["a  b", "두 칸  띄어쓰기", "<unused_vocab_0>"]
    for text, ids in zip(docs, sp.encode(docs)):
        assert hf(text, add_special_tokens=False)["input_ids"] == ids
        assert max(ids) < sp_korean.new_vocab_size  # padding entries are never produced
        assert sp.decode(ids) == text
        assert hf.decode(ids) == sp.decode(ids)


def test_outputs_describe_the_expansion(sp_korean: ExpansionResult) -> None:
    out = sp_korean.output_dir
    id_map = json.loads((out / "id_map.json").read_text())
    assert id_map["old_to_new"] == list(range(sp_korean.base_vocab_size))
    meta = json.loads((out / "expansion.json").read_text())
    assert meta["base_kind"] == "sentencepiece"
    assert (meta["base_vocab_size"], meta["new_vocab_size"], meta["padded_vocab_size"]) == (
        32000,
        32000 + sp_korean.num_new_tokens,
        sp_korean.padded_vocab_size,
    )
    assert meta["num_new_tokens"] == sp_korean.num_new_tokens and meta["selection_converged"]
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    hf_config = json.loads((out / "tokenizer_config.json").read_text())
    assert hf_config["tokenizer_class"] == "LlamaTokenizer" and "local_files_only" not in hf_config
    assert "| ko |" in (out / "report.md").read_text()


def test_korean_ratio_and_english_unchanged(sp_korean: ExpansionResult) -> None:
    stats = {s.language: s for s in sp_korean.stats}
    assert stats["ko"].documents > 50 and stats["ko"].token_ratio <= 0.5
    assert stats["ko"].new_byte_tokens < stats["ko"].base_byte_tokens
    assert abs(stats["en"].new_tokens - stats["en"].base_tokens) <= 0.005 * stats["en"].base_tokens


def test_japanese_ratio(tmp_path) -> None:
    result = expand_vocab(
        ExpansionConfig(
            base=SP_BASE,
            corpus=JA,
            output_dir=tmp_path / "ja",
            language="ja",
            select=SelectConfig(max_new_tokens=16000),
        )
    )
    (ja,) = result.stats
    assert result.num_new_tokens <= 16000
    assert ja.documents > 100 and ja.token_ratio <= 0.65


@pytest.mark.parametrize("trainer", ["sentencepiece_unigram", "hf_bpe"])
def test_other_trainers_also_shorten_korean(sp_korean: ExpansionResult, trainer: str, tmp_path) -> None:
    from megacpt.tokenizer import TrainConfig
    from tests.tokenizer.tok_helpers import KO

    result = expand_vocab(
        ExpansionConfig(
            base=SP_BASE,
            corpus=[KO],
            output_dir=tmp_path / trainer,
            language="ko",
            train=TrainConfig(trainer=trainer, vocab_size=4000),
            select=SelectConfig(max_new_tokens=2000),
        )
    )
    assert 0 < result.num_new_tokens <= 2000
    assert result.stats[0].token_ratio < 0.8
