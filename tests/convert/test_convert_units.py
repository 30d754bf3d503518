"""Layout maps, family configs, init formulas and the tools' one-line errors (no processes spawned)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from megacpt.atomic import HF_MODEL, atomic_directory
from megacpt.config.validate import check_model_split
from megacpt.convert import families as fam
from megacpt.convert.cli import convert_main, resize_main
from megacpt.convert.methods import PRESETS, resolve_methods
from megacpt.convert.resize import Expansion, new_rows, resize_table
from megacpt.errors import UserError

LLAMA3 = {
    "model_type": "llama",
    "hidden_size": 64,
    "intermediate_size": 96,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 250,
    "max_position_embeddings": 128,
    "rms_norm_eps": 1e-5,
    "hidden_act": "silu",
    "rope_theta": 500000.0,
    "rope_scaling": {
        "rope_type": "llama3",
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
    },
}  # transformers 4.x style keys, as on the Hub


def test_grouped_qkv_layout() -> None:
    m = fam.model_config(dict(LLAMA3, hidden_size=4, num_attention_heads=4, num_key_value_heads=2))
    # head_dim 1: query heads 0..3, key heads 10, 11, value heads 20, 21 (one row each)
    q, k, v = torch.arange(4.0), torch.tensor([10.0, 11.0]), torch.tensor([20.0, 21.0])
    fused = fam.fuse_qkv(q, k, v, m)
    assert fused.tolist() == [0, 1, 10, 20, 2, 3, 11, 21]  # per group: its queries, its key, its value
    assert all(torch.equal(a, b) for a, b in zip(fam.split_qkv(fused, m), (q, k, v)))


def test_family_configs() -> None:
    m = fam.model_config(LLAMA3)
    assert (m.num_query_groups, m.kv_channels, m.rotary_base) == (2, 16, 500000.0)
    assert m.rope_scaling is not None and m.rope_scaling.original_max_position_embeddings == 8192
    qwen = fam.model_config(dict(LLAMA3, model_type="qwen2", rope_scaling=None, tie_word_embeddings=True))
    assert qwen.add_qkv_bias and qwen.tie_embeddings and qwen.rope_scaling is None
    mistral = fam.model_config(dict(LLAMA3, model_type="mistral", rope_scaling=None, sliding_window=64))
    assert mistral.max_position_embeddings == 64  # full attention is exact only within the window


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model_type": "gpt2"}, "unsupported architecture 'gpt2'"),
        ({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, "unsupported RoPE scaling 'yarn'"),
        ({"hidden_act": "gelu"}, "unsupported activation"),
    ],
)
def test_unsupported_models(change: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        fam.model_config(dict(LLAMA3, **change))


@pytest.mark.parametrize(
    ("tp", "pp", "message"),
    [
        (4, 1, "does not divide num_query_groups 2"),
        (3, 1, "does not divide num_attention_heads"),
        (1, 3, "num_layers 4 is not divisible"),
    ],
)
def test_layout_errors(tp: int, pp: int, message: str) -> None:
    with pytest.raises(UserError, match=message):
        check_model_split(fam.model_config(LLAMA3), tp, pp)
    check_model_split(fam.model_config(LLAMA3), 2, 2)


def test_init_formulas() -> None:
    old = torch.tensor([[1.0, 2.0], [3.0, 6.0], [5.0, 1.0]])
    pieces = [[0, 2], [1], []]
    assert new_rows("subword_mean", old, pieces).tolist() == [[3.0, 1.5], [3.0, 6.0], [3.0, 3.0]]
    assert new_rows("subword_first", old, pieces).tolist() == [[1.0, 2.0], [3.0, 6.0], [3.0, 3.0]]
    assert new_rows("mean", old, pieces).tolist() == [[3.0, 3.0]] * 3
    big = torch.randn(5000, 8) * 0.5
    rows = new_rows("random", big, [[0]] * 4000, seed=3)
    assert abs(rows.std().item() - big.std().item()) < 0.02
    assert torch.equal(rows, new_rows("random", big, [[0]] * 4000, seed=3))
    table = resize_table(torch.cat([old, torch.zeros(1, 2)]), Expansion(3, 5, [[0], [1]]), "subword_first", 8)
    assert table.shape == (8, 2) and torch.equal(table[:3], old) and not table[5:].any()


def test_presets() -> None:
    assert resolve_methods("eeve", None, None) == ("subword_mean", "subword_first")
    assert resolve_methods("swallow", None, "random") == ("subword_mean", "random")
    assert set(PRESETS) == {"swallow", "eeve", "redwhale"}
    with pytest.raises(UserError, match="unknown preset"):
        resolve_methods("nope", None, None)


def test_atomic_directory(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="^killed$"), atomic_directory(tmp_path / "out", HF_MODEL) as tmp:
        (tmp / "half").write_text("x")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("x")
    with pytest.raises(UserError, match="already exists"), atomic_directory(tmp_path / "out", HF_MODEL):
        pass


def _fake_hf(directory: Path, **change: object) -> Path:
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps(dict(LLAMA3, **change)))
    save_file({"model.norm.weight": torch.ones(64)}, str(directory / "model.safetensors"))
    return directory


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["hf-to-megatron", "--input", "{gpt2}", "--output", "{out}"], "unsupported architecture 'gpt2'"),
        (
            ["hf-to-megatron", "--input", "{llama}", "--output", "{out}", "--target-tp", "3"],
            "does not divide",
        ),
        (["hf-to-megatron", "--input", "{out}", "--output", "{out2}"], "no config.json"),
        (["megatron-to-hf", "--input", "{llama}", "--output", "{out}"], "not a megacpt checkpoint"),
        (["hf-to-megatron", "--input", "{broken}", "--output", "{out}"], "not a readable safetensors file"),
    ],
)
def test_convert_tool_errors(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    paths = {
        "gpt2": _fake_hf(tmp_path / "gpt2", model_type="gpt2"),
        "llama": _fake_hf(tmp_path / "llama"),
        "broken": _fake_hf(tmp_path / "broken"),
        "out": tmp_path / "out",
        "out2": tmp_path / "out2",
    }
    (paths["broken"] / "model.safetensors").write_bytes(b"\x10garbage")
    with pytest.raises(SystemExit) as exit_info:
        convert_main([a.format(**paths) for a in argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_resize_tool_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    argv = [
        "--input",
        str(tmp_path / "missing"),
        "--output",
        str(tmp_path / "o"),
        "--base-tokenizer",
        "b",
        "--tokenizer",
        "t",
    ]
    with pytest.raises(SystemExit) as exit_info:
        resize_main(argv)
    assert exit_info.value.code == 2 and "is not a directory" in capsys.readouterr().err


def test_a_tokenizer_that_is_not_a_hf_folder_is_a_clear_error(tmp_path):
    from megacpt.convert.resize import expansion_from_tokenizers

    model_file = tmp_path / "tokenizer.model"
    model_file.write_bytes(b"not a folder")
    with pytest.raises(UserError, match="give a Hugging Face tokenizer folder"):
        expansion_from_tokenizers(model_file, tmp_path)
