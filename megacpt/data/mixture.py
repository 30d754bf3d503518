"""Data mixtures: a YAML spec of tokenised datasets, built into Megatron-core blended GPT datasets.

A mixture lists ``.bin``/``.idx`` prefixes, each with a language tag and a **weight**. Weights are
*sampling shares*, never sizes: after normalisation over all entries, ``weight`` is the fraction of
training samples (and so of training tokens, every sample being ``seq_length`` tokens) drawn from
that dataset, however large or small the dataset is. A small dataset with a large weight is repeated
(several epochs); a large dataset with a small weight is only partly seen. ``token_budget_table``
shows both numbers for a given token budget before anyone trains.

The build is Megatron-core's own (``BlendedMegatronDatasetBuilder`` + ``GPTDataset`` +
``BlendedDataset``), so the shards and index caches are exactly what Megatron-LM reads and writes.
The training set blends every entry by weight; validation is one set per language tag (entries of a
language blended by their weights) so a run can report Korean, Japanese and English loss apart.

The sample order is a pure function of the mixture (names, languages, normalised weights), each
dataset's document and token counts, the seed, sequence length, split and sample counts; it does
not depend on where the data or the index caches live. ``GPTDatasets.fingerprint`` hashes exactly
those inputs, so a trainer that stores it with its checkpoints can refuse a resume whose blend (or
data) silently changed.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from megacpt.compat import data as data_compat
from megacpt.config.loader import from_dict
from megacpt.config.schema import DatasetEntry
from megacpt.data.indexed import validate
from megacpt.errors import UserError
from megacpt.yamlfile import read_yaml

_IDX_HEADER = b"MMIDIDX\x00\x00"


@dataclass
class MixtureSpec:
    """A mixture file: ``datasets``, each a ``DatasetEntry`` as in a run config's ``data.datasets``."""

    datasets: list[DatasetEntry] = field(default_factory=list)


@dataclass(frozen=True)
class DataMixture:
    """A validated list of datasets with sampling weights and language tags."""

    entries: tuple[DatasetEntry, ...]

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> DataMixture:
        """Read a spec ``{datasets: [{prefix, weight, lang?, name?}, ...]}`` with the run config's
        typed loader; relative prefixes resolve against the spec file's folder."""
        path = os.fspath(path)
        spec = read_yaml(path)
        try:
            if isinstance(spec, dict) and isinstance(spec.get("datasets"), list):
                _require_weights(spec["datasets"])
            entries = from_dict(MixtureSpec, spec).datasets
            return cls.of(entries, base_dir=os.path.dirname(os.path.abspath(path)))
        except UserError as err:
            raise UserError(f"{path}: {err}") from None

    @classmethod
    def from_list(cls, items: list[dict], base_dir: str | None = None) -> DataMixture:
        """Validate entries given as dicts (as in the YAML spec)."""
        _require_weights(items)
        return cls.of(from_dict(MixtureSpec, {"datasets": items}).datasets, base_dir)

    @classmethod
    def of(cls, entries: list[DatasetEntry], base_dir: str | None = None) -> DataMixture:
        """The mixture of ``entries``: suffixes dropped, relative prefixes resolved against
        ``base_dir``, each named (by default its prefix's file name), names unique."""
        if not entries:
            raise UserError("a data mixture needs at least one dataset")
        resolved = []
        for entry in entries:
            prefix = entry.prefix.removesuffix(".bin").removesuffix(".idx")
            if base_dir is not None and not os.path.isabs(prefix):
                prefix = os.path.normpath(os.path.join(base_dir, prefix))
            name = entry.name or os.path.basename(prefix)
            resolved.append(dataclasses.replace(entry, prefix=prefix, name=name))
        names = [e.name for e in resolved]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise UserError(
                f"dataset names must be unique; repeated: {dupes} (set 'name' to tell them apart)"
            )
        return cls(tuple(resolved))

    def languages(self) -> list[str]:
        """Language tags in order of first appearance."""
        return list(dict.fromkeys(e.lang for e in self.entries))

    def shares(self) -> list[float]:
        """Weights normalised to sum to 1: each entry's share of sampled tokens."""
        total = math.fsum(e.weight for e in self.entries)
        return [e.weight / total for e in self.entries]

    def check_files(self) -> None:
        """Raise ``UserError`` naming the first missing or unreadable ``.bin``/``.idx`` file."""
        for e in self.entries:
            for path in (e.idx_path, e.bin_path):
                if not os.path.isfile(path):
                    raise UserError(
                        f"dataset '{e.name}': missing file {path} (tokenise the text first: tools/preprocess_data.py; "
                        "for examples/data_mixture.yaml, bash scripts/example_shards.sh)"
                    )
            with open(e.idx_path, "rb") as f:
                head = f.read(len(_IDX_HEADER) + 8)
            if head[: len(_IDX_HEADER)] != _IDX_HEADER or head[len(_IDX_HEADER) :] != (1).to_bytes(
                8, "little"
            ):
                raise UserError(
                    f"dataset '{e.name}': {e.idx_path} is not a Megatron indexed-dataset index (v1)"
                )

    def fingerprint(self) -> str:
        """A hash of names, prefixes' basenames, languages and normalised weights."""
        desc = [
            [e.name, os.path.basename(e.prefix), e.lang, round(s, 12)]
            for e, s in zip(self.entries, self.shares())
        ]
        return hashlib.sha256(json.dumps(desc).encode()).hexdigest()[:16]


def _require_weights(items: list[Any]) -> None:
    """A mixture states every dataset's share: ``weight`` has no default here."""
    for i, item in enumerate(items):
        if isinstance(item, dict) and "weight" not in item:
            raise UserError(f"datasets[{i}]: missing required key 'weight' (a sampling share)")


@dataclass(frozen=True)
class BudgetRow:
    """One dataset's part of a training-token budget."""

    name: str
    lang: str
    weight: float  # normalised share of sampled tokens
    tokens: int  # tokens this dataset contributes to the budget
    dataset_tokens: int  # tokens available in (the train split of) this dataset
    epochs: float  # tokens / dataset_tokens: how many passes over the dataset that is


def split_bounds(split: str) -> list[tuple[float, float] | None]:
    from megatron.core.datasets.blended_megatron_dataset_config import (
        convert_split_vector_to_split_matrix,
        parse_and_normalize_split,
    )

    parts = [p.strip() for p in split.split(",")]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise UserError(f"split must be comma-separated numbers like '98,2,0', got {split!r}") from None
    if not 1 <= len(values) <= 3 or any(v < 0 or not math.isfinite(v) for v in values) or sum(values) <= 0:
        raise UserError(
            f"split must be 1 to 3 non-negative numbers (train,valid,test) with a positive sum, got {split!r}"
        )
    return convert_split_vector_to_split_matrix(parse_and_normalize_split(split))


def _sequence_lengths(entry: DatasetEntry) -> np.ndarray:
    """The dataset's sequence lengths, once its ``.idx``/``.bin`` pair is checked whole (a truncated
    or mismatched pair is an error, not a token count)."""
    return np.array(validate(entry.prefix).sequence_lengths, copy=True)  # a copy: not the index's mmap


def _check_split_parts(
    entry: DatasetEntry, bounds: list[tuple[float, float] | None], need_valid: bool
) -> tuple[int, int]:
    """Refuse a split part without tokens (Megatron would loop forever on it); return the dataset's
    document and token counts, which the sample order depends on."""
    lengths = _sequence_lengths(entry)
    for i, part in enumerate(("train", "valid")):
        if part == "valid" and not need_valid:
            continue
        beg, end = (round(b * len(lengths)) for b in bounds[i] or (0.0, 0.0))
        if int(lengths[beg:end].sum()) == 0:
            raise UserError(
                f"dataset '{entry.name}' has {len(lengths)} documents: the split leaves its {part} part empty; "
                "give it more documents or a larger share of the split"
            )
    return len(lengths), int(lengths.sum())


def check_training_part(prefix: str, split: str, where: str) -> None:
    """Raise ``UserError`` (naming ``where``) when ``split`` leaves the dataset no training tokens."""
    bounds = split_bounds(split)
    if bounds[0] is None:
        raise UserError(f"data.split {split!r} leaves no documents for training")
    try:
        _check_split_parts(DatasetEntry(prefix, name=os.path.basename(prefix)), bounds, need_valid=False)
    except UserError as err:
        raise UserError(f"{where}: {err} (data.split {split})") from None


def token_budget_table(mixture: DataMixture, total_tokens: int, split: str | None = None) -> list[BudgetRow]:
    """Each dataset's share of ``total_tokens`` and the epochs over it that the share means.

    With ``split`` (e.g. ``"98,2,0"``), ``dataset_tokens`` counts only the documents of the train
    split, the part that training actually draws from, as Megatron carves it.
    """
    if total_tokens <= 0:
        raise UserError(f"the token budget must be positive, got {total_tokens}")
    mixture.check_files()
    train_bounds = split_bounds(split)[0] if split is not None else (0.0, 1.0)
    rows = []
    for entry, share in zip(mixture.entries, mixture.shares()):
        lengths = _sequence_lengths(entry)
        beg, end = (round(b * len(lengths)) for b in train_bounds or (0.0, 0.0))
        available = int(lengths[beg:end].sum())
        if not available and share > 0:
            raise UserError(
                f"dataset '{entry.name}' has {len(lengths)} documents: the split {split} leaves none of them "
                "to train on; give the train part a share"
            )
        tokens = round(total_tokens * share)
        epochs = tokens / available if available else 0.0
        rows.append(BudgetRow(entry.name, entry.lang, share, tokens, available, epochs))
    return rows


def parse_token_count(text: str) -> int:
    """Read a token count such as ``2000000``, ``2e9``, ``500M``, ``100B`` or ``1.5T``."""
    scale = {"K": 10**3, "M": 10**6, "B": 10**9, "G": 10**9, "T": 10**12}
    body = text.strip().replace("_", "").replace(",", "")
    factor = scale.get(body[-1:].upper(), 1)
    if factor != 1:
        body = body[:-1]
    try:
        value = float(body) * factor
    except ValueError:
        raise UserError(f"not a token count: {text!r} (examples: 2000000, 2e9, 500M, 100B)") from None
    if not math.isfinite(value) or value < 1:
        raise UserError(f"a token count must be at least 1, got {text!r}")
    return round(value)


def format_budget_table(rows: list[BudgetRow]) -> str:
    """A plain-text table of a token budget, with a total line."""
    header = ("dataset", "lang", "share", "tokens", "dataset tokens", "epochs")
    body = [
        (r.name, r.lang, f"{r.weight:.2%}", f"{r.tokens:,}", f"{r.dataset_tokens:,}", f"{r.epochs:.2f}")
        for r in rows
    ]
    total = sum(r.tokens for r in rows)
    body.append(("total", "", "100.00%", f"{total:,}", f"{sum(r.dataset_tokens for r in rows):,}", ""))
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
        for row in [header, *body]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.insert(len(lines) - 1, lines[1])
    return "\n".join(line.rstrip() for line in lines)


class _IdTokenizer:
    """What ``GPTDataset`` reads from a tokenizer: the end-of-document and padding ids.

    Megatron's datasets never tokenise; the ids only mark document ends and mask padding. Pad must
    differ from eod, or Megatron stops masking pad tokens (it warns and uses -1).
    """

    def __init__(self, eod_id: int, pad_id: int, vocab_size: int | None = None) -> None:
        self.eod = eod_id
        self.eos = eod_id
        self.pad = pad_id
        self.vocab_size = vocab_size
        self.unique_identifiers = {"class": "IdTokenizer", "eod": eod_id, "pad": pad_id}


@dataclass
class GPTDatasets:
    """The datasets a trainer iterates; items are dicts of ``tokens``, ``labels``, ``loss_mask``,
    ``position_ids`` (each ``seq_length`` long), plus ``dataset_id`` where several datasets blend.
    Each set holds at least the number of samples asked for."""

    train: torch.utils.data.Dataset  # blended by weight
    valid: dict[
        str, torch.utils.data.Dataset
    ]  # one validation set per language tag (blended within a language)
    fingerprint: str = ""  # changes iff the sample order may change: store it with checkpoints


def _config(
    prefixes: list[str],
    weights: list[float] | None,
    split: str,
    keep: int,
    *,
    seq_length: int,
    seed: int,
    tokenizer: _IdTokenizer,
    cache_dir: str | None,
) -> Any:
    """A ``GPTDatasetConfig`` whose split matrix keeps only split number ``keep`` (0 train, 1 valid)."""
    from megatron.core.datasets.gpt_dataset import GPTDatasetConfig

    config = GPTDatasetConfig(
        random_seed=seed,
        sequence_length=seq_length,
        blend=(prefixes, weights),
        split=split,
        path_to_cache=cache_dir,
        tokenizer=tokenizer,
        reset_position_ids=False,
        reset_attention_mask=False,
        eod_mask_loss=False,
        create_attention_mask=False,
    )
    return data_compat.keep_only_split(config, keep)


def _build_one(config: Any, sizes: list[int], build_on_this_rank: Callable[[], bool]) -> Any:
    from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
    from megatron.core.datasets.gpt_dataset import GPTDataset

    with data_compat.single_process_rank():
        return BlendedMegatronDatasetBuilder(GPTDataset, sizes, build_on_this_rank, config).build()


def build_gpt_datasets(
    mixture: DataMixture,
    *,
    seq_length: int,
    seed: int,
    split: str,
    train_samples: int,
    valid_samples: int,
    eod_id: int,
    pad_id: int,
    cache_dir: str | None,
    build_on_this_rank: bool = True,
) -> GPTDatasets:
    """Build the blended train set (``train_samples`` samples) and one validation set per language
    (``valid_samples`` samples each) with Megatron-core's builder.

    ``split`` (``"train,valid,test"``, e.g. ``"98,2,0"``) carves each dataset's documents as
    Megatron does, so train and valid never share a document. Index caches go to ``cache_dir``
    (default: beside each dataset, like Megatron). Under torch.distributed, call on every rank:
    rank 0 builds the caches first; a rank with ``build_on_this_rank=False`` gets ``None`` sets.
    """
    if seq_length <= 0 or train_samples <= 0 or valid_samples < 0:
        raise UserError(
            f"need seq_length > 0, train_samples > 0, valid_samples >= 0; got {seq_length}, {train_samples}, {valid_samples}"
        )
    if eod_id == pad_id:
        raise UserError(
            f"pad id must differ from the end-of-document id ({eod_id}), or padding is trained on"
        )
    bounds = split_bounds(split)
    if bounds[0] is None:
        raise UserError(f"split {split!r} leaves no documents for training")
    if valid_samples and bounds[1] is None:
        raise UserError(
            f"split {split!r} leaves no documents for validation but valid_samples={valid_samples}"
        )
    mixture.check_files()
    sizes = [_check_split_parts(entry, bounds, need_valid=valid_samples > 0) for entry in mixture.entries]
    if cache_dir is not None:
        os.makedirs(cache_dir, exist_ok=True)
    tokenizer = _IdTokenizer(eod_id, pad_id)
    common = functools.partial(
        _config, seq_length=seq_length, seed=seed, tokenizer=tokenizer, cache_dir=cache_dir
    )
    on_rank = lambda: build_on_this_rank  # noqa: E731
    prefixes = [e.prefix for e in mixture.entries]
    weights = [e.weight for e in mixture.entries]
    # A single dataset with weights would still be wrapped in a BlendedDataset; without, it is not.
    train_cfg = common(prefixes, weights if len(prefixes) > 1 else None, split, 0)
    train = _build_one(train_cfg, [train_samples, 0, 0], on_rank)[0]
    valid: dict[str, torch.utils.data.Dataset] = {}
    if valid_samples:
        for lang in mixture.languages():
            members = [e for e in mixture.entries if e.lang == lang]
            lang_weights = [e.weight for e in members] if len(members) > 1 else None
            cfg = common([e.prefix for e in members], lang_weights, split, 1)
            valid[lang] = _build_one(cfg, [0, valid_samples, 0], on_rank)[1]
    order = {
        "mixture": mixture.fingerprint(),
        "dataset_sizes": sizes,
        "seq_length": seq_length,
        "seed": seed,
        "split": bounds,
        "train_samples": train_samples,
        "valid_samples": valid_samples,
        "eod": eod_id,
        "pad": pad_id,
    }
    fingerprint = hashlib.sha256(json.dumps(order).encode()).hexdigest()[:16]
    return GPTDatasets(train=train, valid=valid, fingerprint=fingerprint)
