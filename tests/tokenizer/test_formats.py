"""One format detection for every tool: a tokenizer folder gives the same ids to expansion,
preprocessing and resize, and a folder whose files disagree is refused by all three."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from megacpt.convert.resize import expansion_from_tokenizers
from megacpt.errors import UserError
from megacpt.tokenizer import ExpansionResult
from megacpt.tokenizer.encoders import load_tokenizer
from megacpt.tokenizer.formats import locate
from megacpt.tokenizer.load import load_base
from tests.tokenizer.tok_helpers import EN, JA, KO, SP_BASE, texts


def _hf_folder(tmp_path: Path) -> Path:
    """Mistral's SentencePiece model saved by transformers: tokenizer.model beside tokenizer.json."""
    from transformers import AutoTokenizer

    spm_dir = tmp_path / "spm"
    spm_dir.mkdir()
    shutil.copy(SP_BASE, spm_dir / "tokenizer.model")
    (spm_dir / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "LlamaTokenizer"}))
    AutoTokenizer.from_pretrained(spm_dir).save_pretrained(tmp_path / "hf")
    shutil.copy(SP_BASE, tmp_path / "hf" / "tokenizer.model")  # as the model hubs ship it
    return tmp_path / "hf"


def _ids_by_tool(folder: Path, docs: list[str]) -> dict[str, list[list[int]]]:
    from transformers import AutoTokenizer  # what megacpt resize decomposes new tokens with

    hf = AutoTokenizer.from_pretrained(folder)
    return {
        "expand": load_base(folder).encode(docs, None),
        "preprocess (reference)": load_tokenizer(str(folder), backend="reference").encode_batch(docs),
        "preprocess (auto)": load_tokenizer(str(folder), sample=docs).encode_batch(docs),
        # a new token's text holds no special-token string: read those as text, as the others do
        "resize": hf(docs, add_special_tokens=False, split_special_tokens=True)["input_ids"],
    }


@pytest.mark.parametrize("folder", ["mistral_hf", "sp_korean", "tekken_japanese"])
def test_one_folder_gives_the_same_ids_to_every_tool(
    folder: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    if folder == "mistral_hf":
        path = _hf_folder(tmp_path)
    else:
        result: ExpansionResult = request.getfixturevalue(folder)
        path = result.output_dir
    docs = [d[:300] for d in texts(KO)[:8] + texts(*JA)[:8] + texts(EN)[:8]]
    ids = _ids_by_tool(path, docs)
    assert all(len(doc) > 0 for doc in ids["expand"])
    for tool, got in ids.items():
        assert got == ids["expand"], f"{tool} reads {folder} otherwise than expand"


def test_a_folder_whose_files_disagree_is_refused_by_every_tool(tmp_path: Path) -> None:
    from tokenizers import Tokenizer

    folder = _hf_folder(tmp_path)
    base = tmp_path / "base"
    shutil.copytree(folder, base)
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tok.add_tokens(["안녕하세요세계"])  # added to the JSON only, as a fine-tune's added tokens are
    tok.save(str(folder / "tokenizer.json"))
    message = r"tokenizer.model \(32,000 pieces\) and tokenizer.json \(32,001 tokens\), which disagree"
    with pytest.raises(UserError, match=message):
        load_base(folder)
    with pytest.raises(UserError, match=message):
        load_tokenizer(str(folder))
    with pytest.raises(UserError, match=message):
        expansion_from_tokenizers(base, folder)
    assert locate(folder / "tokenizer.json").kind == "huggingface"  # naming the file settles it


def test_a_folder_only_transformers_reads(tmp_path: Path) -> None:
    folder = _hf_folder(tmp_path)
    (folder / "tokenizer.json").unlink()
    (folder / "tokenizer.model").rename(folder / "spiece.model")
    assert locate(folder).kind == "transformers"
    with pytest.raises(UserError, match="is a transformers tokenizer: expansion extends"):
        load_base(folder)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(
        UserError, match="no tokenizer.model, tokenizer.json, tekken.json or tokenizer_config.json"
    ):
        locate(empty)
