"""Which tokenizer a path holds: the one format detection of every tool (expand, preprocess, resize).

A file is read by its content: a ``.tiktoken`` rank file, a mistral-common ``tekken*.json`` (a JSON
object with ``config.pattern`` and ``vocab``), any other JSON as a Hugging Face ``tokenizer.json``,
and anything else as a SentencePiece model. A directory is read by the first file it holds of:

1. ``tokenizer.model``: the SentencePiece model a Llama, Mistral or Gemma ``tokenizer.json`` is
   converted from. When ``tokenizer.json`` sits beside it with another number of tokens (tokens
   added to the JSON only), the directory is refused: which one is meant is the user's call.
2. ``tokenizer.json`` (Hugging Face ``tokenizers``);
3. ``tekken.json`` (mistral-common);
4. ``tokenizer_config.json`` alone: a tokenizer only ``transformers`` reads (``vocab.json`` +
   ``merges.txt`` and the like).

Light on purpose (no tokenizer library imported): every ``--help`` and config check can use it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from megacpt.errors import UserError

DIRECTORY_FILES = {
    "tokenizer.model": "sentencepiece",
    "tokenizer.json": "huggingface",
    "tekken.json": "tekken",
}


@dataclass(frozen=True)
class TokenizerSource:
    """A tokenizer's format (``kind``) and the file to read it from (``transformers``: the directory)."""

    kind: str
    path: Path


def locate(path: str | os.PathLike[str]) -> TokenizerSource:
    """The format of a tokenizer file or directory, and the file that holds it."""
    path = Path(path)
    if path.is_dir():
        return _in_directory(path)
    if not path.is_file():
        raise UserError(f"tokenizer {path} does not exist")
    return TokenizerSource(file_kind(path), path)


def file_kind(path: Path) -> str:
    """The format of one tokenizer file, read from its name and first bytes."""
    if path.suffix == ".tiktoken":
        return "tiktoken"
    with path.open("rb") as handle:
        head = handle.read(4096).lstrip()
    if not head.startswith(b"{"):
        return "sentencepiece"
    return "tekken" if b'"config"' in head and b'"pattern"' in head else "huggingface"


def _in_directory(path: Path) -> TokenizerSource:
    present = [name for name in DIRECTORY_FILES if (path / name).is_file()]
    if present:
        if present[:2] == ["tokenizer.model", "tokenizer.json"]:
            _check_same_size(path / "tokenizer.model", path / "tokenizer.json")
        return TokenizerSource(DIRECTORY_FILES[present[0]], path / present[0])
    if (path / "tokenizer_config.json").is_file():
        return TokenizerSource("transformers", path)
    raise UserError(
        f"{path}: no tokenizer.model, tokenizer.json, tekken.json or tokenizer_config.json in this directory"
    )


def _check_same_size(model: Path, json_file: Path) -> None:
    pieces, tokens = sentencepiece_size(model), tokenizer_json_size(json_file)
    if pieces != tokens:
        raise UserError(
            f"{model.parent} holds tokenizer.model ({pieces:,} pieces) and tokenizer.json ({tokens:,} tokens), "
            f"which disagree: give the file to use ({json_file} keeps the tokens added to it)"
        )


def sentencepiece_size(model: Path) -> int:
    """The number of pieces of a SentencePiece model, read from its protobuf."""
    from sentencepiece import sentencepiece_model_pb2

    proto: Any = sentencepiece_model_pb2.ModelProto()  # type: ignore[attr-defined]
    try:
        proto.ParseFromString(model.read_bytes())
    except Exception as err:  # protobuf's DecodeError
        raise UserError(f"{model}: not a SentencePiece model ({type(err).__name__})") from None
    return len(proto.pieces)


def tokenizer_json_size(json_file: Path) -> int:
    """The number of distinct ids of a ``tokenizer.json``: its model's vocabulary and added tokens."""
    try:
        data = json.loads(json_file.read_text(encoding="utf-8"))
        vocab = data["model"]["vocab"]
        ids = set(range(len(vocab))) if isinstance(vocab, list) else set(vocab.values())
        ids.update(token["id"] for token in data.get("added_tokens") or [])
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise UserError(f"{json_file}: not a readable tokenizer.json ({type(err).__name__}: {err})") from None
    return len(ids)
