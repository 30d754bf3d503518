"""Shared paths and helpers: the bundled corpora and the real base tokenizers mistral-common ships."""

from __future__ import annotations

import json
import os
from pathlib import Path

import mistral_common

REPO = Path(__file__).resolve().parents[2]
CORPORA = REPO / "examples" / "corpora"
MISTRAL_DATA = Path(os.path.dirname(mistral_common.__file__)) / "data"
SP_BASE = MISTRAL_DATA / "tokenizer.model.v1"
TEKKEN_BASE = MISTRAL_DATA / "tekken_240911.json"
KO = CORPORA / "ko" / "klue_dev.jsonl"
JA = [CORPORA / "ja" / "jsquad_valid_wiki.jsonl", CORPORA / "ja" / "jsts_jcqa_train.jsonl"]
EN = CORPORA / "en" / "wikitext2_valid.jsonl"


def texts(*paths: Path) -> list[str]:
    """The ``text`` fields of JSONL files."""
    return [json.loads(line)["text"] for p in paths for line in p.open(encoding="utf-8") if line.strip()]


def write_jsonl(path: Path, docs: list[str]) -> Path:
    """Write documents as JSONL and return the path."""
    path.write_text(
        "".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8"
    )
    return path
