"""Which new tokens an expansion may admit: those made of the target language's writing systems.

A new token is admitted only if, after one optional leading space, it is made of characters whose
Unicode ``Script_Extensions`` include a target script (so Japanese ``ー`` and ``。`` count as kana,
``々`` as Han), possibly ending in an incomplete UTF-8 sequence that can only begin a target-script
character (byte-level tokenizers build a three-byte Hangul syllable from a two-byte piece).
Such a token can only ever match text that contains target-script characters, so any text
without them (English, code, digits, ASCII punctuation) keeps exactly the base tokenizer's ids.

Script properties come from the ``regex`` module (already required by ``transformers``), which
knows the Unicode Script_Extensions property that Python's ``re`` and ``unicodedata`` lack.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence

import regex

from megacpt.errors import UserError

log = logging.getLogger(__name__)

# Names a user may give for a language instead of its scripts.
ALIASES = {
    "korean": ("Hangul",),
    "japanese": ("Hiragana", "Katakana", "Han"),
    "chinese": ("Han",),
}
# Scripts ``auto`` looks for; Latin only when asked for by name (it would change English).
KNOWN = (
    "Hangul",
    "Hiragana",
    "Katakana",
    "Han",
    "Cyrillic",
    "Greek",
    "Arabic",
    "Hebrew",
    "Thai",
    "Devanagari",
    "Bengali",
    "Tamil",
    "Telugu",
    "Kannada",
    "Malayalam",
    "Gujarati",
    "Gurmukhi",
    "Oriya",
    "Sinhala",
    "Georgian",
    "Armenian",
    "Ethiopic",
    "Khmer",
    "Lao",
    "Myanmar",
    "Tibetan",
    "Mongolian",
)
AUTO_MIN_SHARE = 0.01  # ``auto`` keeps scripts that write at least this share of the corpus's letters


def _pattern(names: Sequence[str]) -> regex.Pattern:
    return regex.compile("|".join(rf"\p{{scx={name}}}" for name in names))


def parse_scripts(value: str | Sequence[str]) -> tuple[str, ...]:
    """Script names from ``"hangul"``, ``"hiragana,katakana,han"``, an alias (``japanese``) or
    ``all``/``auto`` (returned as they are); an unknown name is a ``UserError``."""
    items = [value] if isinstance(value, str) else list(value)
    names = [n.strip() for item in items for n in item.split(",") if n.strip()]
    if not names:
        raise UserError("--scripts names no script (give e.g. hangul, japanese, or auto)")
    if len(names) == 1 and names[0].lower() in ("all", "auto"):
        return (names[0].lower(),)
    out: list[str] = []
    for name in names:
        expanded = ALIASES.get(name.lower(), (name,))
        for script in expanded:
            try:
                _pattern([script])
            except regex.error:
                raise UserError(
                    f"--scripts: {name!r} names no Unicode script (examples: hangul, hiragana, katakana, han, "
                    f"cyrillic, latin; aliases: {', '.join(ALIASES)}; or auto, all)"
                ) from None
            out.append(script.capitalize())
    return tuple(dict.fromkeys(out))


def detect_scripts(texts: Iterable[str]) -> tuple[str, ...]:
    """The non-Latin scripts that write at least ``AUTO_MIN_SHARE`` of the letters of ``texts``."""
    patterns = {name: _pattern([name]) for name in KNOWN}
    counts: Counter[str] = Counter()
    letters = 0
    for text in texts:
        chars = Counter(c for c in text if c.isalpha())
        letters += sum(chars.values())
        for char, n in chars.items():
            for name, pattern in patterns.items():
                if pattern.match(char):
                    counts[name] += n
    found = tuple(name for name in KNOWN if letters and counts[name] >= AUTO_MIN_SHARE * letters)
    if not found:
        raise UserError(
            "scripts auto: the corpus is written in no non-Latin script; name the scripts new tokens may "
            "use with --scripts (e.g. latin, which changes how English tokenises, or all)"
        )
    return found


class ScriptFilter:
    """Admits tokens (UTF-8 bytes) made of the target scripts; ``None`` scripts admit everything."""

    def __init__(self, scripts: Sequence[str] | None) -> None:
        self.scripts = tuple(scripts) if scripts is not None else None
        self._pattern = _pattern(self.scripts) if self.scripts else None
        self._prefixes: dict[bytes, bool] = {}

    def _char_ok(self, char: str) -> bool:
        assert self._pattern is not None
        return self._pattern.fullmatch(char) is not None

    def _prefix_ok(self, prefix: bytes) -> bool:
        """Whether every character whose UTF-8 form starts with ``prefix`` is of a target script."""
        if prefix not in self._prefixes:
            self._prefixes[prefix] = self._all_completions_ok(prefix)
        return self._prefixes[prefix]

    def _all_completions_ok(self, prefix: bytes) -> bool:
        lead = prefix[0]
        length = 2 if lead >> 5 == 0b110 else 3 if lead >> 4 == 0b1110 else 4 if lead >> 3 == 0b11110 else 0
        if not length or len(prefix) >= length or any(b >> 6 != 0b10 for b in prefix[1:]):
            return False
        missing = length - len(prefix)
        for tail in range(64**missing):
            rest = bytes(0x80 | ((tail >> (6 * i)) & 0x3F) for i in reversed(range(missing)))
            try:
                char = (prefix + rest).decode("utf-8")
            except UnicodeDecodeError:
                continue  # overlong forms and surrogates never occur in text
            if not self._char_ok(char):
                return False
        return True

    def admits(self, token: bytes) -> bool:
        """Whether ``token`` may become a new token."""
        if self._pattern is None:
            return True
        body = token[1:] if token.startswith(b" ") else token
        try:
            text, tail = body.decode("utf-8"), b""
        except UnicodeDecodeError as err:
            if err.reason != "unexpected end of data":
                return False  # a stray continuation byte or an invalid sequence
            text, tail = body[: err.start].decode("utf-8"), body[err.start :]
        if not body or not all(self._char_ok(c) for c in text):
            return False
        return not tail or self._prefix_ok(tail)


def resolve_filter(value: str | Sequence[str], texts: Sequence[str]) -> ScriptFilter:
    """The filter for ``--scripts`` ``value`` (``auto`` detects the scripts of ``texts``)."""
    names = parse_scripts(value)
    if names == ("all",):
        log.info("scripts: all (new tokens may change how text of any script tokenises)")
        return ScriptFilter(None)
    if names == ("auto",):
        names = detect_scripts(texts)
    log.info("scripts: new tokens are made of %s text only", ", ".join(names))
    return ScriptFilter(names)
