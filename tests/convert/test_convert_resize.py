"""Vocabulary resize on Hugging Face and Megatron checkpoints: new rows, old logits, TP 1/2/4 shards."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import transformers
from safetensors.torch import load_file

from megacpt.checkpoint.meta import read_meta
from megacpt.checkpoint.tensors import read_tensors, tensor_shapes
from megacpt.convert.calibrate import bias_direction, frequency_offsets
from megacpt.convert.hf_to_megatron import convert_hf_to_megatron
from megacpt.convert.megatron_to_hf import convert_megatron_to_hf
from megacpt.convert.methods import METHODS
from megacpt.convert.resize import Expansion, expansion_from_tokenizers
from megacpt.convert.resize_checkpoint import calibration_for, resize_hf, resize_megatron
from megacpt.errors import UserError
from tests.convert.tiny_models import (
    NEW_TOKENS,
    english_ids,
    hf_logits,
    make_resize_model,
    make_tokenizers,
    run_workers,
)

OLD = 32000
EMB, OUT = "embedding.word_embeddings.weight", "output_layer.weight"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("resize")
    base, expanded = make_tokenizers(root)
    hf = make_resize_model(root / "hf")
    return {
        "root": root,
        "base": base,
        "expanded": expanded,
        "expansion": expansion_from_tokenizers(base, expanded),
        "hf": hf,
        "tokens": english_ids(base),
        "mcore": convert_hf_to_megatron(hf, root / "mcore", make_vocab_size_divisible_by=64),
    }


def expected_rows(method: str, old: torch.Tensor, expansion: Expansion) -> torch.Tensor | None:
    """Each method's formula, written independently of the library (None: random, checked by statistics)."""
    if method == "mean":
        return old.mean(0).expand(len(expansion.pieces), -1)
    if method == "subword_mean":
        return torch.stack([old[p].mean(0) for p in expansion.pieces])
    if method == "subword_first":
        return torch.stack([old[p[0]] for p in expansion.pieces])
    return None


def check_rows(method: str, table: torch.Tensor, old: torch.Tensor, expansion: Expansion) -> None:
    assert torch.equal(table[:OLD], old)
    added = table[OLD : expansion.new_size]
    want = expected_rows(method, old, expansion)
    if want is None:
        assert added.abs().sum() > 0 and not torch.equal(added[0], added[1])
    else:
        assert torch.allclose(added, want, atol=1e-7, rtol=0)
    assert not table[expansion.new_size :].any()  # padding rows are zero


def test_decomposition_uses_base_pieces(setup: dict) -> None:
    expansion = setup["expansion"]
    base = transformers.AutoTokenizer.from_pretrained(setup["base"])
    assert (expansion.old_size, expansion.new_size) == (OLD, OLD + len(NEW_TOKENS))
    pieces = base.convert_ids_to_tokens(expansion.pieces[NEW_TOKENS.index("日本語")])
    assert "".join(pieces).replace("▁", "") == "日本語" and pieces[0] != "▁"


@pytest.mark.parametrize("method", METHODS)
def test_hf_resize_rows_and_old_logits(setup: dict, method: str, tmp_path: Path) -> None:
    expansion = setup["expansion"]
    out = resize_hf(
        setup["hf"], tmp_path / "out", expansion, (method, method), tokenizer_dir=setup["expanded"]
    )
    old, new = load_file_all(setup["hf"]), load_file_all(out)
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        assert new[name].shape[0] == expansion.new_size
        check_rows(method, new[name], old[name], expansion)
    assert all(
        torch.equal(new[n], t)
        for n, t in old.items()
        if n not in ("model.embed_tokens.weight", "lm_head.weight")
    )
    logits = hf_logits(out, setup["tokens"])
    assert logits.shape[-1] == expansion.new_size
    assert torch.equal(logits[..., :OLD], hf_logits(setup["hf"], setup["tokens"]))
    assert len(transformers.AutoTokenizer.from_pretrained(out)) == expansion.new_size


def test_hf_resize_tied(setup: dict, tmp_path: Path) -> None:
    expansion = setup["expansion"]
    tied = make_resize_model(tmp_path / "tied", tied=True)
    out = resize_hf(tied, tmp_path / "out", expansion, ("subword_mean", "subword_first"))
    new = load_file_all(out)
    assert "lm_head.weight" not in new
    check_rows(
        "subword_mean",
        new["model.embed_tokens.weight"],
        load_file_all(tied)["model.embed_tokens.weight"],
        expansion,
    )
    assert json.loads((out / "config.json").read_text())["vocab_size"] == expansion.new_size
    assert torch.equal(hf_logits(out, setup["tokens"])[..., :OLD], hf_logits(tied, setup["tokens"]))


def load_file_all(directory: Path) -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = {}
    for shard in directory.glob("*.safetensors"):
        tensors.update(load_file(shard))
    return tensors


@pytest.mark.multiproc
def test_megatron_resize_at_tp_1_2_4(setup: dict) -> None:
    """Checkpoints sharded at TP 1, 2 and 4 resized (EEVE preset, padded for TP 2), then loaded at TP2 PP2."""
    root, expansion = setup["root"], setup["expansion"]
    sources = {1: setup["mcore"], 2: root / "mcore.tp2", 4: root / "mcore.tp4"}
    run_workers("reshard_worker.py", 4, setup["mcore"], 2, sources[2], 4, sources[4])
    original = read_tensors(setup["mcore"], [EMB, OUT])
    torch.save(setup["tokens"], root / "tokens.pt")
    pairs: list[Path] = [setup["mcore"], root / "orig.pt"]
    for tp, src in sources.items():
        assert tensor_shapes(src)[EMB] == (OLD, 64)
        out = resize_megatron(
            src,
            root / f"resized.tp{tp}",
            expansion,
            ("subword_mean", "subword_first"),
            tensor_parallel_size=2,
            tokenizer_dir=setup["expanded"],
        )
        tables = read_tensors(out, [EMB, OUT])
        assert tables[EMB].shape == (32128, 64)  # 32,007 rounded up to 64 x TP 2
        check_rows("subword_mean", tables[EMB], original[EMB], expansion)
        check_rows("subword_first", tables[OUT], original[OUT], expansion)
        assert read_meta(out)["vocab_size"] == expansion.new_size
        assert read_meta(src)["vocab_size"] == OLD  # the input is untouched
        pairs += [out, root / f"resized.tp{tp}.pt"]
    run_workers("parity_worker.py", 4, 2, 2, root / "tokens.pt", *pairs)
    reference = torch.load(root / "orig.pt")
    for tp in sources:
        logits = torch.load(root / f"resized.tp{tp}.pt")
        assert logits.shape[-1] == expansion.new_size
        assert torch.equal(logits[..., :OLD], reference)
    exported = convert_megatron_to_hf(root / "resized.tp4", root / "resized.hf")
    assert hf_logits(exported, setup["tokens"]).shape[-1] == expansion.new_size
    assert len(transformers.AutoTokenizer.from_pretrained(exported)) == expansion.new_size


def test_vocabulary_mismatch_is_a_clear_error(setup: dict, tmp_path: Path) -> None:
    wrong = Expansion(OLD + 1, OLD + 3, [[5], [6]])
    with pytest.raises(UserError, match="disagrees with the base tokenizer"):
        resize_hf(setup["hf"], tmp_path / "a", wrong, ("mean", "mean"))
    with pytest.raises(UserError, match="disagrees with the base tokenizer"):
        resize_megatron(setup["mcore"], tmp_path / "b", wrong, ("mean", "mean"))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    with pytest.raises(UserError, match="not more than"):
        expansion_from_tokenizers(setup["expanded"], setup["base"])


def test_tools_end_to_end(setup: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The two command-line tools: HF -> Megatron, resize (EEVE, padded for TP 4), Megatron -> HF."""
    from megacpt.convert.cli import convert_main, resize_main

    mcore, resized, exported = tmp_path / "mcore", tmp_path / "resized", tmp_path / "hf"
    convert_main(
        [
            "hf-to-megatron",
            "--input",
            str(setup["hf"]),
            "--output",
            str(mcore),
            "--make-vocab-size-divisible-by",
            "64",
            "--target-tp",
            "2",
            "--target-pp",
            "2",
        ]
    )
    resize_main(
        [
            "--input",
            str(mcore),
            "--output",
            str(resized),
            "--preset",
            "eeve",
            "--target-tp",
            "4",
            "--base-tokenizer",
            str(setup["base"]),
            "--tokenizer",
            str(setup["expanded"]),
            "--logit-calibration",
            "none",  # a tokenizer not made by tools/expand_vocab.py has no frequencies to calibrate with
        ]
    )
    assert "32000 -> 32007 tokens" in capsys.readouterr().out
    assert tensor_shapes(resized)[EMB] == (32256, 64)  # 64 x TP 4
    convert_main(["megatron-to-hf", "--input", str(resized), "--output", str(exported)])
    assert json.loads((exported / "config.json").read_text())["vocab_size"] == 32007
    assert len(transformers.AutoTokenizer.from_pretrained(exported)) == 32007


def _with_frequencies(expanded: Path, tmp_path: Path, expansion: Expansion) -> Expansion:
    """The expansion with made-up frequencies, as tools/expand_vocab.py's new_tokens.tsv records them."""
    rows = ["token\tid\tfrequency\ttext"] + [
        f't{i}\t{OLD + i}\t{10 ** (i % 4)}\t"t"' for i in range(len(expansion.pieces))
    ]
    (expanded / "new_tokens.tsv").write_text("\n".join(rows) + "\n")
    return expansion_from_tokenizers(expanded.parent / "tok_base", expanded)


def test_calibration_offsets_and_direction() -> None:
    offsets = frequency_offsets([1, 10, 100])
    weights = torch.tensor([1.0, 10.0, 100.0])
    assert torch.allclose((weights * offsets).sum(), torch.tensor(0.0), atol=1e-4)  # mean over occurrences
    assert torch.allclose(offsets[1:] - offsets[:-1], torch.log(torch.tensor([11 / 2, 101 / 11])), atol=1e-5)
    generator = torch.Generator().manual_seed(0)
    states = torch.randn(400, 16, generator=generator) * 0.1 + torch.linspace(1, 3, 16)
    u = bias_direction(states)
    assert abs(float((states @ u).mean()) - 1.0) < 1e-5 and float((states @ u).std()) < 0.05


def test_untied_and_calibrated_resize(setup: dict, tmp_path: Path) -> None:
    shutil.copytree(setup["expanded"], tmp_path / "tok_expanded")
    shutil.copytree(setup["base"], tmp_path / "tok_base")
    expansion = _with_frequencies(tmp_path / "tok_expanded", tmp_path, setup["expansion"])
    assert expansion.frequencies == [10 ** (i % 4) for i in range(len(NEW_TOKENS))]
    tied = make_resize_model(tmp_path / "tied", tied=True)
    calibration = calibration_for(tied, expansion, None)
    out = resize_hf(
        tied,
        tmp_path / "out",
        expansion,
        ("subword_mean", "subword_first"),
        calibration=calibration,
        untie=True,
    )
    new, old = load_file_all(out), load_file_all(tied)["model.embed_tokens.weight"]
    assert json.loads((out / "config.json").read_text())["tie_word_embeddings"] is False
    check_rows("subword_mean", new["model.embed_tokens.weight"], old, expansion)
    head = new["lm_head.weight"]
    assert torch.equal(head[:OLD], old)
    want = torch.stack([old[p[0]] for p in expansion.pieces]) + calibration.shift()
    assert torch.allclose(head[OLD:], want, atol=1e-6)
    assert torch.allclose(
        hf_logits(out, setup["tokens"])[..., :OLD], hf_logits(tied, setup["tokens"]), atol=1e-5
    )
    # The same calibration from the Megatron checkpoint of the same model.
    mcore = convert_hf_to_megatron(tied, tmp_path / "mcore", make_vocab_size_divisible_by=64)
    from_megatron = calibration_for(mcore, expansion, read_meta(mcore))
    assert torch.allclose(from_megatron.direction, calibration.direction, rtol=1e-3, atol=1e-5)
    kept = resize_megatron(
        mcore, tmp_path / "kept", expansion, ("subword_mean", "subword_first"), calibration=from_megatron
    )
    assert read_meta(kept)["model"]["tie_embeddings"] is True and OUT not in tensor_shapes(kept)
    untied = resize_megatron(
        mcore,
        tmp_path / "untied",
        expansion,
        ("subword_mean", "subword_first"),
        calibration=from_megatron,
        untie=True,
    )
    tables = read_tensors(untied, [EMB, OUT])
    assert read_meta(untied)["model"]["tie_embeddings"] is False
    assert torch.equal(tables[OUT][:OLD], tables[EMB][:OLD])
    assert torch.allclose(tables[OUT][OLD : expansion.new_size], want, atol=1e-4)


def test_a_phi_models_lm_head_bias_grows_with_its_output_rows(tmp_path: Path) -> None:
    """Phi's LM head has a bias: the resize grows it like the output rows (EEVE's output method, the
    first piece's row, gives the first piece's bias), in a Hugging Face and a Megatron checkpoint."""
    from tests.convert.tiny_models import make_model

    hf = make_model("phi", tmp_path / "phi")
    expansion = Expansion(old_size=250, new_size=253, pieces=[[7, 9], [3], [40, 41, 42]])
    methods = ("subword_mean", "subword_first")
    resized = resize_hf(hf, tmp_path / "phi_resized", expansion, methods)
    before = {}
    for shard in hf.glob("*.safetensors"):
        before.update(load_file(shard))
    after = {}
    for shard in resized.glob("*.safetensors"):
        after.update(load_file(shard))
    bias = after["lm_head.bias"]
    assert bias.shape == (253,) and torch.equal(bias[:250], before["lm_head.bias"])
    assert torch.equal(bias[250:], before["lm_head.bias"][[7, 3, 40]])
    tokens = torch.randint(0, 250, (1, 12), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(hf_logits(resized, tokens)[..., :250], hf_logits(hf, tokens))

    mcore = convert_hf_to_megatron(hf, tmp_path / "phi.mcore", make_vocab_size_divisible_by=64)
    grown = resize_megatron(mcore, tmp_path / "phi.resized.mcore", expansion, methods, tensor_parallel_size=2)
    megatron_bias = read_tensors(grown, ["output_layer.bias"])["output_layer.bias"]
    assert megatron_bias.shape == (256,)  # 253 padded to a multiple of 64 x TP2
    assert torch.equal(megatron_bias[:253], bias) and not megatron_bias[253:].any()
