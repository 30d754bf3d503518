"""The command-line tool end to end on a small Korean expansion, and the selection rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from megacpt.tokenizer import SelectConfig
from megacpt.tokenizer import cli as expand_cli
from megacpt.tokenizer.corpus import load_split
from megacpt.tokenizer.load import load_base
from megacpt.tokenizer.select import count_new, select_tokens
from megacpt.tokenizer.train import TrainConfig, train_candidates
from tests.tokenizer.tok_helpers import EN, KO, SP_BASE, texts, write_jsonl


def test_tool_writes_a_loadable_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = write_jsonl(tmp_path / "ko.jsonl", texts(KO)[::4])
    out = tmp_path / "tok"
    argv = ["--base", str(SP_BASE), "--corpus", str(corpus), "--output", str(out), "--language", "ko"]
    argv += ["--heldout", f"en={EN}", "--train-vocab-size", "3000", "--vocab-size", "33000"]
    expand_cli.main([*argv, "--pad-to-multiple-of", "128"])
    stdout = capsys.readouterr().out
    meta = json.loads((out / "expansion.json").read_text())
    assert meta["new_vocab_size"] <= 33000 and meta["padded_vocab_size"] == 33024
    assert "| ko |" in stdout and "| en |" in stdout
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [
            ".megacpt-output",
            "tokenizer.json",
            "tokenizer_config.json",
            "tokenizer.model",
            "id_map.json",
            "new_tokens.tsv",
            "expansion.json",
            "report.md",
            "report.png",
        ]
    )
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tok")]


def test_selection_threshold_cap_and_fixed_point() -> None:
    base = load_base(SP_BASE)
    train = load_split([KO], 0.1).train[::2]
    candidates = train_candidates(train, TrainConfig(vocab_size=3000))
    cfg = SelectConfig(min_frequency=5, char_min_frequency=10**9)
    sel = select_tokens(base, candidates, train, cfg, cap=None)
    assert sel.converged and sel.keys
    freqs = count_new(base, train, sel.keys)
    assert freqs == sel.frequencies
    parts = base.reachable(sel.keys)
    assert list(parts) == sel.keys
    needed = {p for pair in parts.values() if pair for p in pair}
    assert all(freqs[k] >= 5 or k in needed for k in sel.keys)
    capped = select_tokens(base, candidates, train, cfg, cap=100)
    assert 0 < len(capped.keys) <= 100 and capped.converged
    top = sorted(sel.keys, key=lambda k: -freqs[k])[:20]
    assert len(set(top) & set(capped.keys)) >= 15


def test_frequent_characters_are_added() -> None:
    base = load_base(SP_BASE)
    train = load_split([KO], 0.1).train[::4]
    chars = {c for t in train for c in t if c.strip() and not base.in_base(c)}
    missing = sorted(chars, key=lambda c: -sum(t.count(c) for t in train))
    sel = select_tokens(base, [], train, SelectConfig(min_frequency=10**9, char_min_frequency=3), cap=None)
    assert missing[0] in sel.keys and all(len(k) == 1 for k in sel.keys)
