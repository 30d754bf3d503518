"""Start-up checks of the datasets a run will read: readable, consistent, and inside the vocabulary.

A shard tokenised with another tokenizer holds ids the model has no row for: Megatron would fail
with an index error deep in a step, or (when vocabulary padding hides them) train on garbage and
log ``loss: null``. The largest id comes from the preprocessing stats file when the dataset has one
(``<output_prefix>.stats.json``, ``per_key.<key>.max_token_id``), else from a scan of the ``.bin``.
"""

from __future__ import annotations

import json
import os
import re

from megacpt.data.indexed import max_token_id, validate
from megacpt.errors import UserError

_DATASET_NAME = re.compile(r"^(?P<output>.+)_(?P<key>[^_/]+)_document$")


def recorded_max_id(prefix: str) -> int | None:
    """The largest token id the preprocessing stats file records for this dataset, if any."""
    match = _DATASET_NAME.match(prefix)
    if match is None:
        return None
    stats_file = match["output"] + ".stats.json"
    if not os.path.isfile(stats_file):
        return None
    try:
        with open(stats_file, encoding="utf-8") as handle:
            stats = json.load(handle)
        entry = stats["per_key"][match["key"]]
        if os.path.realpath(entry["dataset"]) != os.path.realpath(prefix):
            return None
        return int(entry["max_token_id"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def check_dataset(prefix: str, vocab_size: int, where: str) -> None:
    """Raise ``UserError`` (naming ``where``) for a corrupt dataset or one with ids outside the vocabulary."""
    try:
        validate(prefix)
    except UserError as err:
        raise UserError(f"{where}: {err}") from None
    largest = recorded_max_id(prefix)
    if largest is None:
        largest = max_token_id(prefix)
    if largest >= vocab_size:
        raise UserError(
            f"{where}: {prefix} holds token id {largest:,} but the model's vocabulary has {vocab_size:,} tokens "
            "(model.vocab_size): it was tokenised with another tokenizer"
        )
