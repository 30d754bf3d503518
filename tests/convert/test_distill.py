"""Token distillation of new input rows: aligned windows, the hidden-state match it learns, only new
rows changed, and its refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import transformers
from safetensors.torch import load_file

from megacpt.convert import distill
from megacpt.convert.methods import DistillConfig, resolve_methods
from megacpt.convert.resize import expansion_from_tokenizers, new_rows
from megacpt.convert.resize_checkpoint import distilled_input_rows, resize_hf
from megacpt.errors import UserError
from tests.convert.tiny_models import NEW_TOKENS, english_ids, hf_logits, make_resize_model, make_tokenizers

OLD = 32000
TEXTS = [
    f"{a} 그리고 {b}. 今日は{c}です。{a}{b} and {c} again, {b} 然后 {a}"
    for a, b, c in zip(
        NEW_TOKENS, NEW_TOKENS[2:] + NEW_TOKENS[:2], NEW_TOKENS[4:] + NEW_TOKENS[:4], strict=True
    )
] * 3


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("distill")
    base, expanded = make_tokenizers(root)
    hf = make_resize_model(root / "hf")
    tokenizers = tuple(transformers.AutoTokenizer.from_pretrained(t) for t in (base, expanded))
    return {"base": base, "expanded": expanded, "hf": hf, "tokenizers": tokenizers, "root": root}


def _windows(setup: dict, **cfg: int) -> list[distill.Window]:
    base_tok, tok = setup["tokenizers"]
    return distill.make_windows(TEXTS, base_tok, tok, OLD, 2, DistillConfig(**cfg))


def test_windows_align_both_tokenisations_where_token_ends_agree(setup: dict) -> None:
    base_tok, tok = setup["tokenizers"]
    windows = _windows(setup)
    assert windows and all(w.base_ids[0] == w.new_ids[0] == 2 for w in windows)
    for w in windows:
        assert any(t >= OLD for t in w.new_ids)
        assert len(w.base_ids) > len(w.new_ids)  # the new tokens stand for several pieces
        for j, b in w.pairs[1:]:  # the same text up to each aligned pair
            assert tok.decode(w.new_ids[1 : j + 1]) == base_tok.decode(w.base_ids[1 : b + 1])
    assert sum(len(w.new_ids) for w in _windows(setup, tokens=40)) < sum(len(w.new_ids) for w in windows)


def _full_mse(base: distill.FrozenBase, windows: list[distill.Window], rows: torch.Tensor) -> float:
    """Hidden-state MSE over every window, in fp32 (the objective, computed independently)."""
    total, count = 0.0, 0
    with torch.no_grad():
        for w in windows:
            ids = torch.tensor([w.new_ids])
            table = base.embedding[ids.clamp(max=OLD - 1)]
            embeds = torch.where((ids >= OLD)[..., None], rows[(ids - OLD).clamp(min=0)], table)
            student = base.hidden(embeds)[0]
            teacher = base.hidden(base.embedding[torch.tensor([w.base_ids])])[0]
            first = next(j for j, t in enumerate(w.new_ids) if t >= OLD)
            pairs = [(j, b) for j, b in w.pairs if j >= first]
            diff = student[[j for j, _ in pairs]] - teacher[[b for _, b in pairs]]
            total, count = total + float(diff.pow(2).sum()), count + diff.numel()
    return total / count


def test_distillation_moves_the_new_rows_towards_the_pieces_states(setup: dict) -> None:
    expansion = expansion_from_tokenizers(setup["base"], setup["expanded"])
    base = distill.hf_base(str(setup["hf"]))
    before = [p.detach().clone() for p in base.model.parameters()]  # type: ignore[attr-defined]
    windows = _windows(setup)
    start = new_rows("subword_mean", base.embedding, expansion.pieces)
    learnt = distill.learn_rows(
        base, windows, start, OLD, DistillConfig(steps=30, lr=1e-2), log=lambda _: None
    )
    assert learnt.input.shape == start.shape and learnt.tokens_seen == len(NEW_TOKENS) == learnt.tokens_total
    assert _full_mse(base, windows, learnt.input) < 0.7 * _full_mse(base, windows, start)
    after = list(base.model.parameters())  # type: ignore[attr-defined]
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))  # the base stays frozen
    assert "0 of 7 new tokens never occur" in learnt.summary()


def test_resize_with_distilled_rows_keeps_every_old_row_and_logit(setup: dict, tmp_path: Path) -> None:
    expansion = expansion_from_tokenizers(setup["base"], setup["expanded"])
    texts = TEXTS[:2]
    cfg = DistillConfig(steps=3)
    learnt = distilled_input_rows(
        setup["hf"], None, expansion, (setup["base"], setup["expanded"]), texts, cfg, None
    )
    out = resize_hf(
        setup["hf"], tmp_path / "out", expansion, ("distill", "subword_mean"), input_rows=learnt.input
    )
    weights = {k: v for f in out.glob("*.safetensors") for k, v in load_file(f).items()}
    old = {k: v for f in setup["hf"].glob("*.safetensors") for k, v in load_file(f).items()}
    table = weights["model.embed_tokens.weight"]
    assert torch.equal(table[:OLD], old["model.embed_tokens.weight"])
    assert torch.equal(table[OLD:], learnt.input)
    tokens = english_ids(setup["base"])
    assert torch.allclose(hf_logits(out, tokens)[..., :OLD], hf_logits(setup["hf"], tokens), atol=1e-5)


def test_bad_distillation_settings_are_refused(
    setup: dict, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from megacpt.convert.cli import resize_main

    corpus = tmp_path / "ko.jsonl"
    corpus.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in TEXTS))
    english = tmp_path / "en.jsonl"
    english.write_text(json.dumps({"text": "only old tokens here"}) + "\n")
    common = [
        "--input",
        str(setup["hf"]),
        "--base-tokenizer",
        str(setup["base"]),
        "--tokenizer",
        str(setup["expanded"]),
    ]
    common += ["--logit-calibration", "none"]
    cases = {
        "--distill-tokens: expected an integer at least 1": [
            "--input-init",
            "distill",
            "--distill-text",
            str(corpus),
            "--distill-tokens",
            "0",
        ],
        "needs --distill-text": ["--input-init", "distill"],
        "apply only with --input-init distill": ["--distill-text", str(corpus)],
        "holds no new token": ["--input-init", "distill", "--distill-text", str(english)],
        "is not a file": ["--input-init", "distill", "--distill-text", str(tmp_path / "missing.jsonl")],
    }
    for i, (message, extra) in enumerate(cases.items()):
        out = tmp_path / f"out{i}"
        with pytest.raises(SystemExit) as exit_info:
            resize_main([*common, "--output", str(out), *extra])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert message in err and err.count("error:") == 1
        assert not out.exists()  # nothing half-written
    with pytest.raises(UserError, match="unknown initialisation method 'distill'"):
        resolve_methods(None, None, "distill")  # an input-row method only
