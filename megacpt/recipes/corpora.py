"""The text bundled in ``examples/corpora`` (CC BY-SA; see its README) and its fixed held-out split.

Every real-model figure of this project (the quickstart's report, ``bench/embedding_init.py``,
``bench/expansion_ab.py``) is measured on held-out documents chosen by a hash of their text
(``megacpt.tokenizer.corpus.is_heldout``, one document in ten), and everything that trains
(tokenizer expansion, continual pretraining) reads only the rest. The split is the same on every
machine and does not depend on file order.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from megacpt.tokenizer.corpus import is_heldout, iter_texts

ROOT = Path(__file__).resolve().parents[2] / "examples" / "corpora"
FILES = {
    "ko": ("ko/klue_dev.jsonl",),
    "ja": ("ja/jsquad_valid_wiki.jsonl", "ja/jsts_jcqa_train.jsonl"),
    "en": ("en/wikitext2_valid.jsonl",),
}
HELDOUT_FRACTION = 0.1


def bundled_files(lang: str) -> list[Path]:
    return [ROOT / name for name in FILES[lang]]


def split_documents(paths: list[Path]) -> tuple[list[str], list[str]]:
    """(train, held-out) documents of JSONL files with a ``text`` field. Training documents keep
    their order; held-out ones are ordered by their hash, so that the first few (what a validation
    of a few documents scores) are a fair sample of every file, not the start of the first."""
    train: list[str] = []
    heldout: list[str] = []
    for text in iter_texts(paths):
        (heldout if is_heldout(text, HELDOUT_FRACTION) else train).append(text)
    heldout.sort(key=lambda t: hashlib.blake2b(t.encode("utf-8"), digest_size=8).digest())
    return train, heldout


def chunk_documents(texts: list[str], max_bytes: int = 1024) -> list[str]:
    """``texts`` with each document over ``max_bytes`` cut at line breaks into pieces of about that
    size (whole lines; a single longer line stays whole). Validation scores whole documents, so
    this lets it take a few paragraphs of several articles instead of one 60 kB article."""
    out: list[str] = []
    for text in texts:
        if len(text.encode("utf-8")) <= max_bytes:
            out.append(text)
            continue
        piece: list[str] = []
        size = 0
        for line in text.splitlines(keepends=True):
            if piece and size + len(line.encode("utf-8")) > max_bytes:
                out.append("".join(piece).strip("\n"))
                piece, size = [], 0
            piece.append(line)
            size += len(line.encode("utf-8"))
        if "".join(piece).strip():
            out.append("".join(piece).strip("\n"))
    return [t for t in out if t.strip()]


def first_bytes(texts: list[str], limit: int) -> list[str]:
    """Whole documents from the start of ``texts`` until they hold at least ``limit`` UTF-8 bytes."""
    out: list[str] = []
    total = 0
    for text in texts:
        if total >= limit:
            break
        out.append(text)
        total += len(text.encode("utf-8"))
    return out


def write_jsonl(path: Path, texts: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for text in texts:
            handle.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
    return path
