"""Normalisation, quality filters and language id on real Korean, Japanese and English text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from megacpt.clean import filters
from megacpt.clean.filters import FILTERS, QualityConfig, first_failure
from megacpt.clean.langid import LangId
from megacpt.clean.normalize import Normalizer
from megacpt.errors import UserError

CORPORA = Path(__file__).resolve().parents[2] / "examples" / "corpora"
FILES = {
    "ko": ["ko/klue_dev.jsonl"],
    "ja": ["ja/jsquad_valid_wiki.jsonl", "ja/jsts_jcqa_train.jsonl"],
    "en": ["en/wikitext2_valid.jsonl"],
}


def _texts(lang: str, limit: int | None = None) -> list[str]:
    texts = []
    for rel in FILES[lang]:
        with open(CORPORA / rel, encoding="utf-8") as f:
            texts += [json.loads(line)["text"] for line in f][:limit]
    return texts


def test_nfkc_controls_and_boilerplate() -> None:
    norm = Normalizer()
    text, dropped = norm(
        "ＡＢＣ１２３ ｶﾀｶﾅ\u200b\ufeff\x07 본문\r\n"
        "Copyright 2024 Example Corp.\n\n\n\n"
        "무단전재 및 재배포 금지\n"
        "ログイン\n"
        "keep\tthis\u200d line   \n"
    )
    assert text == "ABC123 カタカナ 본문\n\nkeep\tthis\u200d line"
    assert dropped == 3
    assert Normalizer("none")("ＡＢＣ")[0] == "ＡＢＣ"
    assert Normalizer("NFC")("ｶ")[0] == "ｶ"
    menus = "Home | About us | Privacy Policy\n利用規約 ｜ プライバシーポリシー ｜ お問い合わせ\n이용약관 · 고객센터"
    assert norm(menus) == ("", 3)
    assert norm("본문\n저작권자(c) 연합뉴스, 무단 전재-재배포 금지\n저작권자 ⓒ 한국일보") == ("본문", 2)
    sentences = (
        "The company updated its privacy policy in 2019.\n著作権法は1970年に制定された。\n로그인 기록을 분석했다.\n"
        "(c) the third clause applies.\n저작권자는 권리를 가진다."
    )
    assert norm(sentences) == (sentences, 0)
    # A long line that merely mentions a notice is content, not boilerplate.
    long_line = "이 기사는 저작권자 허락을 받아 " + "내용이 길게 이어지는 문장입니다 " * 10
    assert norm(long_line)[1] == 0
    with pytest.raises(UserError, match="unknown Unicode normalisation"):
        Normalizer("NFX")
    with pytest.raises(UserError, match="bad boilerplate pattern"):
        Normalizer(boilerplate=["(unclosed"])


@pytest.mark.parametrize("lang", ["ko", "ja", "en"])
def test_langid_identifies_the_bundled_corpora(lang: str) -> None:
    langid = LangId()
    texts = [t for t in _texts(lang) if len(t) >= 20]
    wrong = [(t[:40], langid(t)) for t in texts if langid(t)[0] != lang]
    assert not wrong, wrong


def test_langid_tells_chinese_from_japanese() -> None:
    langid = LangId()
    assert langid("中华人民共和国是位于东亚的社会主义国家，首都为北京，人口超过十四亿。")[0] == "zh"
    assert langid("日本国は東アジアに位置する島国であり、首都は東京である。")[0] == "ja"


@pytest.mark.parametrize("lang", ["ko", "ja", "en"])
def test_real_text_passes_quality_filters(lang: str) -> None:
    texts = _texts(lang, limit=400)
    norm = Normalizer()
    cleaned = [norm(t) for t in texts]
    assert sum(dropped for _, dropped in cleaned) == 0  # no real sentence is taken for boilerplate
    failed = [first_failure(text, QualityConfig(), lang) for text, _ in cleaned]
    assert sum(f is not None for f in failed) <= 0.02 * len(texts), [f for f in failed if f]


def test_each_filter_rejects_what_it_should() -> None:
    cfg = QualityConfig(min_chars=20, max_chars=5000)
    korean = "서울은 대한민국의 수도이며 정치, 경제, 문화의 중심지이다. 한강이 도시를 가로질러 흐른다."
    cases = {
        "length": ("짧다", "ko"),
        "script_share": ("This text is English even though the target is Korean, with 한국어 words.", "ko"),
        "symbols_digits": ("!!!*** ### 무엇 $$$ %%% &&& ~~~ ^^^ 한국어 @@@ !!! ###", "ko"),
        "repeated_lines": (
            "\n".join([korean, "같은 줄이 반복되는 광고 문구입니다 지금 바로 클릭"] * 4),
            "ko",
        ),
        "repeated_ngrams": ("지금 바로 구매하세요 최저가 보장 " * 30, "ko"),
    }
    for name, (text, lang) in cases.items():
        failure = first_failure(text, cfg, lang)
        assert failure is not None and failure[0] == name, (name, failure)
        assert first_failure(text, QualityConfig(disabled=frozenset(FILTERS)), lang) is None
    assert first_failure("１２３４５６７８９０ 2024-01-01 12:00 이벤트 3,000,000원 100%", cfg, "ko") == (
        "symbols_digits",
        "digit ratio 0.76 > 0.3",  # 32 digits of 42 non-space characters
    )
    chinese = "中华人民共和国是位于东亚的社会主义国家，首都为北京，人口超过十四亿。"
    assert first_failure(chinese, cfg, "ja") == ("script_share", "kana share 0.000 < 0.05 (Chinese?)")
    assert first_failure(korean, cfg, "ko") is None
    assert first_failure(korean, cfg, None) is None  # no script filter without a language
    with pytest.raises(UserError, match="unknown filter"):
        QualityConfig(disabled=frozenset({"perplexity"}))
    with pytest.raises(UserError, match="between 0 and 1"):
        QualityConfig(max_digit_ratio=1.5)


def test_character_classes_count_as_the_patterns_do() -> None:
    """``count`` looks characters up in a table; each class must count what its pattern finds,
    outside the Basic Multilingual Plane, in lone surrogates and in every corpus text too."""
    odd = "emoji 😀🇰🇷 𠀋𝒜 \ud800 lone, ㄱㅏ 가 ｶﾞ ３５ \u00a0\u3000\t٣ _ ©™ ①"
    for text in [odd, *(t for lang in FILES for t in _texts(lang, 200))]:
        for pattern in filters.CLASSES:
            assert filters.count(pattern, text) == len(pattern.findall(text)), (pattern.pattern, text[:40])


def test_repeated_ngrams_coverage_matches_the_definition() -> None:
    cfg = QualityConfig(max_dup_ngram_fraction=0.0)

    def covered(text: str) -> float:
        flat, n = " ".join(text.split()), cfg.ngram_chars
        grams = [flat[i : i + n] for i in range(len(flat) - n + 1)]
        marks = [any(grams.count(flat[s : s + n]) > 1 for s in range(max(0, i - n + 1), i + 1) if s < len(grams))
                 for i in range(len(flat))]  # fmt: skip
        return sum(marks) / len(flat)

    for text in [
        "가나다라마바사아자차카타파하" * 3,
        "unique text without any repeated twenty-grams at all",
        "emoji 😀 and Hangul 가나다 repeat: emoji 😀 and Hangul 가나다 repeat: x",  # 4-byte characters
        "Ünïcödé wörds of one byte each, Ünïcödé wörds of one byte each",
        _texts("ko", 1)[0],
    ]:
        reason = filters.repeated_ngrams(text, cfg, "ko")
        expected = covered(text)
        assert (reason is None) == (expected == 0.0), text
        if reason is not None:
            assert f"cover {expected:.2f} >" in reason
