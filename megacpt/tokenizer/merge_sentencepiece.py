"""Append pieces to a SentencePiece BPE model (Llama 2, Mistral, SOLAR) by editing its proto.

New pieces are NORMAL pieces appended after the last base piece, with scores below every base
score, so they are real vocabulary the BPE encoder reaches by merging, not user-defined pieces
that bypass it; byte fallback and every base piece (id, string, score, type) are kept. Because
new merges rank last, text the base already covers with its own merges is tokenised as before.

SentencePiece's BPE encoder merges the adjacent pair whose concatenation has the highest score.
A new piece can only be produced if the base (plus earlier new pieces) splits its characters into
exactly two pieces, so ``reachable`` simulates that and drops pieces that could never appear.
The HF ``tokenizer.json`` is made by transformers' own converter from the merged ``.model``, with
its merges re-ranked by piece score (``generate_merges``) so that it tokenises as the ``.model``.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2
from transformers.convert_slow_tokenizer import generate_merges

from megacpt.errors import UserError
from megacpt.tokenizer.base import BaseVocab, Encoded, Parts
from megacpt.tokenizer.hf_files import save_tokenizer

sp_pb2: Any = sentencepiece_model_pb2  # generated protobuf module: mypy cannot see its classes

SPACE = "\u2581"
NORMAL = sp_pb2.ModelProto.SentencePiece.NORMAL
USER_DEFINED = sp_pb2.ModelProto.SentencePiece.USER_DEFINED
UNUSED = sp_pb2.ModelProto.SentencePiece.UNUSED
BYTE = sp_pb2.ModelProto.SentencePiece.BYTE


def _segment(piece: str, scores: dict[str, float]) -> list[str]:
    """SentencePiece BPE on one piece's characters: merge the best-scoring adjacent pair until none."""
    symbols = list(piece)
    while len(symbols) > 1:
        best, best_score = -1, -np.inf
        for i in range(len(symbols) - 1):
            score = scores.get(symbols[i] + symbols[i + 1])
            if score is not None and score > best_score:
                best, best_score = i, score
        if best < 0:
            break
        symbols[best : best + 2] = [symbols[best] + symbols[best + 1]]
    return symbols


class SentencePieceVocab(BaseVocab):
    """A SentencePiece BPE model as the base of an expansion."""

    kind = "sentencepiece"
    default_trainer = "sentencepiece_bpe"

    def __init__(self, proto: Any) -> None:
        self.proto = proto
        self.base_size = len(proto.pieces)
        self.pieces = {p.piece: i for i, p in enumerate(proto.pieces)}
        self.scores = {p.piece: p.score for p in proto.pieces if p.type in (NORMAL, USER_DEFINED)}
        normal = [p.score for p in proto.pieces if p.type == NORMAL]
        # Scores after the last base piece, one apart; float32 must keep them distinct.
        self.next_score = float(normal[-1] if normal else 0.0) - 1.0
        self._base_sp = spm.SentencePieceProcessor(model_proto=proto.SerializeToString())

    @classmethod
    def load(cls, path: Path) -> SentencePieceVocab:
        proto = sp_pb2.ModelProto()
        try:
            proto.ParseFromString(path.read_bytes())
        except Exception as err:
            raise UserError(f"{path}: not a SentencePiece model or tokenizer.json ({err})") from err
        if not proto.pieces:
            raise UserError(f"{path}: not a SentencePiece model (no pieces)")
        if proto.trainer_spec.model_type != sp_pb2.TrainerSpec.BPE:
            kind = sp_pb2.TrainerSpec.ModelType.Name(proto.trainer_spec.model_type)
            raise UserError(
                f"{path}: unsupported base tokenizer kind: SentencePiece {kind} (only BPE models)"
            )
        return cls(proto)

    def key(self, token: bytes) -> str | None:
        try:
            text = token.decode("utf-8")
        except UnicodeDecodeError:
            return None
        if not text or text.isspace() or "\n" in text:
            return None
        return text.replace(" ", SPACE)

    def in_base(self, key: str) -> bool:
        return key in self.pieces

    def _new_scores(self, count: int) -> list[float]:
        scores = [self.next_score - i for i in range(count)]
        if len(set(np.asarray(scores, dtype=np.float32).tolist())) != count:
            raise UserError("base model scores are too large in magnitude to append distinct scores")
        return scores

    def reachable(self, keys: Sequence[str]) -> dict[str, Parts]:
        scores = dict(self.scores)
        kept: dict[str, Parts] = {}
        for key in keys:
            if key in scores or key in self.pieces:
                continue
            parts = _segment(key, scores)
            if len(parts) <= 2:
                kept[key] = (parts[0], parts[1]) if len(parts) == 2 else None
                scores[key] = self.next_score - len(kept) + 1
        return kept

    def merged_proto(self, keys: Sequence[str], padded_size: int | None = None) -> Any:
        """The base proto with ``keys`` appended (and UNUSED padding pieces up to ``padded_size``)."""
        proto = sp_pb2.ModelProto()
        proto.CopyFrom(self.proto)
        for key, score in zip(keys, self._new_scores(len(keys))):
            proto.pieces.add(piece=key, score=score, type=NORMAL)
        total = len(proto.pieces)
        for i in range((padded_size or total) - total):
            proto.pieces.add(piece=f"<unused_vocab_{i}>", score=0.0, type=UNUSED)
        return proto

    def encode(self, texts: Sequence[str], keys: Sequence[str] | None) -> Encoded:
        sp = self._base_sp
        if keys:
            sp = spm.SentencePieceProcessor(model_proto=self.merged_proto(keys).SerializeToString())
        return sp.encode(list(texts), num_threads=os.cpu_count() or 1)

    def byte_ids(self, keys: Sequence[str]) -> set[int]:
        return {i for i, p in enumerate(self.proto.pieces) if p.type == BYTE}

    def surface(self, key: str) -> str:
        return key.replace(SPACE, " ")

    def write(self, keys: Sequence[str], padded_size: int, out_dir: Path) -> None:
        from transformers import AutoTokenizer

        proto = self.merged_proto(keys, padded_size)
        with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
            (Path(tmp) / "tokenizer.model").write_bytes(proto.SerializeToString())
            config = {"tokenizer_class": "LlamaTokenizer", "legacy": False, "add_prefix_space": None}
            (Path(tmp) / "tokenizer_config.json").write_text(json.dumps(config))
            save_tokenizer(AutoTokenizer.from_pretrained(tmp, local_files_only=True), out_dir)
        (out_dir / "tokenizer.model").write_bytes(proto.SerializeToString())
        # transformers 5 ranks merges by piece id, which puts Mistral's "▁▁" pieces (score -1e9)
        # first and disagrees with the .model on repeated spaces; rank them by score, as SP does.
        data = json.loads((out_dir / "tokenizer.json").read_text(encoding="utf-8"))
        vocab = {p.piece: i for i, p in enumerate(proto.pieces)}
        scores = {p.piece: p.score for p in proto.pieces if p.type in (NORMAL, USER_DEFINED)}
        data["model"]["merges"] = [list(m) for m in generate_merges(vocab, scores)]
        (out_dir / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
