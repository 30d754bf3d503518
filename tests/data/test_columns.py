"""pyarrow's columnar reading of JSONL gives what the reference line reader gives: same documents, same skips."""

from __future__ import annotations

import io
import json
import random

import pytest

from megacpt.data import columns, readers

# Lines where pyarrow and Python's json could disagree, or where a check decides.
TRICKY = [
    b'{"text": "plain"}',
    b'{"text": "\xed\x95\x9c\xea\xb5\xad\xec\x96\xb4 \\ud83d\\ude00 emoji"}',
    b'{"text": "escapes \\" \\\\ \\/ \\b \\f \\n \\r \\t \\u0000 \\u00e9"}',
    b'{"text": "a", "other": {"nested": [1, 2.5, null, true]}, "n": NaN}',
    b'{"other": "no text key"}',
    b'{"text": null}',
    b'{"text": 42}',
    b'{"text": ["a"]}',
    b'{"text": "a", "text": "b"}',
    b'{"text": "a"} {"text": "b"}',
    b'{"text": "lone \\ud800 surrogate"}',
    b'{"text": "lone low \\udc00"}',
    b'{"text": "caf\xe9 latin-1"}',
    b'{"text": "raw\ttab inside"}',
    b'{"text": "x"}\x0b',
    b'{"text": "unterminated',
    b"[1, 2]",
    b'"just a string"',
    b"",
    b"   ",
    b" \r",
    b'{"text": ""}',
    b'{"text": "  \\n \\u3000 \\u00a0"}',
    b'{"text": "\\u001c\\u001f"}',
    b'{"text": " leading space, not empty"}',
    b'{"text": "' + b"x" * 40 + b'"}',
    b"{}",
    b'\xef\xbb\xbf{"text": "bom"}',
    b'{"text": "crlf line"}\r',
]


def reference(block: bytes, keys: list[str], max_bytes: int) -> columns.Batch:
    line_record = readers.__dict__["line_record"]
    return columns.from_records((line_record(line, keys, max_bytes) for line in io.BytesIO(block)), keys)


def as_lists(batch: columns.Batch) -> tuple[list[list[str]], dict[str, int]]:
    return [c.to_pylist() for c in batch.columns], dict(batch.skipped)


@pytest.mark.parametrize("line", TRICKY)
def test_each_tricky_line_reads_as_the_reference_reads_it(line: bytes) -> None:
    for block in (b'{"text": "before"}\n' + line + b"\n", line):
        assert as_lists(columns.parse_jsonl(block, ["text"], 30)) == as_lists(reference(block, ["text"], 30))


def test_random_blocks_and_several_keys_read_as_the_reference(monkeypatch) -> None:
    fallbacks = []
    line_record = readers.line_record
    monkeypatch.setattr(columns.readers, "line_record", lambda *a: fallbacks.append(a[0]) or line_record(*a))
    rng = random.Random(0)
    arrow_blocks = 0
    values = ["", " ", "text", "한국어", "\u3000", "x" * 50, None]
    for _ in range(300):
        lines = []
        for _ in range(rng.randint(1, 12)):
            if rng.random() < 0.03:
                lines.append(rng.choice(TRICKY))
                continue
            record = {k: rng.choice(values) for k in ("a", "b") if rng.random() < 0.9}
            lines.append(json.dumps(record, ensure_ascii=rng.random() < 0.5).encode())
        block = b"\n".join(lines) + (b"\n" if rng.random() < 0.8 else b"")
        for keys in (["a"], ["a", "b"]):
            fallbacks.clear()
            got = columns.parse_jsonl(block, keys, 200)
            arrow_blocks += not fallbacks
            assert as_lists(got) == as_lists(reference(block, keys, 200)), block
    assert arrow_blocks > 300  # of 600: the columnar path is what most of them took


def test_clean_blocks_take_the_columnar_path(monkeypatch) -> None:
    """The fast path is the one that runs on ordinary JSONL (else the tests above prove nothing)."""
    monkeypatch.setattr(readers, "line_record", lambda *a: pytest.fail("fell back to the line reader"))
    block = b"".join(json.dumps({"text": f"문서 {i}", "id": i}).encode() + b"\n" for i in range(100)) + b"\n"
    batch = columns.parse_jsonl(block, ["text"], 1 << 20)
    assert batch.columns[0].to_pylist() == [f"문서 {i}" for i in range(100)]
    assert dict(batch.skipped) == {"blank_line": 1}
    assert columns.byte_lengths(batch.columns[0]).tolist() == [len(f"문서 {i}".encode()) for i in range(100)]
    assert columns.characters(batch.columns[0]) == sum(len(f"문서 {i}") for i in range(100))
