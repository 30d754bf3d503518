"""Which tokenizer family a base file belongs to, and loading it as that family's ``BaseVocab``.

Kept apart from ``base`` (the interface) so that the families import the interface and this module
imports the families, with no import circle.
"""

from __future__ import annotations

import json
from pathlib import Path

from megacpt.errors import UserError
from megacpt.tokenizer.base import BaseVocab
from megacpt.tokenizer.merge_bpe import ByteLevelVocab
from megacpt.tokenizer.merge_sentencepiece import SentencePieceVocab


def load_base(path: Path) -> BaseVocab:
    """Load a SentencePiece ``.model``, a byte-level BPE ``tokenizer.json``, a mistral-common
    ``tekken*.json``, or a directory holding ``tokenizer.model`` or ``tokenizer.json``."""
    if path.is_dir():
        for name in ("tokenizer.model", "tokenizer.json", "tekken.json"):
            if (path / name).is_file():
                return load_base(path / name)
        raise UserError(f"{path}: no tokenizer.model, tokenizer.json or tekken.json in this directory")
    with path.open("rb") as handle:
        head = handle.read(64).lstrip()
    if not head.startswith(b"{"):
        return SentencePieceVocab.load(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"{path}: not a readable JSON tokenizer ({err})") from err
    if "vocab" in data and "config" in data and "pattern" in data.get("config", {}):
        return ByteLevelVocab.from_tekken(path)
    return ByteLevelVocab.from_tokenizer_json(path, data)
