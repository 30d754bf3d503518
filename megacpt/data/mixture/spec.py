"""A data mixture's spec: its datasets (``DatasetEntry``, read by the run config's typed loader), the
train/valid/test split as Megatron carves it, and the checks of each dataset's files."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

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


def sequence_lengths(entry: DatasetEntry) -> np.ndarray:
    """The dataset's sequence lengths, once its ``.idx``/``.bin`` pair is checked whole (a truncated
    or mismatched pair is an error, not a token count)."""
    return np.array(validate(entry.prefix).sequence_lengths, copy=True)  # a copy: not the index's mmap


def check_split_parts(
    entry: DatasetEntry, bounds: list[tuple[float, float] | None], need_valid: bool
) -> tuple[int, int]:
    """Refuse a split part without tokens (Megatron would loop forever on it); return the dataset's
    document and token counts, which the sample order depends on."""
    lengths = sequence_lengths(entry)
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
        check_split_parts(DatasetEntry(prefix, name=os.path.basename(prefix)), bounds, need_valid=False)
    except UserError as err:
        raise UserError(f"{where}: {err} (data.split {split})") from None
