"""Tier 1: data a run can trust. A corrupt or mismatched ``.bin``/``.idx`` pair, ids beyond the
model's vocabulary and an unwritable output are one-line errors; a half-published pair is redone."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from megacpt.config import load_config
from megacpt.config.validate import validate_data
from megacpt.data.indexed import validate
from megacpt.data.preprocess import PreprocessConfig, run
from megacpt.errors import UserError
from tests.data.test_preprocess import corpus_lines, mistral_model, same_files
from tests.helpers import CORPORA, write_byte_dataset


@pytest.fixture()
def shard(tmp_path: Path) -> str:
    return write_byte_dataset(tmp_path / "ko", CORPORA / "ko" / "klue_dev.jsonl", max_docs=20)


def test_ids_beyond_the_vocabulary_are_found_at_start_up(shard: str) -> None:
    config = load_config(None, [f"data.datasets=[{{prefix: {shard}}}]", "model.vocab_size=200"])
    with pytest.raises(UserError, match=r"data\.datasets\[0\]: .* holds token id 2\d\d but .* 200 tokens"):
        validate_data(config)
    validate_data(load_config(None, [f"data.datasets=[{{prefix: {shard}}}]", "model.vocab_size=256"]))
    config = load_config(
        None,
        ["data.datasets=[{prefix: x}]", f"data.valid_datasets=[{{prefix: {shard}}}]", "model.vocab_size=200"],
    )
    with pytest.raises(UserError, match=r"data\.datasets\[0\]: missing data file x\.bin"):
        validate_data(config)


@pytest.mark.parametrize(("code", "message"), [(1, "dtype code 1"), (4, "the pair is corrupt")])
def test_a_flipped_dtype_byte_in_the_index_is_refused(shard: str, code: int, message: str) -> None:
    validate(shard)
    idx = Path(shard + ".idx")
    raw = bytearray(idx.read_bytes())
    raw[17] = code  # the dtype code after magic and version: uint16 (8) -> uint8 (1) or int32 (4)
    idx.write_bytes(bytes(raw))
    with pytest.raises(UserError, match=message):
        validate(shard)


@pytest.mark.parametrize("damage", ["truncate_bin", "empty_bin", "empty_idx", "truncate_idx"])
def test_truncated_or_empty_shards_are_one_line(shard: str, damage: str) -> None:
    kind, suffix = damage.split("_")
    path = Path(f"{shard}.{suffix}")
    path.write_bytes(b"" if kind == "empty" else path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(UserError) as err:
        validate(shard)
    assert "\n" not in str(err.value)


def test_a_half_published_pair_is_found_and_redone(tmp_path: Path) -> None:
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(corpus_lines(60)), encoding="utf-8")
    other = tmp_path / "o.jsonl"
    other.write_text("".join(corpus_lines(20)), encoding="utf-8")
    out, ref = str(tmp_path / "out"), str(tmp_path / "ref")
    run(PreprocessConfig([str(corpus)], ref, mistral_model(), progress=False))
    run(PreprocessConfig([str(other)], out, mistral_model(), progress=False))
    # As a kill between the renames leaves it: the new .bin beside the old .idx, stats not yet written.
    os.replace(f"{ref}_text_document.bin", f"{out}_text_document.bin")
    os.remove(f"{out}.stats.json")
    run(PreprocessConfig([str(corpus)], ref, mistral_model(), progress=False))
    stats = run(PreprocessConfig([str(other)], out, mistral_model(), progress=False))
    assert stats["documents"] == len(corpus_lines(20))
    validate(f"{out}_text_document")
    run(PreprocessConfig([str(other)], str(tmp_path / "again"), mistral_model(), progress=False))
    assert same_files(f"{out}_text_document", f"{tmp_path / 'again'}_text_document")


def test_an_unwritable_output_is_refused_before_any_work(tmp_path: Path) -> None:
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(corpus_lines(5)), encoding="utf-8")
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(UserError, match=r"cannot write to .*a_file"):
        run(PreprocessConfig([str(corpus)], str(blocker / "out"), mistral_model(), progress=False))
    if os.geteuid() != 0:  # root writes through permissions
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        with pytest.raises(UserError, match=r"cannot write to .*locked"):
            run(PreprocessConfig([str(corpus)], str(locked / "out"), mistral_model(), progress=False))
    assert not np.any([p.name.endswith(".shards") for p in tmp_path.rglob("*")])
