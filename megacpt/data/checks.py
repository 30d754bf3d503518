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


def _recorded(prefix: str) -> tuple[dict, dict] | None:
    """(the preprocessing stats file, its entry for this dataset), when the dataset has one."""
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
        return stats, entry
    except (OSError, ValueError, KeyError, TypeError):
        return None


def recorded_max_id(prefix: str) -> int | None:
    """The largest token id the preprocessing stats file records for this dataset, if any."""
    recorded = _recorded(prefix)
    try:
        return None if recorded is None else int(recorded[1]["max_token_id"])
    except (KeyError, TypeError, ValueError):
        return None


def recorded_eod_id(prefix: str) -> int | None:
    """The end-of-document id preprocessing appended to every document, if the stats file says so."""
    recorded = _recorded(prefix)
    try:
        settings = None if recorded is None else recorded[0]["settings"]
        return int(settings["eod_id"]) if settings and settings.get("append_eod") else None
    except (KeyError, TypeError, ValueError):
        return None


def check_dataset(prefix: str, vocab_size: int, where: str, eod_id: int | None = None) -> None:
    """Raise ``UserError`` (naming ``where``) for a corrupt dataset, one with ids outside the vocabulary,
    or one whose documents end in another id than ``eod_id`` (the run's ``data.eod_id``)."""
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
    appended = recorded_eod_id(prefix)
    if eod_id is not None and appended is not None and appended != eod_id:
        raise UserError(
            f"{where}: {prefix} ends its documents with id {appended} (its stats file) but data.eod_id is "
            f"{eod_id}: set data.eod_id={appended}, or tokenise it again"
        )
