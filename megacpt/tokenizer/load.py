"""Loading a base tokenizer as its family's ``BaseVocab``, the starting point of an expansion.

The format comes from ``formats.locate``, the detection every tool shares, so a folder is read by the
same library here as in preprocessing. Kept apart from ``base`` (the interface) so that the families
import the interface and this module imports the families, with no import circle.
"""

from __future__ import annotations

import json
from pathlib import Path

from megacpt.errors import UserError
from megacpt.tokenizer.base import BaseVocab
from megacpt.tokenizer.formats import locate
from megacpt.tokenizer.merge_bpe import ByteLevelVocab
from megacpt.tokenizer.merge_sentencepiece import SentencePieceVocab


def load_base(path: Path) -> BaseVocab:
    """Load a SentencePiece ``.model``, a byte-level BPE ``tokenizer.json``, a mistral-common
    ``tekken*.json``, or a directory holding one of them."""
    source = locate(path)
    if source.kind == "sentencepiece":
        return SentencePieceVocab.load(source.path)
    if source.kind == "tekken":
        return ByteLevelVocab.from_tekken(source.path)
    if source.kind != "huggingface":
        raise UserError(
            f"{path} is a {source.kind} tokenizer: expansion extends a SentencePiece model, "
            "a byte-level BPE tokenizer.json or a tekken.json"
        )
    try:
        data = json.loads(source.path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"{source.path}: not a readable JSON tokenizer ({err})") from err
    return ByteLevelVocab.from_tokenizer_json(source.path, data)
