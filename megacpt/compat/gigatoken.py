"""gigatoken's SentencePiece import, which megacpt needs as data rather than as a tokenizer.

``Tokenizer.from_sentencepiece`` reads the control symbols (``<s>``, ``</s>``) as special tokens,
so a document holding their strings would get control ids. megacpt removes them from the
tokenizer's JSON first, and the converter that makes that JSON is a private function of gigatoken.
"""

from __future__ import annotations

import json
from typing import Any


def sentencepiece_json(model: bytes) -> dict[str, Any]:
    """The HF ``tokenizer.json`` content gigatoken builds from a SentencePiece ``.model`` file's bytes
    (about a second of Python: ``megacpt.tokenizer.encoders`` caches what it makes of it)."""
    from gigatoken._load.sentencepiece import sentencepiece_to_tokenizer_json

    return json.loads(sentencepiece_to_tokenizer_json(model))
