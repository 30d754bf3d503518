"""One document's cleaning: from the raw bytes of its line to the JSON line kept, or the reason it goes.

A document is named by its *position*: its input's index in the run's input list and the byte
offset of its line in that input (after decompression), packed in one int. Positions order the
documents as the input does, whatever task reads them, which is what makes deduplication keep the
same first copy for any number of tasks.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from megacpt.clean.config import CleanConfig
from megacpt.clean.filters import first_failure
from megacpt.clean.langid import LangId
from megacpt.clean.normalize import Normalizer
from megacpt.clean.perplexity import PerplexityScorer

OFFSET_BITS = 40  # a position's low bits: the line's byte offset (inputs up to 1 TiB each)


def position(index: int, offset: int) -> int:
    return index << OFFSET_BITS | offset


def split_position(pos: int) -> tuple[int, int]:
    """(input index, byte offset) of a position."""
    return pos >> OFFSET_BITS, pos & ((1 << OFFSET_BITS) - 1)


@dataclass(frozen=True)
class Kept:
    text: str  # the cleaned text (what deduplication compares)
    json_line: str  # the document as it is written out
    boilerplate_lines: int
    changed: bool
    lang: str | None


@dataclass(frozen=True)
class Dropped:
    filter: str
    why: str
    doc_id: Any = None


class DocumentCleaner:
    """Input checks, normalisation, language id, quality filters and perplexity, built once per task."""

    def __init__(self, config: CleanConfig) -> None:
        self.config = config
        self.normalize = Normalizer(config.normalization, config.boilerplate)
        self.langid = LangId() if config.languages else None
        self.perplexity = PerplexityScorer(config.perplexity) if config.perplexity else None

    def __call__(self, raw: bytes | None, first_line: bool = False) -> Kept | Dropped:
        """The outcome for one line's bytes (``None``: a line over ``max_line_bytes``)."""
        cfg = self.config
        if raw is None:
            return Dropped("huge_document", f"line longer than {cfg.max_line_bytes} bytes")
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            return Dropped("invalid_utf8", f"byte {err.start}: {err.reason}")
        if first_line:
            line = line.removeprefix("\ufeff")  # a byte-order mark some editors write
        if not line.strip():
            return Dropped("empty", "blank line")
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            return Dropped("malformed_json", f"{err.msg} at column {err.colno}")
        if not isinstance(obj, dict):
            return Dropped("missing_key", f"a JSON {type(obj).__name__}, not an object")
        doc_id = obj.get("id")
        if cfg.text_key not in obj:
            return Dropped("missing_key", f"no {cfg.text_key!r} key", doc_id)
        text = obj[cfg.text_key]
        if not isinstance(text, str):
            return Dropped(
                "missing_key", f"{cfg.text_key!r} is a {type(text).__name__}, not a string", doc_id
            )
        cleaned, boilerplate = self.normalize(text)
        if not cleaned:
            return Dropped("empty", "no text left after normalisation", doc_id)
        lang = None
        if self.langid is not None:
            lang, prob = self.langid(cleaned)
            if lang not in cfg.languages:
                return Dropped("language", f"identified as {lang} (p={prob:.2f})", doc_id)
            if prob < cfg.min_lang_prob:
                return Dropped("language", f"{lang} with p={prob:.2f} < {cfg.min_lang_prob}", doc_id)
        failure = first_failure(cleaned, cfg.quality, lang)
        if failure is None and self.perplexity is not None:
            failure = self.perplexity.failure(cleaned, lang)
        if failure is not None:
            return Dropped(failure[0], failure[1], doc_id)
        obj[cfg.text_key] = cleaned
        json_line = json.dumps(obj, ensure_ascii=False)
        try:
            json_line.encode("utf-8")
        except UnicodeEncodeError as err:  # a lone surrogate, written as a JSON escape
            return Dropped(
                "invalid_utf8", f"lone surrogate {json_line[err.start]!r} (a JSON \\u escape)", doc_id
            )
        return Kept(cleaned, json_line, boilerplate, cleaned != text, lang)


def read_lines(
    stream: IO[bytes], max_bytes: int, offset: int = 0, end: int | None = None
) -> Iterator[tuple[int, bytes | None]]:
    """Yield (byte offset, line) for the lines of ``stream`` that start before ``end``, from the one
    at ``offset`` (where ``stream`` stands); ``None`` for a line over ``max_bytes``, skipped in pieces
    without being held in memory."""
    while end is None or offset < end:
        line = stream.readline(max_bytes + 1)
        if not line:
            return
        start = offset
        offset += len(line)
        if len(line) > max_bytes and not line.endswith(b"\n"):
            while line and not line.endswith(b"\n"):
                line = stream.readline(1 << 20)
                offset += len(line)
            yield start, None
        else:
            yield start, line


def line_numbers(stream: IO[bytes], offsets: list[int]) -> dict[int, int]:
    """The 1-based line number of each byte offset (a line start) in ``stream``, in one pass."""
    numbers: dict[int, int] = {}
    wanted = sorted(set(offsets))
    read = newlines = 0
    for target in wanted:
        while read < target:
            block = stream.read(min(1 << 20, target - read))
            if not block:
                break
            newlines += block.count(b"\n")
            read += len(block)
        numbers[target] = newlines + 1
    return numbers
