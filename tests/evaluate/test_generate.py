"""``megacpt generate``: greedy continuations match an argmax loop over the model's own logits."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from megacpt.evaluate.cli import generate_main
from megacpt.evaluate.generate import greedy_continuations, prompt_of
from tests.convert.tiny_models import hf_logits, make_resize_model, make_tokenizers

PROMPTS = ["The capital of France is", "대한민국은 민주공화국이다"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("gen")
    base_tok, _ = make_tokenizers(root / "tok")
    model = make_resize_model(root / "model")
    for item in base_tok.iterdir():
        shutil.copy(item, model / item.name)
    return model


def test_continuations_are_the_argmax_of_the_models_logits(model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    got = greedy_continuations(model_dir, PROMPTS, max_new_tokens=5)
    for prompt, result in zip(PROMPTS, got, strict=True):
        ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
        for _ in range(5):  # the reference: a plain argmax loop over full forward passes
            ids = torch.cat([ids, hf_logits(model_dir, ids)[:, -1].argmax(-1, keepdim=True)], dim=1)
        want = ids[0, -5:]
        assert result.prompt == prompt and result.new_tokens == 5
        assert result.continuation == tokenizer.decode(want, skip_special_tokens=True)


def test_the_command_writes_one_line_per_prompt(model_dir, tmp_path, capsys):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"text": p + " and more words"}) + "\n" for p in PROMPTS))
    out = tmp_path / "out" / "gen.jsonl"
    args = ["--model", str(model_dir), "--prompts", str(prompts), "--output", str(out)]
    generate_main([*args, "--max-new-tokens", "3", "--prompt-chars", "24", "--limit", "1"])
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["prompt"] for r in rows] == ["The capital of France is"]
    assert rows[0]["new_tokens"] == 3 and isinstance(rows[0]["continuation"], str)
    assert "wrote 1 continuations" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:  # an existing output needs --overwrite
        generate_main(args)
    assert exit_info.value.code == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err


@pytest.mark.parametrize(
    "change,message",
    [
        ({"--model": "missing"}, "is not a Hugging Face model directory"),
        ({"--prompts": "missing.jsonl"}, "prompts file"),
        ({"--max-new-tokens": "0"}, "argument --max-new-tokens: expected an integer at least 1, got 0"),
        ({"--limit": "-1"}, "argument --limit: expected an integer at least 0, got -1"),
        ({"empty": ""}, "holds no non-empty 'text' field"),
    ],
)
def test_bad_input_is_one_error_line(model_dir, tmp_path, capsys, change, message):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("" if "empty" in change else json.dumps({"text": "hello"}) + "\n")
    flags = {"--model": str(model_dir), "--prompts": str(prompts), "--max-new-tokens": "2"}
    flags.update({k: str(tmp_path / v) if k in ("--model", "--prompts") else v for k, v in change.items()})
    flags.pop("empty", None)
    with pytest.raises(SystemExit) as exit_info:
        generate_main([x for kv in flags.items() for x in kv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]


def test_prompts_are_cut_back_to_a_space():
    assert prompt_of("one two  three\nfour", 12) == "one two"
    assert prompt_of("short", 40) == "short"
    assert prompt_of("대한민국은민주공화국이다", 5) == "대한민국은"  # no space: cut at the limit


def test_help_names_the_verb_and_its_defaults(capsys):
    with pytest.raises(SystemExit) as exit_info:
        generate_main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: megacpt generate") and "(default: 32)" in out
