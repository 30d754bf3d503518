"""The cleaning stage: stream a JSONL corpus through normalisation, filters, language id and dedup.

The inputs (files, globs, directories; plain, ``.gz`` or ``.zst``) are read one after the other,
line by line (a document longer than ``max_line_bytes`` is skipped without being
held in memory) and cut into chunks that worker processes clean in parallel; chunks come back in
input order and deduplication runs in the main process, so the output is the same for any number
of workers. Bad lines (invalid UTF-8, malformed JSON, a missing or non-string text field, empty or
huge documents) are counted and reported like any other removal, never fatal. The output and the
report are written under temporary names and renamed into place only when complete, so a failed
run leaves no half-written file and never touches an existing output.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import IO, Any

import numpy as np

from megacpt.atomic import atomic_path, check_output
from megacpt.clean.config import CleanConfig
from megacpt.clean.dedup import Deduplicator, exact_key, signature
from megacpt.clean.filters import first_failure
from megacpt.clean.langid import LangId
from megacpt.clean.normalize import Normalizer
from megacpt.clean.perplexity import PerplexityScorer
from megacpt.clean.report import CleanReport
from megacpt.errors import UserError
from megacpt.inputs import input_files, is_jsonl, open_binary
from megacpt.processes import die_with_parent

# A document's place: its input's index and its line there, packed in one int (what the dedup index
# keeps per document).
_LINE_BITS = 40


def _position(index: int, line: int) -> int:
    return index << _LINE_BITS | line


def _line_of(position: int) -> int:
    return position & ((1 << _LINE_BITS) - 1)


@dataclass(frozen=True)
class _Kept:
    line: int
    json_line: str
    key: bytes
    sig: np.ndarray | None
    boilerplate_lines: int
    changed: bool
    lang: str | None


@dataclass(frozen=True)
class _Dropped:
    line: int
    filter: str
    why: str
    doc_id: Any = None


_Outcome = _Kept | _Dropped
_worker: _Worker | None = None


class _Worker:
    """The per-document part of cleaning, built once per process."""

    def __init__(self, config: CleanConfig) -> None:
        self.config = config
        self.normalize = Normalizer(config.normalization, config.boilerplate)
        self.langid = LangId() if config.languages else None
        self.perplexity = PerplexityScorer(config.perplexity) if config.perplexity else None

    def clean(self, line_no: int, raw: bytes | None) -> _Outcome:
        """The outcome for the document at ``line_no`` (a ``_position``)."""
        cfg = self.config
        if raw is None:
            return _Dropped(line_no, "huge_document", f"line longer than {cfg.max_line_bytes} bytes")
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            return _Dropped(line_no, "invalid_utf8", f"byte {err.start}: {err.reason}")
        if _line_of(line_no) == 1:
            line = line.removeprefix("\ufeff")  # a byte-order mark some editors write
        if not line.strip():
            return _Dropped(line_no, "empty", "blank line")
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            return _Dropped(line_no, "malformed_json", f"{err.msg} at column {err.colno}")
        if not isinstance(obj, dict):
            return _Dropped(line_no, "missing_key", f"a JSON {type(obj).__name__}, not an object")
        doc_id = obj.get("id")
        if cfg.text_key not in obj:
            return _Dropped(line_no, "missing_key", f"no {cfg.text_key!r} key", doc_id)
        text = obj[cfg.text_key]
        if not isinstance(text, str):
            return _Dropped(
                line_no, "missing_key", f"{cfg.text_key!r} is a {type(text).__name__}, not a string", doc_id
            )
        cleaned, boilerplate = self.normalize(text)
        if not cleaned:
            return _Dropped(line_no, "empty", "no text left after normalisation", doc_id)
        lang = None
        if self.langid is not None:
            lang, prob = self.langid(cleaned)
            if lang not in cfg.languages:
                return _Dropped(line_no, "language", f"identified as {lang} (p={prob:.2f})", doc_id)
            if prob < cfg.min_lang_prob:
                return _Dropped(
                    line_no, "language", f"{lang} with p={prob:.2f} < {cfg.min_lang_prob}", doc_id
                )
        failure = first_failure(cleaned, cfg.quality, lang)
        if failure is None and self.perplexity is not None:
            failure = self.perplexity.failure(cleaned, lang)
        if failure is not None:
            return _Dropped(line_no, failure[0], failure[1], doc_id)
        obj[cfg.text_key] = cleaned
        sig = signature(cleaned, cfg.num_perm, cfg.shingle_chars) if cfg.near_dedup else None
        out = json.dumps(obj, ensure_ascii=False)
        return _Kept(line_no, out, exact_key(cleaned), sig, boilerplate, cleaned != text, lang)


def _init_worker(config: CleanConfig, parent: int) -> None:
    die_with_parent(parent)
    global _worker
    _worker = _Worker(config)


def _clean_chunk(chunk: list[tuple[int, bytes | None]]) -> list[_Outcome]:
    assert _worker is not None
    return [_worker.clean(n, raw) for n, raw in chunk]


def _read_lines(stream: IO[bytes], max_bytes: int) -> Iterator[tuple[int, bytes | None]]:
    """Yield (line number, bytes); ``None`` for a line over ``max_bytes``, skipped in pieces."""
    line_no = 0
    while True:
        line = stream.readline(max_bytes + 1)
        if not line:
            return
        line_no += 1
        if len(line) > max_bytes and not line.endswith(b"\n"):
            while line and not line.endswith(b"\n"):
                line = stream.readline(1 << 20)
            yield line_no, None
        else:
            yield line_no, line


def _chunks(paths: list[str], config: CleanConfig) -> Iterator[list[tuple[int, bytes | None]]]:
    """The inputs' lines, one after the other, in chunks of (position, bytes)."""
    chunk: list[tuple[int, bytes | None]] = []
    for index, path in enumerate(paths):
        with open_binary(path) as stream:
            for line_no, raw in _read_lines(stream, config.max_line_bytes):
                chunk.append((_position(index, line_no), raw))
                if len(chunk) == config.chunk_lines:
                    yield chunk
                    chunk = []
    if chunk:
        yield chunk


def _outcomes(paths: list[str], config: CleanConfig, workers: int) -> Generator[_Outcome, None, None]:
    """Cleaned chunks in input order, with at most ``4 * workers`` chunks in flight."""
    if workers == 1:
        worker = _Worker(config)
        for chunk in _chunks(paths, config):
            yield from (worker.clean(n, raw) for n, raw in chunk)
        return
    ctx = multiprocessing.get_context(
        "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    )
    with ctx.Pool(workers, initializer=_init_worker, initargs=(config, os.getpid())) as pool:
        pending: deque = deque()
        for chunk in _chunks(paths, config):
            pending.append(pool.apply_async(_clean_chunk, (chunk,)))
            if len(pending) >= 4 * workers:
                yield from pending.popleft().get()
        while pending:
            yield from pending.popleft().get()


def clean_corpus(
    inputs: str | os.PathLike | Sequence[str | os.PathLike],
    output_path: str,
    report_path: str | None = None,
    config: CleanConfig | None = None,
    workers: int | None = None,
    overwrite: bool = False,
) -> CleanReport:
    """Clean the JSONL ``inputs`` (files, globs or directories; plain, ``.gz`` or ``.zst``; read one
    after the other) into ``output_path``; write the JSON report beside it (``<output>.report.json``)
    unless ``report_path`` says where. Returns the report. An existing output is replaced only with
    ``overwrite`` (and only once the new one is complete)."""
    config = config or CleanConfig()
    workers = workers or os.cpu_count() or 1
    if workers < 1:
        raise UserError(f"workers must be at least 1, got {workers}")
    report_path = report_path or output_path + ".report.json"
    paths = input_files(
        [inputs] if isinstance(inputs, (str, os.PathLike)) else inputs, is_jsonl, "JSONL files"
    )
    check_output(output_path, paths, overwrite)
    if os.path.isfile(output_path) and not os.path.isfile(report_path):
        raise UserError(
            f"{output_path} exists and is not an earlier clean output (no {report_path} beside it): "
            f"not replacing it. Is the output path missing from the command line?"
        )
    if len({os.path.realpath(p) for p in (*paths, output_path, report_path)}) < len(set(paths)) + 2:
        raise UserError("the inputs, the output and the report must be different files")
    check_output(report_path, [], True)
    where = _describer(paths)
    dedup = Deduplicator(
        config.near_dup_threshold,
        config.num_perm,
        exact=config.exact_dedup,
        near=config.near_dedup,
        where=where,
    )
    report = CleanReport(input=paths, output=output_path, workers=workers, config=_describe(config))
    start = time.perf_counter()
    try:
        os.makedirs(os.path.dirname(os.path.abspath(output_path)), exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot write {output_path}: {err.strerror}") from None
    try:
        with atomic_path(output_path) as tmp:
            with (
                open(tmp, "w", encoding="utf-8") as dst,
                # closing(): on any error the worker pool is shut down now, not when garbage is collected.
                contextlib.closing(_outcomes(paths, config, workers)) as outcomes,
            ):
                for outcome in outcomes:
                    report.documents_in += 1
                    if isinstance(outcome, _Kept):
                        dup = dedup.check(outcome.line, outcome.key, outcome.sig)
                        if dup is not None:
                            outcome = _Dropped(
                                outcome.line, dup[0], dup[1], json.loads(outcome.json_line).get("id")
                            )
                    if isinstance(outcome, _Dropped):
                        index = outcome.line >> _LINE_BITS
                        report.remove(
                            outcome.filter, paths[index], _line_of(outcome.line), outcome.doc_id, outcome.why
                        )
                        continue
                    dst.write(outcome.json_line + "\n")
                    report.keep(outcome.lang, outcome.boilerplate_lines, outcome.changed)
            report.seconds = round(time.perf_counter() - start, 3)
            report.write(report_path)
            if not report.documents_out:  # leaving the block with an error publishes nothing
                removed = (
                    ", ".join(f"{r}: {n}" for r, n in report.removed.items() if n)
                    or "the input holds no documents"
                )
                raise UserError(
                    f"kept 0 of {report.documents_in} documents ({removed}); nothing written to "
                    f"{output_path}, see {report_path}"
                )
    except OSError as err:
        raise UserError(f"{err.filename or output_path}: {err.strerror}") from None
    return report


def _describer(paths: list[str]) -> Callable[[int], str]:
    """How a message names a document's place: ``line N``, with its file when there are several."""
    if len(paths) == 1:
        return lambda position: f"line {_line_of(position)}"
    return lambda position: f"{paths[position >> _LINE_BITS]} line {_line_of(position)}"


def _describe(config: CleanConfig) -> dict[str, Any]:
    described = asdict(config)
    described["quality"]["disabled"] = sorted(config.quality.disabled)
    described["perplexity"] = [
        {**asdict(rule), "model_dir": str(rule.model_dir)} for rule in config.perplexity
    ]
    return described
