"""Preprocessing tokenizers: every format encodes document text as text, Megatron-LM's flags work,
and gigatoken runs only where it gives the reference's ids."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest
import sentencepiece as spm

from megacpt.data.indexed import read_documents
from megacpt.errors import UserError
from megacpt.tokenizer.encoders import SPECIAL_TEXT, load_tokenizer
from megacpt.tokenizer.formats import locate

REPO = Path(__file__).parents[2]
TOOL = REPO / "tools" / "preprocess_data.py"


def mistral_data() -> Path:
    import mistral_common

    return Path(mistral_common.__file__).parent / "data"


def _doc(specials: list[str]) -> str:
    return "안녕하세요 " + " mid ".join(specials) + " end, 東京 <b>tags</b>"


def _byte_files(tmp_path: Path) -> dict[str, Path]:
    """A tiny GPT-2 BPE (vocab.json + merges.txt) and the same ranks as a .tiktoken file."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    chars = bytes_to_unicode()
    vocab = {chars[b]: b for b in range(256)}
    merges = [("h", "e"), ("he", "l")]
    for a, b in merges:
        vocab[a + b] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    ranks = [bytes([b]) for b in range(256)] + [b"he", b"hel"]
    lines = [f"{base64.b64encode(tok).decode()} {rank}" for rank, tok in enumerate(ranks)]
    (tmp_path / "tiny.tiktoken").write_text("\n".join(lines) + "\n")
    return {
        "vocab": tmp_path / "vocab.json",
        "merges": tmp_path / "merges.txt",
        "tiktoken": tmp_path / "tiny.tiktoken",
    }


@pytest.mark.parametrize("family", ["sentencepiece", "hf_directory", "tekken", "tiktoken", "gpt2"])
def test_special_token_strings_in_documents_are_text(family: str, tmp_path: Path) -> None:
    files = _byte_files(tmp_path)
    if family == "sentencepiece":
        tok = load_tokenizer(str(mistral_data() / "tokenizer.model.v1"))
        specials = ["<s>", "</s>", "<unk>"]
        sp = spm.SentencePieceProcessor(model_file=str(mistral_data() / "tokenizer.model.v1"))
        reference = sp.encode([_doc(specials)])
    elif family == "hf_directory":
        from transformers import AutoTokenizer

        hf = tmp_path / "hf"
        spm_dir = tmp_path / "spm"
        spm_dir.mkdir()
        (spm_dir / "tokenizer.model").write_bytes((mistral_data() / "tokenizer.model.v1").read_bytes())
        (spm_dir / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "LlamaTokenizer"}))
        AutoTokenizer.from_pretrained(spm_dir).save_pretrained(hf)  # writes tokenizer.json with added tokens
        tok = load_tokenizer(str(hf))
        specials = ["<s>", "</s>", "<unk>"]
        reference = spm.SentencePieceProcessor(model_file=str(spm_dir / "tokenizer.model")).encode(
            [_doc(specials)]
        )
    elif family == "tekken":
        from mistral_common.tokens.tokenizers.tekken import Tekkenizer

        path = mistral_data() / "tekken_240911.json"
        tok = load_tokenizer(str(path))
        specials = ["<s>", "</s>", "<unk>", "[INST]", "[/INST]", "[TOOL_CALLS]"]
        reference = [Tekkenizer.from_file(str(path)).encode(_doc(specials), bos=False, eos=False)]
    elif family == "tiktoken":
        tok = load_tokenizer(str(files["tiktoken"]), tiktoken_encoding="cl100k_base")
        specials = ["<|endoftext|>", "<|fim_prefix|>", "<|endofprompt|>"]
        reference = None
    else:
        tok = load_tokenizer(str(files["vocab"]), merge_file=str(files["merges"]))
        specials = ["<|endoftext|>"]
        reference = None
    ids = tok.encode_batch([_doc(specials)])[0]
    if reference is not None:
        assert ids == reference[0]
    assert tok.eod_id is not None and tok.eod_id not in ids  # no control id inside the document


def test_a_model_file_and_its_hf_directory_give_the_same_ids(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    spm_dir = tmp_path / "spm"
    spm_dir.mkdir()
    (spm_dir / "tokenizer.model").write_bytes((mistral_data() / "tokenizer.model.v1").read_bytes())
    (spm_dir / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "LlamaTokenizer"}))
    AutoTokenizer.from_pretrained(spm_dir).save_pretrained(tmp_path / "hf")
    texts = ["안녕하세요 </s> hello <s> world <unk> end", *SPECIAL_TEXT]
    model = load_tokenizer(str(spm_dir / "tokenizer.model"))
    directory = load_tokenizer(str(tmp_path / "hf"))
    assert model.encode_batch(texts) == directory.encode_batch(texts)


def test_gigatoken_runs_only_where_it_matches(tmp_path: Path) -> None:
    texts = ["안녕하세요 세계", "日本語の文章です。", "plain English, with <s> and </s> inside"]
    sp = load_tokenizer(str(mistral_data() / "tokenizer.model.v1"), sample=texts)
    assert sp.backend == "gigatoken"
    assert sp.encode_batch(texts) == load_tokenizer(
        str(mistral_data() / "tokenizer.model.v1"), backend="reference"
    ).encode_batch(texts)
    tekken = load_tokenizer(str(mistral_data() / "tekken_240911.json"))
    assert tekken.backend == "mistral-common"
    with pytest.raises(UserError, match="gigatoken cannot read tekken"):
        load_tokenizer(str(mistral_data() / "tekken_240911.json"), backend="gigatoken")
    assert locate(mistral_data() / "tekken_240911.json").kind == "tekken"


def _tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True, cwd=REPO)


def test_megatron_lm_command_works_as_is(tmp_path: Path) -> None:
    corpus = REPO / "examples" / "corpora" / "ko" / "klue_dev.jsonl"
    model = str(mistral_data() / "tokenizer.model.v1")
    done = _tool(
        "--input",
        str(corpus),
        "--output-prefix",
        str(tmp_path / "ko"),
        "--tokenizer-type",
        "SentencePieceTokenizer",
        "--tokenizer-model",
        model,
        "--append-eod",
        "--workers",
        "2",
        "--log-interval",
        "500",
        "--partitions",
        "3",
        "--keep-sequential-samples",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "documents (" in done.stderr and "docs/s" in done.stderr  # a progress line per 500 documents
    sp = spm.SentencePieceProcessor(model_file=model)
    texts = [json.loads(line)["text"] for line in corpus.read_text(encoding="utf-8").splitlines()]
    assert [d.tolist() for d in read_documents(tmp_path / "ko_text_document")] == [
        [*sp.encode(t), 2] for t in texts
    ]
    files = _byte_files(tmp_path)
    gpt2 = _tool(
        "--input",
        str(corpus),
        "--output-prefix",
        str(tmp_path / "g"),
        "--tokenizer-type",
        "GPT2BPETokenizer",
        "--vocab-file",
        str(files["vocab"]),
        "--merge-file",
        str(files["merges"]),
        "--append-eod",
    )
    assert gpt2.returncode == 0, gpt2.stderr[-2000:]


@pytest.mark.parametrize(
    "args,message",
    [
        (["--split-sentences"], "--split-sentences/--keep-newlines are not supported"),
        (["--tokenizer-type", "BertWordPieceLowerCase"], "names no tokenizer file format megacpt reads"),
        (["--json-keys", "content"], "no document written: every line was skipped (missing_key: 1,173)"),
    ],
)
def test_refusals_are_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    corpus = REPO / "examples" / "corpora" / "ko" / "klue_dev.jsonl"
    done = _tool(
        "--input",
        str(corpus),
        "--output-prefix",
        str(tmp_path / "o"),
        "--no-progress",
        "--tokenizer",
        str(mistral_data() / "tokenizer.model.v1"),
        *args,
    )
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last
    assert not list(tmp_path.glob("o_*"))
