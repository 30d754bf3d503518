"""Settings that do not apply are refused, not silently ignored, and a result of nothing is an error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from megacpt.cli import main
from megacpt.config.loader import load_config
from megacpt.data.checks import check_dataset
from megacpt.data.config import PreprocessConfig
from megacpt.errors import UserError
from megacpt.tokenizer.config import ExpansionConfig, TrainConfig
from megacpt.tokenizer.expand import expand_vocab
from megacpt.training.stages import budget_note, resolve_stages
from tests.helpers import CORPORA, write_byte_dataset
from tests.tokenizer.tok_helpers import EN, KO, TEKKEN_BASE


def _error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit, match="^2$"):
        main(argv)
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_world_size_without_dry_run(capsys: pytest.CaptureFixture[str]) -> None:
    line = _error(["train", "no.yaml", "--world-size", "8"], capsys)
    assert line == "error: --world-size applies only with --dry-run (a real run takes torchrun's world)"


def test_min_lang_prob_without_lang(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = _error(["clean", str(KO), str(tmp_path / "out.jsonl"), "--min-lang-prob", "0.9"], capsys)
    assert line == "error: --min-lang-prob applies only with --lang (the languages to keep)"


def test_tiktoken_pattern_with_another_tokenizer(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["preprocess", "--input", "x.jsonl", "--output-prefix", "o", "--tokenizer", "tok.json",
            "--tiktoken-pattern", "cl100k_base"]  # fmt: skip
    assert (
        _error(argv, capsys) == "error: --tiktoken-pattern applies only to a .tiktoken file, not to tok.json"
    )
    with pytest.raises(
        UserError, match="^tiktoken_encoding applies only to a .tiktoken file, not to tok.json$"
    ):
        PreprocessConfig(
            inputs=["x.jsonl"], output_prefix="o", tokenizer="tok.json", tiktoken_encoding="cl100k_base"
        )


def test_a_json_key_given_twice(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["preprocess", "--input", "x.jsonl", "--output-prefix", "o", "--tokenizer", "t", "--json-keys",
            "text", "text"]  # fmt: skip
    assert _error(argv, capsys) == "error: --json-keys names a key twice: text text"


def test_target_tp_with_a_hugging_face_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "hf").mkdir()
    argv = ["resize", "--input", str(tmp_path / "hf"), "--output", str(tmp_path / "out"), "--base-tokenizer",
            "b", "--tokenizer", "t", "--target-tp", "2"]  # fmt: skip
    assert _error(argv, capsys).startswith("error: --target-tp applies only to a megacpt checkpoint input")


def test_character_coverage_with_the_byte_level_trainer(tmp_path: Path) -> None:
    config = ExpansionConfig(
        base=TEKKEN_BASE, corpus=[KO], output_dir=tmp_path / "out", train=TrainConfig(character_coverage=0.95)
    )
    with pytest.raises(UserError, match="--character-coverage applies only to the SentencePiece trainers"):
        expand_vocab(config)


def test_expansion_that_adds_nothing_is_an_error(tmp_path: Path) -> None:
    config = ExpansionConfig(base=TEKKEN_BASE, corpus=[EN], output_dir=tmp_path / "out", scripts="korean")
    with pytest.raises(
        UserError, match="^no new tokens: nothing in the corpus made of the scripts Hangul is missing"
    ):
        expand_vocab(config)
    assert not (tmp_path / "out").exists()


def test_stage_budgets_that_do_not_add_up_are_said(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stages = "schedule.stages=[{name: a, steps: 2, train: {input_embeddings: new, output_layer: new, layers: none}}, {name: b, steps: 5}]"
    config = load_config(None, [stages, "training.train_steps=10", "schedule.old_vocab_size=100"])
    assert budget_note(resolve_stages(config), config) == (
        "note: the stages add up to 2 + 5 = 7 steps, not training.train_steps (10): the run lasts 7 steps"
    )
    config = load_config(None, [stages, "training.train_steps=7", "schedule.old_vocab_size=100"])
    assert budget_note(resolve_stages(config), config) is None


def test_eod_id_must_match_the_dataset_s(tmp_path: Path) -> None:
    prefix = write_byte_dataset(tmp_path / "ko_text_document", CORPORA / "ko" / "klue_dev.jsonl", max_docs=20)
    stats = {
        "per_key": {"text": {"dataset": prefix, "max_token_id": 255}},
        "settings": {"eod_id": 1, "append_eod": True},
    }
    (tmp_path / "ko.stats.json").write_text(json.dumps(stats))
    check_dataset(prefix, 256, "data.datasets[0]", eod_id=1)
    with pytest.raises(
        UserError, match="ends its documents with id 1 .* but data.eod_id is 2: set data.eod_id=1"
    ):
        check_dataset(prefix, 256, "data.datasets[0]", eod_id=2)


def test_ctrl_c_is_one_line_and_status_130(capsys: pytest.CaptureFixture[str]) -> None:
    from megacpt.errors import INTERRUPTED, exits_on_user_error

    @exits_on_user_error
    def tool() -> None:
        raise KeyboardInterrupt

    with pytest.raises(SystemExit, match=f"^{INTERRUPTED}$"):
        tool()
    assert capsys.readouterr().err == "error: interrupted; no output was half-written\n"
