"""The README's main job: the whole continual-pretraining pipeline on CPU over the bundled text.

``python -m megacpt.pipeline.quickstart [--out runs/quickstart]`` runs, in order:

1. ``clean``: clean the Korean, Japanese and English JSONL under ``examples/corpora/``;
2. ``expand``: extend the Mistral-7B SentencePiece tokenizer (from ``mistral-common``) with Korean
   and Japanese tokens (EEVE's selection);
3. ``preprocess``: tokenise every language with the base and with the expanded tokenizer;
4. ``base``: train a tiny English Llama (``examples/quickstart/base_en.yaml``) on the English text,
   and export it as a Hugging Face checkpoint with the base tokenizer: the "base model";
5. ``import``: convert that HF checkpoint to Megatron, resize its embeddings and output layer for
   the expanded tokenizer with the ``eeve`` initialisation;
6. ``cpt``: the ``eeve`` preset's seven stages, shortened (``examples/quickstart/cpt_eeve.yaml``), at
   TP=2 on two processes over a 90/10 Korean+Japanese / English mix, validating per language;
7. ``export``: convert the result back to Hugging Face with the expanded tokenizer;
8. ``report``: ``report.md`` + ``report.png`` (see ``megacpt.pipeline.report``).

Every step is one of megacpt's own command lines, run as a subprocess (``megacpt.pipeline.runner``),
and is skipped when its output already exists: the tools write atomically, so an existing output is
a complete one, and an interrupted pipeline resumes where it stopped (training resumes from its last
checkpoint). ``<out>/settings.json`` records the budget the outputs were made with; rerunning into
the same directory with another budget is an error rather than a silent mix of the two. Configs are rendered from the example YAML with this run's paths into ``<out>/configs/``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from megacpt.config import load_config
from megacpt.config.loader import dump_config
from megacpt.errors import UserError, exits_on_user_error
from megacpt.pipeline import report
from megacpt.pipeline.runner import REPO, python, run_step, torchrun

CORPORA = {
    "ko": ["ko/klue_dev.jsonl"],
    "ja": ["ja/jsquad_valid_wiki.jsonl", "ja/jsts_jcqa_train.jsonl"],
    "en": ["en/wikitext2_valid.jsonl"],
}
TARGET = ("ko", "ja")
MIX = {"ko": 0.45, "ja": 0.45, "en": 0.10}  # 90% target languages, 10% English replay
TP = 2


@dataclass(frozen=True)
class Budget:
    """How much work each long step does; the defaults are the README's run."""

    base_steps: int = 150
    cpt_steps: int = 140  # split equally over the seven eeve stages
    new_tokens: int = 4000
    train_vocab_size: int = 8000
    eval_steps: int = 4

    def __post_init__(self) -> None:
        if self.base_steps < 1 or self.new_tokens < 1 or self.eval_steps < 1:
            raise UserError("--base-steps, --new-tokens and --eval-steps must be positive")
        if self.cpt_steps < 7 or self.cpt_steps % 7:
            raise UserError(
                f"--cpt-steps must be a positive multiple of 7 (seven stages), got {self.cpt_steps}"
            )
        if self.train_vocab_size <= self.new_tokens:
            raise UserError("--train-vocab-size must exceed --new-tokens")


@dataclass(frozen=True)
class Layout:
    """Where each step's output lives under the pipeline's output directory."""

    out: Path

    @property
    def clean(self) -> Path:
        return self.out / "clean"

    @property
    def base_tokenizer(self) -> Path:
        return self.out / "base_tokenizer"

    @property
    def tokenizer(self) -> Path:
        return self.out / "tokenizer"

    def data(self, which: str) -> Path:
        """Datasets of the ``base`` tokenizer in ``data/`` (where ``examples/tiny_cpu*.yaml`` and the
        benchmarks look for them), of the ``expanded`` one in ``data/expanded/``."""
        return self.out / "data" if which == "base" else self.out / "data" / which

    @property
    def base_run(self) -> Path:
        return self.out / "base_en"

    @property
    def base_hf(self) -> Path:
        return self.out / "base_hf"

    @property
    def base_megatron(self) -> Path:
        return self.out / "base_megatron"

    @property
    def cpt_init(self) -> Path:
        return self.out / "cpt_init"

    @property
    def cpt_run(self) -> Path:
        return self.out / "cpt_eeve"

    @property
    def final_hf(self) -> Path:
        return self.out / "final_hf"

    def log(self, step: str) -> Path:
        return self.out / "logs" / f"{step}.log"


def mistral_tokenizer_model() -> Path:
    """The Mistral-7B SentencePiece model that ships with ``mistral-common`` (32,000 pieces)."""
    import mistral_common

    return Path(mistral_common.__file__).parent / "data" / "tokenizer.model.v1"


def _vocab_size(tokenizer_dir: Path) -> tuple[int, int]:
    """(base size, padded expanded size) from an expansion's ``expansion.json``."""
    meta = json.loads((tokenizer_dir / "expansion.json").read_text(encoding="utf-8"))
    return int(meta["base_vocab_size"]), int(meta["padded_vocab_size"])


def _checkpoint(run_dir: Path, steps: int) -> Path:
    return run_dir / "checkpoints" / f"iter_{steps:07d}"


def _render(example: str, overrides: list[str], target: Path) -> Path:
    """Load ``examples/quickstart/<example>`` with ``overrides`` (validated) and write it to ``target``."""
    dump_config(load_config(REPO / "examples" / "quickstart" / example, overrides), target)
    return target


def _datasets(prefixes: dict[str, Path], weights: dict[str, float]) -> str:
    entries = ", ".join(
        f"{{prefix: {prefixes[lang]}, weight: {w}, lang: {lang}}}" for lang, w in weights.items()
    )
    return f"data.datasets=[{entries}]"


# -- steps ---------------------------------------------------------------------------------------


def clean(lay: Layout) -> None:
    """Clean each language's corpus (one JSONL per language; Japanese joins its two files)."""
    for lang, files in CORPORA.items():
        output = lay.clean / f"{lang}.jsonl"
        if output.is_file() and output.with_name(f"{lang}.jsonl.report.json").is_file():
            continue
        raw = lay.out / "raw" / f"{lang}.jsonl"
        raw.parent.mkdir(parents=True, exist_ok=True)
        with raw.open("wb") as sink:
            for name in files:
                with (REPO / "examples" / "corpora" / name).open("rb") as source:
                    shutil.copyfileobj(source, sink)
        lay.clean.mkdir(parents=True, exist_ok=True)
        run_step(
            f"clean {lang}",
            python("tools/clean_corpus.py", raw, output, "--lang", lang),
            lay.log(f"clean_{lang}"),
        )


def base_tokenizer(lay: Layout) -> None:
    """The Mistral SentencePiece model as a Hugging Face tokenizer directory (the base model's)."""
    if (lay.base_tokenizer / "tokenizer_config.json").is_file():
        return
    tmp = lay.out / "base_tokenizer.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shutil.copy2(mistral_tokenizer_model(), tmp / "tokenizer.model")
    config = {"tokenizer_class": "LlamaTokenizer", "legacy": False, "add_prefix_space": None,
              "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}  # fmt: skip
    (tmp / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    tmp.replace(lay.base_tokenizer)


def expand(lay: Layout, budget: Budget) -> None:
    """Extend the Mistral tokenizer with Korean and Japanese tokens; English is reported as held out."""
    if (lay.tokenizer / "expansion.json").is_file():
        return
    corpus = [lay.clean / f"{lang}.jsonl" for lang in TARGET]
    argv = python("tools/expand_vocab.py", "--base", mistral_tokenizer_model(), "--corpus", *corpus,
                  "--output", lay.tokenizer, "--language", "+".join(TARGET),
                  "--heldout", f"en={lay.clean / 'en.jsonl'}", "--train-vocab-size", str(budget.train_vocab_size),
                  "--max-new-tokens", str(budget.new_tokens), "--pad-to-multiple-of", "128", "--overwrite")  # fmt: skip
    run_step("expand tokenizer", argv, lay.log("expand"))


def preprocess(lay: Layout) -> None:
    """Tokenise every language with the base tokenizer and with the expanded one."""
    for which, tokenizer in (
        ("base", mistral_tokenizer_model()),
        ("expanded", lay.tokenizer / "tokenizer.model"),
    ):
        for lang in CORPORA:
            prefix = lay.data(which) / lang
            if prefix.with_name(f"{lang}.stats.json").is_file():
                continue
            argv = python("tools/preprocess_data.py", "--input", lay.clean / f"{lang}.jsonl", "--output-prefix",
                          prefix, "--tokenizer", tokenizer, "--json-keys", "text", "--append-eod",
                          "--workers", "2", "--no-progress")  # fmt: skip
            run_step(f"tokenise {lang} ({which})", argv, lay.log(f"preprocess_{which}_{lang}"))


def train_base(lay: Layout, budget: Budget) -> None:
    """Train the tiny English base model on one process, then export it to Hugging Face format."""
    ckpt = _checkpoint(lay.base_run, budget.base_steps)
    if not (lay.base_hf / "config.json").is_file():
        if not (ckpt / "megacpt.json").is_file():
            config = _render("base_en.yaml", [
                _datasets({"en": lay.data("base") / "en_text_document"}, {"en": 1.0}),
                f"training.train_steps={budget.base_steps}", f"training.eval_steps={budget.eval_steps}",
                f"training.eval_interval={max(1, budget.base_steps // 3)}", f"logging.run_dir={lay.base_run}",
            ], lay.out / "configs" / "base_en.yaml")  # fmt: skip
            argv = python("-m", "megacpt.train", config, "training.eval_at_start=true")
            run_step("train English base", argv, lay.log("train_base"), train_steps=budget.base_steps)
        argv = python("tools/convert_checkpoint.py", "megatron-to-hf", "--input", ckpt, "--output", lay.base_hf,
                      "--tokenizer", lay.base_tokenizer)  # fmt: skip
        run_step("export base to HF", argv, lay.log("export_base"))


def import_base(lay: Layout) -> None:
    """HF base model -> Megatron at TP=2 -> embeddings resized for the expanded tokenizer (eeve init)."""
    if not (lay.base_megatron / "megacpt.json").is_file():
        argv = python("tools/convert_checkpoint.py", "hf-to-megatron", "--input", lay.base_hf,
                      "--output", lay.base_megatron, "--target-tp", str(TP))  # fmt: skip
        run_step("HF -> Megatron", argv, lay.log("import_base"))
    if not (lay.cpt_init / "megacpt.json").is_file():
        argv = python("tools/resize_embeddings.py", "--input", lay.base_megatron, "--output", lay.cpt_init,
                      "--base-tokenizer", lay.base_hf, "--tokenizer", lay.tokenizer, "--preset", "eeve",
                      "--target-tp", str(TP))  # fmt: skip
        run_step("resize embeddings (eeve)", argv, lay.log("resize"))


def train_cpt(lay: Layout, budget: Budget) -> None:
    """The eeve stages at TP=2 on two processes, then the result exported to Hugging Face format."""
    ckpt = _checkpoint(lay.cpt_run, budget.cpt_steps)
    if not (lay.final_hf / "config.json").is_file():
        if not (ckpt / "megacpt.json").is_file():
            old, padded = _vocab_size(lay.tokenizer)
            prefixes = {lang: lay.data("expanded") / f"{lang}_text_document" for lang in MIX}
            config = _render("cpt_eeve.yaml", [
                _datasets(prefixes, MIX), f"model.vocab_size={padded}", f"schedule.old_vocab_size={old}",
                f"training.train_steps={budget.cpt_steps}", f"training.eval_interval={budget.cpt_steps // 7}",
                f"training.eval_steps={budget.eval_steps}", f"checkpoint.pretrained={lay.cpt_init}",
                f"logging.run_dir={lay.cpt_run}",
            ], lay.out / "configs" / "cpt_eeve.yaml")  # fmt: skip
            argv = torchrun(TP, "-m", "megacpt.train", config, "training.eval_at_start=true")
            run_step("continual pretraining (eeve, TP=2)", argv, lay.log("train_cpt"), threads=1,
                     train_steps=budget.cpt_steps)  # fmt: skip
        argv = python("tools/convert_checkpoint.py", "megatron-to-hf", "--input", ckpt, "--output", lay.final_hf,
                      "--tokenizer", lay.tokenizer)  # fmt: skip
        run_step("export result to HF", argv, lay.log("export_final"))


def _check_settings(path: Path, budget: Budget) -> None:
    """Record ``budget`` beside the outputs, or insist it is the one they were made with."""
    wanted = asdict(budget)
    if path.is_file():
        made = json.loads(path.read_text(encoding="utf-8"))
        changed = [
            f"--{k.replace('_', '-')} {made.get(k)} -> {v}" for k, v in wanted.items() if made.get(k) != v
        ]
        if changed:
            raise UserError(
                f"{path.parent} was made with other settings ({'; '.join(changed)}): "
                "rerun with the same settings to resume it, or give a new --out"
            )
        return
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(wanted, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def run(out: Path, budget: Budget) -> report.Summary:
    """Run (or finish) every step under ``out``; returns the report's summary."""
    lay = Layout(out)
    lay.out.mkdir(parents=True, exist_ok=True)
    _check_settings(lay.out / "settings.json", budget)
    steps = [
        ("clean the corpora", lambda: clean(lay)),
        ("base tokenizer as HF", lambda: base_tokenizer(lay)),
        ("expand the Mistral tokenizer with Korean and Japanese", lambda: expand(lay, budget)),
        ("tokenise", lambda: preprocess(lay)),
        ("English base model -> HF", lambda: train_base(lay, budget)),
        ("HF -> Megatron -> resize", lambda: import_base(lay)),
        ("eeve continual pretraining -> HF", lambda: train_cpt(lay, budget)),
    ]
    for i, (title, step) in enumerate(steps, 1):
        print(f"[{i}/{len(steps) + 1}] {title}", flush=True)
        step()
    print(f"[{len(steps) + 1}/{len(steps) + 1}] report", flush=True)
    return report.write_report(lay.out, lay.base_run, lay.cpt_run, lay.tokenizer, lay.data("base"),
                               lay.data("expanded"))  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m megacpt.pipeline.quickstart", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--out", type=Path, default=Path("runs/quickstart"), help="output directory")
    parser.add_argument("--base-steps", type=int, default=Budget.base_steps, help="English base model steps")
    parser.add_argument("--cpt-steps", type=int, default=Budget.cpt_steps, help="eeve steps (multiple of 7)")
    parser.add_argument(
        "--new-tokens", type=int, default=Budget.new_tokens, help="tokens added to the vocabulary"
    )
    parser.add_argument("--train-vocab-size", type=int, default=Budget.train_vocab_size,
                        help="size of the trained ko+ja candidate tokenizer")  # fmt: skip
    parser.add_argument(
        "--eval-steps", type=int, default=Budget.eval_steps, help="validation batches per language"
    )
    return parser.parse_args(argv)


@exits_on_user_error
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    budget = Budget(args.base_steps, args.cpt_steps, args.new_tokens, args.train_vocab_size, args.eval_steps)
    summary = run(args.out.resolve(), budget)
    print("\n".join(summary.verdicts()))
    print(f"report: {summary.markdown}  {summary.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
