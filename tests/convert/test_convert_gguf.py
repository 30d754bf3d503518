"""GGUF import: a tiny llama.cpp-style file comes back as the exact Hugging Face model, and as a
Megatron checkpoint with the same logits; bad files are one error line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import transformers
from safetensors.torch import load_file

from megacpt.checkpoint.meta import read_meta
from megacpt.convert.cli import convert_main
from megacpt.convert.gguf import import_gguf
from megacpt.errors import UserError
from tests.convert.tiny_gguf import write_tiny_gguf
from tests.convert.tiny_models import hf_logits, run_workers


@pytest.fixture(scope="module")
def gguf_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    return path, write_tiny_gguf(path)


def test_import_gives_back_the_exact_model_and_its_tokenizer(gguf_file, tmp_path: Path) -> None:
    path, state = gguf_file
    out = import_gguf(path, tmp_path / "hf")
    got = {k: v for f in out.glob("*.safetensors") for k, v in load_file(f).items()}
    assert sorted(got) == sorted(state)  # tied: no lm_head tensor
    assert all(torch.equal(got[k], state[k]) for k in state)
    config = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in config and config["tie_word_embeddings"] is True
    assert config["architectures"] == ["LlamaForCausalLM"]
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    ids = tokenizer.encode("the cat", add_special_tokens=False)
    assert ids[0] == 257 and tokenizer.decode(ids) == "the cat"  # the merge "th" is id 257
    assert transformers.AutoModelForCausalLM.from_pretrained(out).config.vocab_size == 300


@pytest.mark.multiproc
def test_gguf_to_megatron_has_the_models_logits(gguf_file, tmp_path: Path) -> None:
    path, _ = gguf_file
    convert_main(["gguf-to-megatron", "--input", str(path), "--output", str(tmp_path / "mcore")])
    hf = import_gguf(path, tmp_path / "hf")
    assert read_meta(tmp_path / "mcore")["vocab_size"] == 300
    assert (tmp_path / "mcore" / "hf" / "tokenizer.json").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("tmp")]  # the intermediate HF dir is gone
    tokens = torch.randint(0, 300, (2, 16), generator=torch.Generator().manual_seed(1))
    torch.save(tokens, tmp_path / "tokens.pt")
    run_workers("parity_worker.py", 1, 1, 1, tmp_path / "tokens.pt", tmp_path / "mcore", tmp_path / "out.pt")
    assert torch.allclose(torch.load(tmp_path / "out.pt"), hf_logits(hf, tokens), atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    "kind,message",
    [
        ("text", "not a GGUF file"),
        ("gpt2", "unsupported GGUF architecture 'gpt2'"),
        ("missing", "no such GGUF file"),
    ],
)
def test_bad_gguf_files_are_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture, kind: str, message: str
) -> None:
    path = tmp_path / "model.gguf"
    if kind == "text":
        path.write_text("not a model")
    elif kind == "gpt2":
        write_tiny_gguf(path, architecture="gpt2")
    with pytest.raises(UserError, match=message):
        import_gguf(path, tmp_path / "hf")
    with pytest.raises(SystemExit) as exit_info:
        convert_main(["gguf-to-hf", "--input", str(path), "--output", str(tmp_path / "hf")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "hf").exists()


def test_an_existing_output_needs_overwrite_and_never_is_the_input(gguf_file, tmp_path: Path, capsys) -> None:
    path, _ = gguf_file
    out = tmp_path / "hf"
    argv = ["gguf-to-hf", "--input", str(path), "--output", str(out)]
    convert_main(argv)
    (out / "marker").write_text("the earlier output")
    with pytest.raises(SystemExit) as code:
        convert_main(argv)
    assert code.value.code == 2 and "already exists; pass --overwrite" in capsys.readouterr().err
    assert (out / "marker").is_file()
    convert_main([*argv, "--overwrite"])
    assert not (out / "marker").exists() and (out / "config.json").is_file()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # nothing left aside
    with pytest.raises(SystemExit) as code:
        convert_main(["gguf-to-hf", "--input", str(path), "--output", str(path), "--overwrite"])
    assert code.value.code == 2 and "is or contains the input" in capsys.readouterr().err
    assert path.is_file()
