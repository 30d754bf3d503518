"""Append tokens to a byte-level BPE ``tokenizer.json`` (Llama 3, Qwen2, Mistral tekken).

Each new token becomes a model vocabulary entry plus one merge appended after the base merges,
whose two halves are exactly what the (already extended) BPE makes of the token's bytes; so the
token is reached by ordinary BPE tokenisation, never through the "added tokens" path that
bypasses it. Merges rank after every base merge, so text the base already covers keeps its
tokens. A token the BPE would split into three or more pieces cannot be built with one merge and
is left out (its missing parts are usually earlier candidates).

mistral-common's tekken files store byte strings with ranks, not merges; they are converted with
transformers' ``MistralConverter``, which derives the merges from the ranks as tiktoken does.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer
from transformers.convert_slow_tokenizer import bytes_to_unicode

from megacpt.errors import UserError
from megacpt.tokenizer.base import BaseVocab, Encoded, Parts
from megacpt.tokenizer.hf_files import save_tokenizer

BYTE_ENCODER = bytes_to_unicode()
BYTE_DECODER = {c: b for b, c in BYTE_ENCODER.items()}
TEKKEN_SPECIALS = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}


def _is_byte_level(data: dict[str, Any]) -> bool:
    def types(node: Any) -> set[str]:
        if isinstance(node, dict):
            return {node.get("type", "")} | {t for v in node.values() for t in types(v)}
        if isinstance(node, list):
            return {t for v in node for t in types(v)}
        return set()

    return data.get("model", {}).get("type") == "BPE" and "ByteLevel" in types(data.get("pre_tokenizer"))


def _merge_pair(merge: str | list[str]) -> tuple[str, str]:
    left, right = merge.split(" ", 1) if isinstance(merge, str) else merge
    return left, right


def _segment(word: str, ranks: dict[tuple[str, str], int]) -> list[str]:
    """Byte-level BPE on one word: apply the lowest-ranked adjacent merge until none applies."""
    symbols = list(word)
    while len(symbols) > 1:
        pairs = [(ranks.get((symbols[i], symbols[i + 1])), i) for i in range(len(symbols) - 1)]
        found = [(r, i) for r, i in pairs if r is not None]
        if not found:
            break
        _, i = min(found)
        symbols[i : i + 2] = [symbols[i] + symbols[i + 1]]
    return symbols


class ByteLevelVocab(BaseVocab):
    """A byte-level BPE tokenizer (HF ``tokenizer.json`` form) as the base of an expansion."""

    kind = "byte_bpe"
    default_trainer = "hf_bpe"

    def __init__(self, data: dict[str, Any], specials: dict[str, str]) -> None:
        self.data = data
        self.specials = specials
        model = data["model"]
        self.vocab: dict[str, int] = model["vocab"]
        self.merges = [_merge_pair(m) for m in model["merges"]]
        self.ranks = {pair: rank for rank, pair in reversed(list(enumerate(self.merges)))}
        added = [t["id"] for t in data.get("added_tokens", [])]
        self.base_size = max([*self.vocab.values(), *added]) + 1
        self._base = Tokenizer.from_str(json.dumps(data))
        self._cache: tuple[tuple[str, ...], Tokenizer] | None = None
        self._base_byte_ids: set[int] | None = None

    @property
    def pre_tokenizer(self) -> dict[str, Any] | None:
        pre: dict[str, Any] | None = self.data.get("pre_tokenizer")
        return pre

    @classmethod
    def from_tekken(cls, path: Path) -> ByteLevelVocab:
        from transformers.integrations.mistral.tokenizer import MistralConverter

        try:
            tokenizer = MistralConverter(vocab_file=str(path)).converted()
        except (KeyError, ValueError, TypeError) as err:
            raise UserError(f"{path}: not a readable tekken tokenizer ({err})") from err
        return cls(json.loads(tokenizer.to_str()), dict(TEKKEN_SPECIALS))

    @classmethod
    def from_tokenizer_json(cls, path: Path, data: dict[str, Any]) -> ByteLevelVocab:
        if not _is_byte_level(data):
            kind = data.get("model", {}).get("type", "unknown")
            raise UserError(
                f"{path}: unsupported base tokenizer kind: {kind} without a ByteLevel pre-tokenizer "
                "(expected a byte-level BPE tokenizer.json, a SentencePiece BPE .model or a tekken.json)"
            )
        specials: dict[str, str] = {}
        config_path = path.with_name("tokenizer_config.json")
        if config_path.is_file():
            config = json.loads(config_path.read_text(encoding="utf-8"))
            for name in TEKKEN_SPECIALS:
                value = config.get(name)
                value = value.get("content") if isinstance(value, dict) else value
                if isinstance(value, str):
                    specials[name] = value
        return cls(data, specials)

    def key(self, token: bytes) -> str | None:
        if not token or token.isspace():
            return None
        return "".join(BYTE_ENCODER[b] for b in token)

    def in_base(self, key: str) -> bool:
        return key in self.vocab

    def _new_merges(self, keys: Sequence[str]) -> tuple[list[str], list[tuple[str, str]]]:
        """The reachable keys and the merge that builds each, in append order.

        Keys are taken in the given order; a key that needs a piece appended later (a whole
        syllable after the two-byte piece it is built from) is retried in a further pass.
        """
        ranks = dict(self.ranks)
        known = set(self.vocab)
        kept: list[str] = []
        merges: list[tuple[str, str]] = []
        pending = [key for key in dict.fromkeys(keys) if key not in known]
        while pending:
            left = []
            for key in pending:
                parts = _segment(key, ranks)
                if len(parts) != 2:
                    left.append(key)
                    continue
                ranks.setdefault((parts[0], parts[1]), len(self.merges) + len(merges))
                merges.append((parts[0], parts[1]))
                kept.append(key)
                known.add(key)
            if len(left) == len(pending):
                break
            pending = left
        return kept, merges

    def reachable(self, keys: Sequence[str]) -> dict[str, Parts]:
        kept, merges = self._new_merges(keys)
        return dict(zip(kept, merges))

    def merged_data(self, keys: Sequence[str], padded_size: int | None = None) -> dict[str, Any]:
        """The base ``tokenizer.json`` with ``keys`` (which must be reachable) and their merges added."""
        kept, merges = self._new_merges(keys)
        if kept != list(keys):
            raise ValueError("merged_data needs reachable keys; filter them with reachable() first")
        vocab = dict(self.vocab)
        data = {**self.data, "model": {**self.data["model"], "vocab": vocab}}
        for i, key in enumerate(kept):
            vocab[key] = self.base_size + i
        for i in range(self.base_size + len(kept), padded_size or 0):
            vocab[f"<|unused_vocab_{i}|>"] = i
        data["model"]["merges"] = [[a, b] for a, b in self.merges + merges]
        return data

    def _tokenizer(self, keys: Sequence[str] | None) -> Tokenizer:
        if not keys:
            return self._base
        if self._cache is None or self._cache[0] != tuple(keys):
            self._cache = (tuple(keys), Tokenizer.from_str(json.dumps(self.merged_data(keys))))
        return self._cache[1]

    def encode(self, texts: Sequence[str], keys: Sequence[str] | None) -> Encoded:
        tokenizer = self._tokenizer(keys)
        # a special token's string in a document is text, as preprocessing encodes it
        tokenizer.encode_special_tokens = True
        encodings = tokenizer.encode_batch_fast(list(texts), add_special_tokens=False)
        return [e.ids for e in encodings]

    def token_bytes(self, key: str) -> bytes:
        return bytes(BYTE_DECODER[c] for c in key)

    def _partial(self, key: str) -> bool:
        try:
            self.token_bytes(key).decode("utf-8")
        except (UnicodeDecodeError, KeyError):
            return True
        return False

    def byte_ids(self, keys: Sequence[str]) -> set[int]:
        if self._base_byte_ids is None:
            self._base_byte_ids = {i for key, i in self.vocab.items() if self._partial(key)}
        new = {self.base_size + n for n, key in enumerate(keys) if self._partial(key)}
        return self._base_byte_ids | new

    def surface(self, key: str) -> str:
        return self.token_bytes(key).decode("utf-8", errors="backslashreplace")

    def write(self, keys: Sequence[str], padded_size: int, out_dir: Path) -> None:
        from transformers import PreTrainedTokenizerFast

        tokenizer = Tokenizer.from_str(json.dumps(self.merged_data(keys, padded_size)))
        fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, **self.specials)
        save_tokenizer(fast, out_dir, tokenizer_class="PreTrainedTokenizerFast")
