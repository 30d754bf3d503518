"""Text normalisation: Unicode form, control characters, and boilerplate lines.

NFKC (the default, as Swallow's tokenizer pipeline uses) folds full-width Latin and digits and
half-width katakana into their usual forms, so that the same word is the same bytes. Control and
invisible format characters (zero-width spaces, byte-order marks, bidi marks) are removed; tabs
and newlines stay. Boilerplate lines (cookie and copyright notices, navigation, share buttons) are
removed when a whole short line matches one of the patterns, in English, Korean or Japanese.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import Final, Literal, cast, get_args

from megacpt.errors import UserError

Form = Literal["NFKC", "NFC", "NFKD", "NFD"]
FORMS: Final = (*get_args(Form), "none")

_NAV = (
    r"(?:home|about(?: us)?|contact(?: us)?|sitemap|faq|privacy policy|cookie policy|terms of (?:use|service)"
    r"|이용약관|개인정보\s*처리방침|회사소개|고객센터|사이트맵|제휴문의|광고문의"
    r"|利用規約|プライバシーポリシー|お問い合わせ|会社概要|サイトマップ|ホーム)"
)
_SEP = r"\s*[|｜/·・•-]?\s*"

# Whole-line patterns, matched case-insensitively against lines of at most ``max_line_chars``; each
# is a footer, a notice or a menu, never a sentence that merely mentions one of these words.
DEFAULT_BOILERPLATE: Final[tuple[str, ...]] = (
    rf"{_NAV}(?:{_SEP}{_NAV})*\W*",  # a menu: nothing but navigation items
    r"(?:copyright|©|\(c\))\s*(?:\d{4}|by\b).*",  # a footer: a copyright mark, then a year or "by"
    r".*all rights reserved\W*",
    r"(?:click here|read more|subscribe(?: now)?|sign (?:in|up)|log ?in|share on \w+|skip to (?:main )?content)\W*",
    r"저작권자\s*\(?\s*(?:c|ⓒ|©)\s*\)?\W.*",  # "저작권자(c) 연합뉴스" (NFKC turns ⓒ into c)
    r".*(?:무단\s*전재|재배포\s*금지|무단\s*복제).*",
    r"(?:로그인|회원가입|공유하기|더보기|기사\s*공유)\W*",
    r".*無断(?:転載|複製|転用).*",
    r"(?:ログイン|新規登録|シェアする|続きを読む|トップへ戻る|ページの先頭へ)\W*",
)

_ZERO_WIDTH_KEEP: Final = {"\u200c", "\u200d"}  # ZWNJ/ZWJ carry meaning in some scripts


def _is_unwanted(ch: str) -> bool:
    if ch in "\n\t":
        return False
    cat = unicodedata.category(ch)
    return cat == "Cc" or (cat == "Cf" and ch not in _ZERO_WIDTH_KEEP)


def _character_class(points: list[int]) -> re.Pattern[str]:
    """One regular-expression class of these code points (sorted), as ranges."""
    ranges: list[list[int]] = []
    for point in points:
        if ranges and ranges[-1][1] == point - 1:
            ranges[-1][1] = point
        else:
            ranges.append([point, point])
    return re.compile("[" + "".join(f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in ranges) + "]")


# A scan in C for the few documents that have any (str.translate looks each character up in a dict).
_UNWANTED: Final = _character_class(
    [o for o in [*range(0x30000), *range(0xE0000, 0xE0080)] if _is_unwanted(chr(o))]
)


class Normalizer:
    """Normalises one document's text; stateless after construction, safe to pickle to workers."""

    def __init__(
        self,
        form: str = "NFKC",
        boilerplate: Sequence[str] = DEFAULT_BOILERPLATE,
        max_line_chars: int = 120,
    ) -> None:
        if form not in FORMS:
            raise UserError(f"unknown Unicode normalisation {form!r}; choose one of {', '.join(FORMS)}")
        try:
            self._boilerplate = [re.compile(p, re.IGNORECASE) for p in boilerplate]
        except re.error as err:
            raise UserError(f"bad boilerplate pattern {err.pattern!r}: {err}") from None
        self.form: Form | None = None if form == "none" else cast(Form, form)
        self.max_line_chars = max_line_chars

    def __call__(self, text: str) -> tuple[str, int]:
        """Return the cleaned text and how many boilerplate lines were removed."""
        if self.form is not None:
            text = unicodedata.normalize(self.form, text)
        text = _UNWANTED.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
        kept: list[str] = []
        dropped = 0
        for line in text.split("\n"):
            line = line.rstrip()
            if (
                line
                and len(line) <= self.max_line_chars
                and any(p.fullmatch(line.strip()) for p in self._boilerplate)
            ):
                dropped += 1
                continue
            if line or (kept and kept[-1]):  # at most one blank line in a row
                kept.append(line)
        return "\n".join(kept).strip(), dropped
