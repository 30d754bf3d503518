"""``expand_vocab(config)``: train → select → merge → write → report, in one call.

The output directory (written under a temporary name, then moved into place) holds:

- ``tokenizer.json`` + ``tokenizer_config.json`` that ``AutoTokenizer.from_pretrained(dir)``
  loads offline, and ``tokenizer.model`` for a SentencePiece base;
- ``id_map.json``: ``{"base_vocab_size": N, "old_to_new": [...]}``, index = old id, value = new
  id (identity: expansion only appends);
- ``new_tokens.tsv``: ``token  id  frequency  text`` per new token (``token`` is the vocabulary
  string, ``text`` its JSON-quoted surface form, ``frequency`` its count on the training text);
- ``expansion.json``: base kind and path, base / new / padded vocabulary sizes, number of new
  tokens, the resolved config, selection rounds, per-step seconds and the report figures;
- ``report.md`` and ``report.png``: per-language held-out statistics before and after.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from megacpt.atomic import TOKENIZER, atomic_directory, check_output
from megacpt.errors import UserError
from megacpt.tokenizer.base import BaseVocab
from megacpt.tokenizer.config import ExpansionConfig, TrainConfig
from megacpt.tokenizer.corpus import iter_texts, load_split
from megacpt.tokenizer.load import load_base
from megacpt.tokenizer.report import LanguageStats, markdown_table, measure, plot
from megacpt.tokenizer.scripts import resolve_filter
from megacpt.tokenizer.select import Selection, select_tokens
from megacpt.tokenizer.train import train_candidates

log = logging.getLogger(__name__)


@dataclass
class ExpansionResult:
    """What ``expand_vocab`` produced; the same facts as the output's ``expansion.json``."""

    output_dir: Path
    base_kind: str
    base_vocab_size: int
    new_vocab_size: int
    padded_vocab_size: int
    new_tokens: list[str]
    frequencies: dict[str, int]
    stats: list[LanguageStats]
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def num_new_tokens(self) -> int:
        return len(self.new_tokens)


def _cap(config: ExpansionConfig, base_size: int) -> int | None:
    caps = []
    if config.target_vocab_size is not None:
        if config.target_vocab_size <= base_size:
            raise UserError(
                f"requested vocabulary size {config.target_vocab_size} is not larger than the base "
                f"tokenizer's {base_size}: expansion only appends tokens"
            )
        caps.append(config.target_vocab_size - base_size)
    if config.select.max_new_tokens is not None:
        caps.append(config.select.max_new_tokens)
    return min(caps) if caps else None


def write_lists(base: BaseVocab, selection: Selection, tmp: Path) -> None:
    """Write ``id_map.json`` and ``new_tokens.tsv`` (see the module docstring) into ``tmp``."""
    ids = list(range(base.base_size))
    (tmp / "id_map.json").write_text(json.dumps({"base_vocab_size": base.base_size, "old_to_new": ids}))
    rows = ["token\tid\tfrequency\ttext"]
    for i, key in enumerate(selection.keys):
        text = json.dumps(base.surface(key), ensure_ascii=False)
        rows.append(f"{key}\t{base.base_size + i}\t{selection.frequencies[key]}\t{text}")
    (tmp / "new_tokens.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")


def expand_vocab(config: ExpansionConfig) -> ExpansionResult:
    """Expand ``config.base`` with tokens trained on ``config.corpus``; see the module docstring."""
    heldout_files = [p for paths in config.heldout.values() for p in paths]
    check_output(
        config.output_dir, [config.base, *config.corpus_files, *heldout_files], config.overwrite, TOKENIZER
    )
    clock: dict[str, float] = {}
    start = time.perf_counter()
    base = load_base(config.base)
    trainer = base.default_trainer if config.train.trainer == "auto" else config.train.trainer
    if trainer == "hf_bpe" and config.train.character_coverage != TrainConfig.character_coverage:
        raise UserError("--character-coverage applies only to the SentencePiece trainers, not to hf_bpe")
    if config.select.whole_characters and base.kind == "sentencepiece":
        raise UserError(
            "--whole-characters applies only to byte-level bases: SentencePiece tokens are whole characters"
        )
    cap = _cap(config, base.base_size)
    splits = {
        lang: load_split(paths, config.heldout_fraction, config.json_key)
        for lang, paths in config.corpora.items()
    }
    train = [text for split in splits.values() for text in split.train]
    clock["load"] = time.perf_counter() - start
    log.info(
        "base %s (%d tokens); %d train / %d held-out documents",
        base.kind,
        base.base_size,
        len(train),
        sum(len(s.heldout) for s in splits.values()),
    )

    start = time.perf_counter()
    candidates = train_candidates(train, config.train, base.pre_tokenizer, trainer)
    clock["train"] = time.perf_counter() - start
    log.info("trained %d candidate tokens with %s in %.1f s", len(candidates), trainer, clock["train"])

    start = time.perf_counter()
    scripts = resolve_filter(config.scripts, train)
    selection = select_tokens(base, candidates, train, config.select, cap, scripts)
    clock["select"] = time.perf_counter() - start
    if not selection.keys:
        raise UserError(
            f"no new tokens: nothing in the corpus made of the scripts {', '.join(scripts.scripts or ('any',))} is missing "
            "from the base; check --scripts against the corpus's language, or --min-frequency"
        )
    log.info(
        "selected %d new tokens in %d rounds (%.1f s)", len(selection.keys), selection.rounds, clock["select"]
    )

    new_size = base.base_size + len(selection.keys)
    padded = -(-new_size // config.pad_to_multiple_of) * config.pad_to_multiple_of
    start = time.perf_counter()
    reports = {lang: split.heldout for lang, split in splits.items() if split.heldout}
    reports.update({lang: list(iter_texts(paths, config.json_key)) for lang, paths in config.heldout.items()})
    stats = [measure(base, selection.keys, lang, texts) for lang, texts in reports.items() if texts]
    clock["report"] = time.perf_counter() - start

    out = config.output_dir
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_directory(
        out, TOKENIZER, replace=True
    ) as tmp:  # an old output is replaced only once this succeeds
        start = time.perf_counter()
        base.write(selection.keys, padded, tmp)
        write_lists(base, selection, tmp)
        (tmp / "report.md").write_text(markdown_table(stats), encoding="utf-8")
        if stats:
            plot(stats, tmp / "report.png")
        clock["write"] = time.perf_counter() - start
        meta = {
            "base_kind": base.kind,
            "base": str(config.base),
            "base_vocab_size": base.base_size,
            "new_vocab_size": new_size,
            "padded_vocab_size": padded,
            "num_new_tokens": len(selection.keys),
            "trainer": trainer,
            "scripts": list(scripts.scripts) if scripts.scripts is not None else "all",
            "selection_rounds": selection.rounds,
            "selection_converged": selection.converged,
            "config": json.loads(json.dumps(asdict(config), default=str)),
            "seconds": clock,
            "report": [s.as_dict() for s in stats],
        }
        (tmp / "expansion.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
    return ExpansionResult(
        output_dir=out,
        base_kind=base.kind,
        base_vocab_size=base.base_size,
        new_vocab_size=new_size,
        padded_vocab_size=padded,
        new_tokens=selection.keys,
        frequencies=selection.frequencies,
        stats=stats,
        seconds=clock,
    )
