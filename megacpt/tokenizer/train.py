"""Train a target-language tokenizer and return its tokens as ordered candidates.

Trainers: SentencePiece BPE or unigram (``sentencepiece``, what Swallow, EEVE and RedWhale used)
and HF ``tokenizers`` BPE (fast Rust trainer; byte-level with the base's own pre-tokenizer when
the base is byte-level, so candidates split text exactly where the base does). Candidates are
returned as UTF-8 bytes in priority order (merge order for BPE; shortest first for unigram), the
order in which they will be appended. SentencePiece is fed word counts (TSV), so optional
morpheme boundaries (``morph``) hold and large corpora are counted once in Python.
"""

from __future__ import annotations

import io
import json
import tempfile
import unicodedata
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from megacpt.errors import UserError
from megacpt.tokenizer.config import TrainConfig
from megacpt.tokenizer.merge_bpe import BYTE_DECODER
from megacpt.tokenizer.morph import Segmenter, make_segmenter, split_words

sp_pb2: Any = sentencepiece_model_pb2  # generated protobuf module: mypy cannot see its classes

SPACE = "\u2581"


def normalize(text: str, normalization: str) -> str:
    """Apply the training-text normalisation ("identity" or "nfkc")."""
    return unicodedata.normalize("NFKC", text) if normalization == "nfkc" else text


def _words(
    texts: Sequence[str], cfg: TrainConfig, segmenter: Segmenter | None, dummy_prefix: bool
) -> Iterator[str]:
    """Words with a leading space where the text has one (and at the start with ``dummy_prefix``,
    as SentencePiece bases tokenise a text's first word)."""
    for text in texts:
        first = dummy_prefix
        for line in normalize(text, cfg.normalization).split("\n"):
            for word in split_words(line, segmenter):
                body = word.lstrip()
                spaced = first or len(body) < len(word)
                first = False
                yield (" " + body) if spaced else body


def _spm_train(path: str, model: io.BytesIO, cfg: TrainConfig) -> None:
    spm.SentencePieceTrainer.train(
        input=path,
        input_format="tsv",
        model_writer=model,
        minloglevel=2,  # quiet; a logstream would need a real stderr fd
        model_type="unigram" if cfg.trainer == "sentencepiece_unigram" else "bpe",
        vocab_size=cfg.vocab_size,
        character_coverage=cfg.character_coverage,
        normalization_rule_name="identity",
        add_dummy_prefix=False,
        remove_extra_whitespaces=False,
        split_digits=True,
        byte_fallback=False,
        hard_vocab_limit=False,
        max_sentencepiece_length=cfg.max_piece_length,
        input_sentence_size=cfg.max_words,
        shuffle_input_sentence=True,
        num_threads=cfg.threads,
    )


def _train_sentencepiece(
    texts: Sequence[str], cfg: TrainConfig, segmenter: Segmenter | None, dummy_prefix: bool
) -> list[bytes]:
    counts = Counter(_words(texts, cfg, segmenter, dummy_prefix))
    model = io.BytesIO()
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", suffix=".tsv") as tsv:
        for word, count in counts.most_common():
            tsv.write(f"{word}\t{count}\n")  # words hold no whitespace but a leading space
        tsv.flush()
        try:
            _spm_train(tsv.name, model, cfg)
        except RuntimeError as err:
            # SentencePiece reports bad settings (a vocabulary smaller than the characters it must
            # keep, say) as RuntimeError with the reason after the source location.
            raise UserError(f"SentencePiece training failed: {str(err).split('] ', 1)[-1]}") from None
    proto = sp_pb2.ModelProto()
    proto.ParseFromString(model.getvalue())
    normal = [p.piece for p in proto.pieces if p.type == sp_pb2.ModelProto.SentencePiece.NORMAL]
    if cfg.trainer == "sentencepiece_unigram":
        normal.sort(key=len)  # stable: keeps score order within a length; parts come before wholes
    return [p.replace(SPACE, " ").encode("utf-8") for p in normal]


def _train_hf_bpe(
    texts: Sequence[str], cfg: TrainConfig, segmenter: Segmenter | None, pre_tokenizer: dict[str, Any] | None
) -> list[bytes]:
    tokenizer = Tokenizer(models.BPE())
    if pre_tokenizer is not None:
        tokenizer.pre_tokenizer = Tokenizer.from_str(
            json.dumps(
                {
                    "version": "1.0",
                    "model": {"type": "BPE", "vocab": {}, "merges": []},
                    "pre_tokenizer": pre_tokenizer,
                }
            )
        ).pre_tokenizer
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    else:
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Metaspace(replacement=SPACE, prepend_scheme="first"),
                pre_tokenizers.Punctuation(),
                pre_tokenizers.Digits(individual_digits=True),
            ]
        )
        alphabet = []
    trainer = trainers.BpeTrainer(
        vocab_size=cfg.vocab_size,
        min_frequency=2,
        show_progress=False,
        initial_alphabet=alphabet,
        max_token_length=cfg.max_piece_length,
    )
    if segmenter is None:
        stream: Iterator[str] = (normalize(t, cfg.normalization) for t in texts)
    else:
        stream = _words(texts, cfg, segmenter, dummy_prefix=pre_tokenizer is None)
    tokenizer.train_from_iterator(stream, trainer=trainer, length=len(texts))
    merges = json.loads(tokenizer.to_str())["model"]["merges"]
    tokens = ["".join(m.split(" ", 1) if isinstance(m, str) else m) for m in merges]
    chars = sorted(
        (t for t in tokenizer.get_vocab() if len(t) == 1), key=lambda t: tokenizer.token_to_id(t) or 0
    )
    if pre_tokenizer is not None:
        return [bytes(BYTE_DECODER[c] for c in t) for t in tokens]
    return [t.replace(SPACE, " ").encode("utf-8") for t in chars + tokens]


def train_candidates(
    texts: Sequence[str],
    cfg: TrainConfig,
    pre_tokenizer: dict[str, Any] | None = None,
    trainer: str | None = None,
) -> list[bytes]:
    """Train on ``texts`` and return the tokens as UTF-8 bytes in the order they should be appended.

    ``pre_tokenizer`` is the base's byte-level pre-tokenizer (``tokenizer.json`` form) when the base
    is byte-level; the HF trainer then splits text exactly as the base does. ``trainer`` replaces
    ``cfg.trainer`` (the resolved choice when that is ``auto``).
    """
    segmenter = make_segmenter(cfg.morph)
    trainer = trainer or cfg.trainer
    if trainer == "hf_bpe":
        return _train_hf_bpe(texts, cfg, segmenter, pre_tokenizer)
    return _train_sentencepiece(texts, cfg, segmenter, dummy_prefix=pre_tokenizer is None)
