"""The text bundled in ``examples/corpora`` (CC BY-SA and public-domain legal text; see its README)
and which of it every real-model figure holds out.

``examples/`` reaches the package as ``megacpt/recipes/examples`` (a link in a checkout, package
data in a wheel), so the quickstart finds its text and configs wherever megacpt is installed.

Held-out text comes from *other sources* than the text that trains the tokenizer and the model, so
that a figure measures transfer, not memory of the training files' phrases:

- Korean: trained on KLUE sentences; held out: the Korean constitution and National Assembly bills
  (``ko/konlpy_law_bills.jsonl``, the corpus ``konlpy`` ships);
- Japanese: trained on JSTS captions and JCommonsenseQA questions; held out: Wikipedia paragraphs
  (JSQuAD's contexts);
- English: one WikiText-2 file, so whole articles are held out (one in five, by a hash of the text).

The split is the same on every machine and does not depend on file order.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from megacpt.tokenizer.corpus import is_heldout, iter_texts

EXAMPLES = Path(__file__).parent / "examples"  # the repository's examples/, shipped with the package
ROOT = EXAMPLES / "corpora"
LANGS = ("ko", "ja", "en")
TRAIN_FILES = {
    "ko": ("ko/klue_dev.jsonl",),
    "ja": ("ja/jsts_jcqa_train.jsonl",),
    "en": ("en/wikitext2_valid.jsonl",),
}
HELDOUT_FILES = {
    "ko": ("ko/konlpy_law_bills.jsonl",),
    "ja": ("ja/jsquad_valid_wiki.jsonl",),
    "en": (),  # whole articles of the training file, by hash
}
HELDOUT_SOURCES = {
    "ko": "the Korean constitution and National Assembly bills (konlpy's corpus); trained on KLUE",
    "ja": "Japanese Wikipedia paragraphs (JSQuAD contexts); trained on JSTS and JCommonsenseQA",
    "en": "whole WikiText-2 articles held out by hash (one in five); trained on the others",
}
ARTICLE_FRACTION = 0.2  # English articles held out
HELDOUT_FRACTION = 0.1  # documents held out by split_documents (single-file tests)


def bundled_files(lang: str) -> list[Path]:
    """Every bundled file of ``lang``, training and held-out."""
    return [ROOT / name for name in TRAIN_FILES[lang] + HELDOUT_FILES[lang]]


def split_by_source(train: list[Path], heldout: list[Path]) -> tuple[list[str], list[str]]:
    """(training documents, held-out documents): all of ``train`` and ``heldout``'s documents, or,
    with no ``heldout`` files, whole documents of ``train`` held out by hash. Held-out documents are
    cut into ~1 kB pieces and ordered by hash, so the first few are a fair sample of every file."""
    texts = list(iter_texts(train))
    if heldout:
        held = list(iter_texts(heldout))
    else:
        held = [t for t in texts if is_heldout(t, ARTICLE_FRACTION)]
        texts = [t for t in texts if not is_heldout(t, ARTICLE_FRACTION)]
    return texts, sorted(chunk_documents(held), key=_hash)


def _bundled(lang: str) -> tuple[list[str], list[str]]:
    return split_by_source([ROOT / n for n in TRAIN_FILES[lang]], [ROOT / n for n in HELDOUT_FILES[lang]])


def training_documents(lang: str) -> list[str]:
    """The bundled documents of ``lang`` that tokenizer expansion and training may read."""
    return _bundled(lang)[0]


def heldout_documents(lang: str) -> list[str]:
    """The bundled held-out documents of ``lang`` (see ``split_by_source``)."""
    return _bundled(lang)[1]


def _hash(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()


def split_documents(paths: list[Path]) -> tuple[list[str], list[str]]:
    """(train, held-out) documents of JSONL files with a ``text`` field. Training documents keep
    their order; held-out ones are ordered by their hash, so that the first few (what a validation
    of a few documents scores) are a fair sample of every file, not the start of the first."""
    train: list[str] = []
    heldout: list[str] = []
    for text in iter_texts(paths):
        (heldout if is_heldout(text, HELDOUT_FRACTION) else train).append(text)
    heldout.sort(key=_hash)
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
