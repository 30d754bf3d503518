"""The C++ scanner's columnar reading of JSONL gives what the reference line reader gives: same documents, same skips."""

from __future__ import annotations

import io
import json
import random
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from megacpt.data import _jsonl_scan, columns, readers

# Lines where a strict JSON parser and Python's json could disagree, or where a check decides.
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
    b'{"te\\u0078t": "escaped key"}',
    b'{"te\\\\xt": "a key holding a backslash"}',
    b'{"text": "a", "n": 01}',
    b'{"text": "a", "n": 1.}',
    b'{"text": "a", "n": -}',
    b'{"text": "a", "n": [1e5, -0.5E-3, 0, -0, 1E+2]}',
    b'{"text": "a", "n": ' + b"7" * 5000 + b"}",
    b'{"text": "a", "n": 1.' + b"7" * 5000 + b"}",
    b'{"text": "a",}',
    b'{"text": "a", "n": [1,]}',
    b'{"text": "deep", "n": ' + b"[" * 100 + b"]" * 100 + b"}",
    b'{"text": "a"}x',
    b'{ "text" : "spaced" , "b" : [ ] , "c" : { } }',
    b'{"text": NaN}',
    b'{"text": "a", "n": -Infinity, "m": Infinity}',
    b'{"text": "a", "b": tru}',
    b'\x0c{"text": "form feed first"}',
    b'{"text": "\\u00"}',
    b'{"text": "\\x41"}',
    b'{"text": "\xf0\x9f\x98\x80 raw emoji"}',
    b'{"text": "\xed\xa0\x80 encoded surrogate"}',
    b'{"other": "\xed\xa0\x80 encoded surrogate elsewhere", "text": "kept"}',
    b'{"text": "\xc0\xaf overlong"}',
    b'{"text": "DEL \x7f"}',
    b'{"text": "\\ud83d\\u0041 high then not low"}',
    b'{"a": 1, "text": "x", "c": {"d": [{"e": null}]}}',
    b'{"text": false}',
    b'{"text": "\\u0020\\u0009"}',
    b'{"text": "x", "text": null}',
]


def reference(block: bytes, keys: list[str], max_bytes: int) -> columns.Batch:
    line_record = readers.__dict__["line_record"]
    return columns.from_records((line_record(line, keys, max_bytes) for line in io.BytesIO(block)), keys)


def as_lists(batch: columns.Batch) -> tuple[list[list[str]], list[int], dict[str, int]]:
    return [c.texts() for c in batch.columns], [c.characters for c in batch.columns], dict(batch.skipped)


@pytest.mark.parametrize("line", TRICKY)
def test_each_tricky_line_reads_as_the_reference_reads_it(line: bytes) -> None:
    for block in (b'{"text": "before"}\n' + line + b"\n", line):
        assert as_lists(columns.parse_jsonl(block, ["text"], 30)) == as_lists(reference(block, ["text"], 30))


def test_random_blocks_and_several_keys_read_as_the_reference(monkeypatch) -> None:
    fallbacks = []
    line_record = readers.line_record
    monkeypatch.setattr(columns.readers, "line_record", lambda *a: fallbacks.append(a[0]) or line_record(*a))
    rng = random.Random(0)
    scanned_lines = 0
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
            undecided = list(fallbacks)
            assert as_lists(got) == as_lists(reference(block, keys, 200)), block
            assert all(line.rstrip(b"\n") in TRICKY for line in undecided), undecided
            scanned_lines += len(lines) - len(undecided)
    assert scanned_lines > 3000  # of about 3,900: the scanner decided most lines itself


@pytest.mark.parametrize("keys", [["本文"], ["te\\xt"], ["text", "本文"]])
def test_keys_beyond_ascii_and_escapes_read_as_the_reference(keys: list[str]) -> None:
    lines = [
        '{"本文": "kept", "text": "also"}',
        '{"\\u672c\\u6587": "escaped key", "text": "t"}',
        '{"本文": "a", "\\u672c\\u6587": "the same key twice"}',
        '{"te\\\\xt": "a backslash in the key", "本文": "x", "text": "y"}',
        '{"text": "no 本文"}',
    ]
    block = "\n".join(lines).encode()
    expected = reference(block, keys, 1000)
    assert len(expected) >= 1 and as_lists(columns.parse_jsonl(block, keys, 1000)) == as_lists(expected)


def test_clean_blocks_are_decided_by_the_scanner(monkeypatch) -> None:
    """The fast path is the one that runs on ordinary JSONL (else the tests above prove nothing)."""
    monkeypatch.setattr(readers, "line_record", lambda *a: pytest.fail("fell back to the line reader"))
    block = b"".join(json.dumps({"text": f"문서 {i}", "id": i}).encode() + b"\n" for i in range(100)) + b"\n"
    batch = columns.parse_jsonl(block, ["text"], 1 << 20)
    assert batch.columns[0].texts() == [f"문서 {i}" for i in range(100)]
    assert dict(batch.skipped) == {"blank_line": 1}
    assert batch.columns[0].byte_lengths().tolist() == [len(f"문서 {i}".encode()) for i in range(100)]
    assert batch.columns[0].characters == sum(len(f"문서 {i}") for i in range(100))


def test_a_text_of_only_whitespace_is_empty_as_str_strip_says() -> None:
    """The scanner's whitespace is Python's ``str.isspace()``, over every code point."""
    chars = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    spelled = [json.dumps(c).encode() if c < " " or c in '"\\' else c.encode() for c in chars]
    block = b"\n".join(
        b'{"text": "' + s + b'"}' if s[:1] != b'"' else b'{"text": ' + s + b"}" for s in spelled
    )
    batch = columns.parse_jsonl(block, ["text"], 1 << 20)
    assert batch.columns[0].texts() == [c for c in chars if not c.isspace()]
    assert dict(batch.skipped) == {"empty": sum(c.isspace() for c in chars)}


@pytest.mark.skipif(
    shutil.which("g++") is None, reason="no C++ compiler to build the AddressSanitizer driver"
)
def test_scanner_under_address_sanitizer(tmp_path: Path) -> None:
    """Every prefix of every tricky line, scanned alone from a buffer of exactly its size: no read
    past a block's end (AddressSanitizer, UndefinedBehaviorSanitizer), and what the extension says."""
    exe = tmp_path / "jsonl_scan_driver"
    flags = ["-std=c++17", "-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
    here = Path(__file__).parent
    subprocess.run(
        ["g++", *flags, f"-I{here.parents[1] / 'csrc'}", str(here / "jsonl_scan_driver.cpp"), "-o", str(exe)],
        check=True,
    )
    blocks = [line[:k] for line in TRICKY for k in range(len(line) + 1)] + [b"\n".join(TRICKY)]
    (tmp_path / "blocks").write_bytes(b"".join(struct.pack("<I", len(b)) + b for b in blocks))
    keys = ["text", "other"]
    run = subprocess.run([str(exe), str(tmp_path / "blocks"), *keys], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    expected = []
    for block in blocks:
        scanned, counts, undecided = _jsonl_scan.scan(block, keys, 1 << 20)
        fields = [len(scanned[0][0]) - 1]
        for _, data, characters in scanned:
            fields += [len(data), characters]
        fields += [counts[k] for k in ("blank_line", "missing_key", "not_a_string", "empty", "too_long")]
        expected.append(" ".join(map(str, [*fields, len(undecided)])))
    assert run.stdout.splitlines() == expected
