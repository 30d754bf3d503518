"""Tokenisers for preprocessing, behind one small protocol: batch-encode document texts to ids.

Document text is always encoded as text. A special token's string inside a document (``</s>``,
``<|endoftext|>``, ``[INST]``...) becomes ordinary tokens, as SentencePiece, mistral-common and
tiktoken's ``encode_ordinary`` do it; for Hugging Face files, ``tokenizers``' added-token matching is
switched off (``encode_special_tokens``). The only control ids in a dataset are the ones
preprocessing adds itself (the end-of-document id, ``--append-eod``), so the ids of a document
never depend on the file format its tokenizer came in.

Formats (``kind``, detected by ``megacpt.tokenizer.formats.locate`` as for every other tool):
``sentencepiece`` (``.model``), ``huggingface`` (``tokenizer.json``), ``transformers`` (a directory
only ``transformers`` reads), ``tekken`` (mistral-common's ``tekken*.json``, which Megatron-LM's
TikTokenizer also reads), ``tiktoken`` (a ``.tiktoken`` rank file with a named split pattern) and ``gpt2``
(``vocab.json`` + ``merges.txt``). Each has a reference implementation (the format's own library).
When ``gigatoken`` (a Rust tokeniser several times faster) loads the same file and gives the
reference's ids on a sample of the input, it does the encoding (``backend``: which one runs).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from megacpt.atomic import write_atomic
from megacpt.cache import cache_dir
from megacpt.compat import gigatoken as gigatoken_compat
from megacpt.data import columns
from megacpt.errors import UserError
from megacpt.tokenizer.formats import locate

KINDS = ("auto", "sentencepiece", "huggingface", "tekken", "tiktoken", "gpt2")
BACKENDS = ("auto", "gigatoken", "reference")
# tiktoken's encodings whose split pattern and special tokens a .tiktoken rank file is read with.
TIKTOKEN_ENCODINGS = ("r50k_base", "p50k_base", "cl100k_base", "o200k_base")
EOS_NAMES = ("</s>", "<|endoftext|>", "<|end_of_text|>", "<eos>")
Encode = Callable[[list[str]], list[list[int]]]


@dataclass
class TextTokenizer:
    """A loaded tokenizer: its vocabulary size (added tokens included), end-of-sequence id, the
    backend that encodes, and the encoding function."""

    vocab_size: int
    eod_id: int | None
    backend: str
    encode: Encode
    gigatoken_source: tuple[str, Any] | None = None  # how gigatoken would load the same file
    specials: tuple[str, ...] = ()  # special-token strings, which documents hold as text
    # one flat array of ids and each document's length from the column's UTF-8 buffers: no Python
    # object per document or token (gigatoken)
    encode_flat: Callable[[columns.TextColumn], tuple[np.ndarray, np.ndarray]] | None = None

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return self.encode(texts)


def _sentencepiece(path: str) -> TextTokenizer:
    import sentencepiece as spm

    file = os.path.join(path, "tokenizer.model") if os.path.isdir(path) else path
    try:
        sp = spm.SentencePieceProcessor(model_file=file)
    except (OSError, RuntimeError) as err:
        raise UserError(f"cannot load SentencePiece model {file}: {err}") from err
    eos = int(sp.eos_id())
    special = [
        p.piece for p in _sentencepiece_pieces(file) if p.type in (2, 3, 4)
    ]  # unknown, control, user-defined
    return TextTokenizer(
        int(sp.get_piece_size()),
        eos if eos >= 0 else None,
        "sentencepiece",
        lambda texts: sp.encode(texts, num_threads=1),
        ("sentencepiece", file),
        tuple(special),
    )


def _sentencepiece_pieces(file: str) -> Any:
    from sentencepiece import sentencepiece_model_pb2

    proto: Any = sentencepiece_model_pb2.ModelProto()  # type: ignore[attr-defined]
    proto.ParseFromString(Path(file).read_bytes())
    return proto.pieces


def _eos_from_config(directory: str, token_to_id: Callable[[str], int | None]) -> int | None:
    """The tokenizer's own word on its eos token (``tokenizer_config.json``), else a known name."""
    config = os.path.join(directory, "tokenizer_config.json")
    names: list[object] = list(EOS_NAMES)
    if os.path.isfile(config):
        with open(config, encoding="utf-8") as f:
            eos = json.load(f).get("eos_token")
        names = [eos.get("content") if isinstance(eos, dict) else eos]
    for name in names:
        token = token_to_id(name) if isinstance(name, str) else None
        if token is not None:
            return int(token)
    return None


def _huggingface(path: str) -> TextTokenizer:
    from tokenizers import Tokenizer

    file = os.path.join(path, "tokenizer.json") if os.path.isdir(path) else path
    if not os.path.isfile(file):
        return _transformers(path)
    try:
        tok = Tokenizer.from_file(file)
    except Exception as err:  # tokenizers raises its own exception type for a bad file
        raise UserError(f"cannot load HF tokenizer {file}: {err}") from err
    tok.encode_special_tokens = True  # special-token strings in a document are text

    def encode(texts: list[str]) -> list[list[int]]:
        return [e.ids for e in tok.encode_batch_fast(texts, add_special_tokens=False)]

    eos = _eos_from_config(os.path.dirname(file), tok.token_to_id)
    return TextTokenizer(
        tok.get_vocab_size(with_added_tokens=True), eos, "tokenizers", encode, ("json", file)
    )


def _transformers(path: str) -> TextTokenizer:
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(path)
    except Exception as err:
        raise UserError(f"cannot load HF tokenizer directory {path}: {err}") from err

    def encode(texts: list[str]) -> list[list[int]]:
        return tok(texts, add_special_tokens=False, split_special_tokens=True)["input_ids"]

    return TextTokenizer(len(tok), tok.eos_token_id, "transformers", encode)


def _tekken(path: str) -> TextTokenizer:
    from mistral_common.tokens.tokenizers.tekken import Tekkenizer

    try:
        tok = Tekkenizer.from_file(path)
    except Exception as err:
        raise UserError(f"cannot load tekken tokenizer {path}: {err}") from err

    def encode(texts: list[str]) -> list[list[int]]:
        return [tok.encode(t, bos=False, eos=False) for t in texts]

    return TextTokenizer(int(tok.n_words), int(tok.eos_id), "mistral-common", encode)


def _tiktoken(path: str, encoding: str | None) -> TextTokenizer:
    """A ``.tiktoken`` rank file, split and special tokens as tiktoken's encoding of that name."""
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe
    from tiktoken_ext import openai_public

    if encoding not in TIKTOKEN_ENCODINGS:
        raise UserError(
            f"{path}: a .tiktoken rank file holds no split pattern; name its encoding with --tiktoken-pattern "
            f"({', '.join(TIKTOKEN_ENCODINGS)})"
        )
    try:
        ranks = load_tiktoken_bpe(path)
    except (ValueError, OSError) as err:
        raise UserError(f"{path}: not a .tiktoken rank file ({err})") from None
    # tiktoken's constructors hold each encoding's pattern and special tokens but fetch the ranks
    # from a URL: hand them the local ranks instead.
    fetch = openai_public.load_tiktoken_bpe
    openai_public.load_tiktoken_bpe = lambda *_args, **_kwargs: ranks
    try:
        settings = openai_public.ENCODING_CONSTRUCTORS[encoding]()
    finally:
        openai_public.load_tiktoken_bpe = fetch
    enc = tiktoken.Encoding(**settings)
    eod = settings["special_tokens"].get(openai_public.ENDOFTEXT)
    return TextTokenizer(
        enc.n_vocab, eod, "tiktoken", lambda texts: enc.encode_ordinary_batch(texts, num_threads=1)
    )


def _gpt2(vocab_file: str, merge_file: str) -> TextTokenizer:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    try:
        model = models.BPE.from_file(vocab_file, merge_file)
    except Exception as err:
        raise UserError(f"cannot load GPT-2 BPE from {vocab_file} and {merge_file}: {err}") from err
    tok = Tokenizer(model)
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()

    def encode(texts: list[str]) -> list[list[int]]:
        return [e.ids for e in tok.encode_batch_fast(texts, add_special_tokens=False)]

    eod = tok.token_to_id("<|endoftext|>")
    return TextTokenizer(tok.get_vocab_size(), eod, "tokenizers", encode)


def _gigatoken(reference: TextTokenizer) -> Any:
    """gigatoken loaded from the same file, or None when it cannot load it."""
    try:
        import gigatoken
    except ImportError:
        return None
    assert reference.gigatoken_source is not None
    try:
        return gigatoken.Tokenizer.from_json(_text_only_json(reference))
    except (RuntimeError, ValueError, OSError, KeyError, TypeError):
        return None


def _text_only_json(reference: TextTokenizer) -> bytes:
    """The tokenizer's JSON for gigatoken, its special tokens removed: gigatoken would read their
    strings in a document as the tokens, the reference reads them as text (the ids must be the
    reference's). Cached by content and gigatoken's version (``megacpt.cache``; a cache that
    cannot be written is skipped): converting a SentencePiece model is about a second of Python."""
    from importlib.metadata import version

    assert reference.gigatoken_source is not None
    kind, file = reference.gigatoken_source
    source = Path(file).read_bytes()
    key = hashlib.sha256("\0".join([kind, version("gigatoken"), *reference.specials]).encode() + source)
    cached = cache_dir() / "gigatoken" / f"{key.hexdigest()}.json"
    with contextlib.suppress(OSError):
        return cached.read_bytes()
    spec = gigatoken_compat.sentencepiece_json(source) if kind == "sentencepiece" else json.loads(source)
    specials = set(reference.specials)
    spec["added_tokens"] = [
        t for t in spec.get("added_tokens") or [] if not (t.get("special") or t.get("content") in specials)
    ]
    text = json.dumps(spec).encode()
    with contextlib.suppress(OSError):
        cached.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(cached, text)
    return text


def _flat(tok: Any) -> Callable[[columns.TextColumn], tuple[np.ndarray, np.ndarray]]:
    import awkward as ak

    def encode_flat(column: columns.TextColumn) -> tuple[np.ndarray, np.ndarray]:
        chars = ak.contents.NumpyArray(column.data, parameters={"__array__": "char"})
        strings = ak.contents.ListOffsetArray(
            ak.index.Index64(column.offsets), chars, parameters={"__array__": "string"}
        )
        layout = tok.encode_batch(ak.Array(strings)).layout  # a ListOffsetArray: offsets and ids
        return np.asarray(layout.content.data), np.diff(np.asarray(layout.offsets.data))

    return encode_flat


def load_tokenizer(
    path: str,
    kind: str = "auto",
    backend: str = "auto",
    sample: Sequence[str] = (),
    *,
    merge_file: str | None = None,
    tiktoken_encoding: str | None = None,
) -> TextTokenizer:
    """Load a tokenizer of ``kind`` (``auto``: detected); with ``backend`` ``auto``, gigatoken encodes
    when it gives the reference's ids on ``sample`` (and on the special-token strings of the file)."""
    if kind not in KINDS or backend not in BACKENDS:
        raise UserError(
            f"tokenizer kind must be one of {', '.join(KINDS)} and backend one of {', '.join(BACKENDS)}"
        )
    if kind == "auto" and merge_file is None:
        source = locate(path)  # the one detection of every tool
        kind, path = source.kind, str(source.path)
    elif kind == "auto":
        kind = "gpt2"
    if kind == "gpt2":
        if merge_file is None:
            raise UserError("a GPT-2 BPE tokenizer needs --vocab-file and --merge-file")
        return _gpt2(path, merge_file)
    loaders: dict[str, Callable[[str], TextTokenizer]] = {
        "sentencepiece": _sentencepiece,
        "huggingface": _huggingface,
        "tekken": _tekken,
        "tiktoken": lambda p: _tiktoken(p, tiktoken_encoding),
        "transformers": _transformers,
    }
    reference = loaders[kind](path)
    if backend == "reference" or reference.gigatoken_source is None:
        if backend == "gigatoken":
            raise UserError(f"gigatoken cannot read {kind} tokenizers; use --tokenizer-backend reference")
        return reference
    fast = _gigatoken(reference)
    probe = [*sample, *SPECIAL_TEXT, *reference.specials]
    if fast is not None and fast.encode_batch_list(probe) == reference.encode(probe):
        return TextTokenizer(
            reference.vocab_size,
            reference.eod_id,
            "gigatoken",
            fast.encode_batch_list,
            encode_flat=_flat(fast),
        )
    if backend == "gigatoken":
        why = "cannot load it" if fast is None else "gives other ids than the reference on the sample"
        raise UserError(f"gigatoken {why} for {path}; use --tokenizer-backend reference (or auto)")
    return reference


# Special-token strings of every supported family, and text around them: checked at start-up too.
SPECIAL_TEXT = (
    "<s> </s> <unk> <pad> [INST] [/INST] <|endoftext|> <|im_start|> <|im_end|> <|begin_of_text|>",
    "<|end_of_text|> <|eot_id|> <bos> <eos> <start_of_turn> <|fim_prefix|> <repo_name> 안녕 こんにちは",
)
