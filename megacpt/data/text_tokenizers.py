"""Tokenisers for preprocessing, behind one small protocol: batch-encode texts to lists of ids.

SentencePiece ``.model`` files go through ``sentencepiece`` (batch ``encode``), HF ``tokenizer.json``
files (or a directory holding one) through ``tokenizers`` (Rust ``encode_batch``), and any other
HF tokenizer directory through ``transformers.AutoTokenizer``. No special tokens are added: the
pipeline separates documents with the end-of-sequence id (``eod_id``) when asked, as Megatron-LM's
GPT preprocessing does. ``vocab_size`` counts added tokens, so the token dtype always fits.
"""

from __future__ import annotations

import json
import os
from typing import Protocol

from megacpt.errors import UserError


class TextTokenizer(Protocol):
    vocab_size: int
    eod_id: int | None

    def encode_batch(self, texts: list[str]) -> list[list[int]]: ...


class _SentencePiece:
    def __init__(self, path: str) -> None:
        import sentencepiece as spm

        try:
            self._sp = spm.SentencePieceProcessor(model_file=path)
        except (OSError, RuntimeError) as err:
            raise UserError(f"cannot load SentencePiece model {path}: {err}") from err
        self.vocab_size = int(self._sp.get_piece_size())
        eos = int(self._sp.eos_id())
        self.eod_id = eos if eos >= 0 else None

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return self._sp.encode(texts, num_threads=1)


class _HFTokenizers:
    def __init__(self, path: str) -> None:
        from tokenizers import Tokenizer

        try:
            self._tok = Tokenizer.from_file(path)
        except Exception as err:
            raise UserError(f"cannot load HF tokenizer {path}: {err}") from err
        self.vocab_size = int(self._tok.get_vocab_size(with_added_tokens=True))
        self.eod_id = self._find_eos(os.path.dirname(path))

    def _find_eos(self, directory: str) -> int | None:
        config = os.path.join(directory, "tokenizer_config.json")
        names: list[object] = ["</s>", "<|endoftext|>", "<|end_of_text|>", "<eos>"]
        if os.path.isfile(config):  # the tokenizer's own word on its eos token wins over guesses
            with open(config, encoding="utf-8") as f:
                eos = json.load(f).get("eos_token")
            names = [eos.get("content") if isinstance(eos, dict) else eos]
        for name in names:
            token = self._tok.token_to_id(name) if isinstance(name, str) else None
            if token is not None:
                return int(token)
        return None

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self._tok.encode_batch(texts, add_special_tokens=False)]


class _Transformers:
    def __init__(self, path: str) -> None:
        from transformers import AutoTokenizer

        try:
            self._tok = AutoTokenizer.from_pretrained(path)
        except Exception as err:
            raise UserError(f"cannot load HF tokenizer directory {path}: {err}") from err
        self.vocab_size = len(self._tok)
        self.eod_id = self._tok.eos_token_id

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return self._tok(texts, add_special_tokens=False)["input_ids"]


def load_tokenizer(path: str) -> TextTokenizer:
    """A SentencePiece ``.model``, an HF ``tokenizer.json``, or an HF tokenizer directory."""
    if os.path.isdir(path):
        for name, kind in (("tokenizer.json", _HFTokenizers), ("tokenizer.model", _SentencePiece)):
            candidate = os.path.join(path, name)
            if os.path.isfile(candidate) and (name == "tokenizer.json" or not _has_hf_config(path)):
                return kind(candidate)
        return _Transformers(path)
    if not os.path.isfile(path):
        raise UserError(f"tokenizer {path} does not exist")
    if path.endswith(".json"):
        return _HFTokenizers(path)
    return _SentencePiece(path)


def _has_hf_config(directory: str) -> bool:
    return os.path.isfile(os.path.join(directory, "tokenizer_config.json"))
