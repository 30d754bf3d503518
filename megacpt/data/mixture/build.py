"""A data mixture built into Megatron-core's blended GPT datasets: the training set blended by weight,
one validation set per language, and the fingerprint of the sample order."""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from megacpt.compat import data as data_compat
from megacpt.data.mixture.spec import DataMixture, check_split_parts, split_bounds
from megacpt.errors import UserError


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
    sizes = [check_split_parts(entry, bounds, need_valid=valid_samples > 0) for entry in mixture.entries]
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
