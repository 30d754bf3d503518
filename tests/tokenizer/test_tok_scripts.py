"""New tokens are made of the target scripts only, so text without them keeps the base's exact ids."""

from __future__ import annotations

import json

import pytest
from transformers import AutoTokenizer

from megacpt.errors import UserError
from megacpt.tokenizer import ExpansionResult
from megacpt.tokenizer.config import SelectConfig
from megacpt.tokenizer.merge_bpe import ByteLevelVocab
from megacpt.tokenizer.scripts import ScriptFilter, detect_scripts, parse_scripts
from megacpt.tokenizer.select import crosses_characters, select_tokens
from tests.tokenizer.tok_helpers import EN, JA, KO, texts

CODE = 'def main(argv: list[str]) -> int:\n    return {"x": 1_000, "y": [3.14, -2e-5]}  # café naïve\n'
SPECIALS = "<s> </s> <unk> <|endoftext|> <|im_start|> [INST] 12345 ½ ¼ — “quoted” emoji 🙂"


def test_filter_admits_target_characters_and_safe_prefixes_only() -> None:
    korean = ScriptFilter(parse_scripts("korean"))
    assert korean.admits("안녕".encode()) and korean.admits(" 안".encode())
    assert korean.admits("안".encode()[:2]) and korean.admits(
        "안".encode()[:1]
    )  # a prefix only Hangul can complete
    assert not korean.admits("안".encode()[1:])  # a suffix: other characters end the same way
    assert not korean.admits(b"abc") and not korean.admits("안a".encode()) and not korean.admits(b" ")
    assert not korean.admits("一".encode()[:2])  # begins only Han characters
    japanese = ScriptFilter(parse_scripts("japanese"))
    assert all(japanese.admits(t.encode()) for t in ("コーヒー", "。", "漢字々", "ひらがな", "東京タワー"))
    assert not japanese.admits("안".encode())
    assert ScriptFilter(None).admits(b"abc")


def test_script_names_aliases_and_detection() -> None:
    assert parse_scripts("hiragana, katakana") == ("Hiragana", "Katakana")
    assert parse_scripts(["korean", "han"]) == ("Hangul", "Han")
    assert parse_scripts("auto") == ("auto",) and parse_scripts("all") == ("all",)
    with pytest.raises(UserError, match="'klingon' names no Unicode script"):
        parse_scripts("klingon")
    with pytest.raises(UserError, match="names no script"):
        parse_scripts(" , ")
    assert detect_scripts(texts(KO)[:50]) == ("Hangul",)
    with pytest.raises(UserError, match="no non-Latin script"):
        detect_scripts(texts(EN)[:3])


def test_text_without_target_characters_keeps_the_base_ids(
    tekken_japanese: ExpansionResult, tekken_base: ByteLevelVocab
) -> None:
    docs = [*texts(EN)[:20], CODE, SPECIALS]
    assert tekken_base.encode(docs, tekken_japanese.new_tokens) == tekken_base.encode(docs, None)
    stats = {s.language: s for s in tekken_japanese.stats}
    assert stats["en"].new_tokens == stats["en"].base_tokens  # the whole English file: exactly 0 change
    meta = json.loads((tekken_japanese.output_dir / "expansion.json").read_text())
    assert meta["trainer"] == "hf_bpe" and meta["scripts"] == ["Hiragana", "Katakana", "Han"]


def test_decode_of_encode_is_the_text(tekken_japanese: ExpansionResult, all_texts: list[str]) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tekken_japanese.output_dir)
    for text in [*all_texts[::40], CODE, SPECIALS, "  spaces\n\n\ttabs  ", "日本語の文。한국어 문장."]:
        ids = tokenizer.encode(text, add_special_tokens=False)
        assert tokenizer.decode(ids) == text


def test_the_tool_refuses_an_unknown_script(tmp_path, capsys) -> None:
    from megacpt.tokenizer import cli as expand_vocab

    with pytest.raises(SystemExit) as exit_info:
        expand_vocab.main(
            ["--base", "x", "--corpus", str(KO), "--output", str(tmp_path / "o"), "--scripts", "elvish"]
        )
    err = capsys.readouterr().err
    assert (
        exit_info.value.code == 2 and err.startswith("error: ") and "'elvish' names no Unicode script" in err
    )


def test_whole_characters_keeps_out_tokens_that_join_a_character_to_part_of_the_next(
    tekken_base: ByteLevelVocab,
) -> None:
    no_kagami = "の".encode() + "鏡".encode()[:1]  # a particle and the first byte of the kanji after it
    assert crosses_characters(no_kagami) and crosses_characters("鏡".encode()[1:] + "の".encode())
    assert crosses_characters(" 이".encode() + "름".encode()[:1])
    for whole_or_inside in ("本を書く".encode(), " 안녕".encode(), "鏡".encode()[:2], b" \xeb", b"\xbc"):
        assert not crosses_characters(whole_or_inside)
    # tekken spells 鏡 in three single bytes, so a merge of の with its first byte, ranked before the
    # piece that would build 鏡, would be emitted wherever の鏡 occurs
    docs = texts(*JA)[::4]
    assert len(tekken_base.encode(["鏡"], None)[0]) == 3 and sum(d.count("の鏡") for d in docs) >= 2
    candidates = [no_kagami, "鏡".encode()[:2]]
    for scripts in (ScriptFilter(parse_scripts("japanese")), None):
        for whole in (True, False):
            cfg = SelectConfig(whole_characters=whole)
            chosen = select_tokens(tekken_base, candidates, docs, cfg, None, scripts).keys
            surfaces = {tekken_base.token_bytes(k) for k in chosen}
            assert (no_kagami in surfaces) is not whole and "鏡".encode() in surfaces
