"""gigatoken's SentencePiece import, which megacpt needs as data rather than as a tokenizer.

``Tokenizer.from_sentencepiece`` reads the control symbols (``<s>``, ``</s>``) as special tokens,
so a document holding their strings would get control ids. megacpt removes them from the
tokenizer's JSON first, and the converter that makes that JSON is a private function of gigatoken.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path
from typing import Any

from megacpt.atomic import write_atomic
from megacpt.cache import cache_dir


def sentencepiece_json(model_file: str) -> dict[str, Any]:
    """The HF ``tokenizer.json`` content gigatoken builds from a SentencePiece ``.model`` file.

    The conversion is about a second of Python, so its result is cached by the model's content and
    gigatoken's version (``megacpt.cache``; a cache that cannot be written is skipped).
    """
    from importlib.metadata import version

    from gigatoken._load.sentencepiece import sentencepiece_to_tokenizer_json

    model = Path(model_file).read_bytes()
    digest = hashlib.sha256(model).hexdigest()
    cached = cache_dir() / "gigatoken" / f"{digest}-{version('gigatoken')}.json"
    try:
        return json.loads(cached.read_bytes())
    except (OSError, ValueError):
        pass
    text = sentencepiece_to_tokenizer_json(model)
    with contextlib.suppress(OSError):
        cached.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(cached, text)
    return json.loads(text)
