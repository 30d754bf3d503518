"""Clean a JSONL corpus: normalise Unicode, drop boilerplate lines, filter by language and quality,
remove exact and near duplicates; write the kept documents and a JSON report of every removal.

    python tools/clean_corpus.py raw/ko.jsonl clean/ko.jsonl --lang ko --workers 8
    megacpt clean 'crawl/ko/*.jsonl.zst' more/ko/ clean/ko.jsonl --lang ko    # many inputs, one output
    megacpt clean crawl/ko/ clean/ko/ --lang ko --tasks 64 --executor slurm --partition cpu  # shards, on Slurm

It runs as a datatrove pipeline (local processes, or Slurm jobs); an output path ending with / is a
folder of shards. A stopped run resumes when the same command runs again. An existing output is an
error unless ``--overwrite``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from megacpt.atomic import check_output
from megacpt.clean.config import MAX_ORDER, REFERENCE_MODEL, CleanConfig, PerplexityRule
from megacpt.clean.filters import FILTERS, QualityConfig
from megacpt.clean.normalize import FORMS
from megacpt.clean.slurm import SlurmSettings
from megacpt.errors import UserError, exits_on_user_error
from megacpt.options import (
    COUNT,
    NON_NEGATIVE,
    SHARE,
    by_language,
    flag,
    json_key_flag,
    overwrite_flag,
    parse,
    ranged,
    workers_flag,
)

Q = QualityConfig
CUTS = ("none", "1.0", "0.1")  # default cuts: bits per character, context ratio, word-order gain


@dataclass(frozen=True, kw_only=True)
class CleanOptions:
    """``megacpt clean``'s options."""

    input: tuple[str, ...] = flag(positional=True)
    """JSONL files, globs or directories (plain, .gz or .zst; one document per line), read in turn"""
    output: str = flag(positional=True)
    """cleaned JSONL file, or a folder of shards when it ends with / (published atomically)"""
    report: str | None = None
    """JSON report path (default: OUTPUT.report.json; a folder of shards holds its report.json)"""
    json_key: str = json_key_flag(CleanConfig.text_key, old_name="--text-key")
    lang: tuple[str, ...] = flag((), repeat=True)
    """keep only this language (repeatable), e.g. ko"""
    min_lang_prob: float | None = flag(None, type=SHARE, default_text=str(CleanConfig.min_lang_prob))
    """with --lang: minimum language-id probability"""
    normalization: str = flag(CleanConfig.normalization, choices=FORMS)
    """Unicode normalisation form"""
    min_chars: int = flag(Q.min_chars, type=NON_NEGATIVE)
    """drop documents shorter than this many characters"""
    max_chars: int = flag(Q.max_chars, type=COUNT)
    """drop documents longer than this many characters"""
    min_script_share: float = flag(Q.min_script_share, type=SHARE)
    """share of letters in the language's script"""
    max_symbol_ratio: float = flag(Q.max_symbol_ratio, type=SHARE)
    """largest share of punctuation and symbols among non-space characters"""
    max_digit_ratio: float = flag(Q.max_digit_ratio, type=SHARE)
    """largest share of digits among non-space characters"""
    max_dup_line_fraction: float = flag(Q.max_dup_line_fraction, type=SHARE)
    """largest share of characters in lines that repeat an earlier line"""
    max_dup_ngram_fraction: float = flag(Q.max_dup_ngram_fraction, type=SHARE)
    """largest share of characters covered by character n-grams seen twice or more"""
    disable: tuple[str, ...] = flag((), repeat=True, choices=tuple(sorted(FILTERS)))
    """turn a quality filter off (repeatable)"""
    exact_dedup: bool = flag(True, "--no-exact-dedup")
    """keep exact duplicates (no content-hash deduplication)"""
    near_dedup: bool = flag(True, "--no-near-dedup")
    """keep near duplicates (no MinHash deduplication)"""
    near_dup_threshold: float = flag(CleanConfig.near_dup_threshold, type=SHARE)
    """MinHash Jaccard above which a document is a near duplicate"""
    perplexity_model: tuple[str, ...] = flag((), repeat=True, metavar="LANG=DIR")
    """score the documents identified as LANG with this reference model (megacpt perplexity-model) and
    cut them by the three options below (repeatable, one per language)"""
    max_bits_per_char: tuple[str, ...] = flag((), repeat=True, metavar="[LANG=]CUT", default_text="none")
    """with --perplexity-model: most bits per character (CCNet's perplexity, log2): a number, a
    percentile of the reference's held-out documents (p99), or none"""
    max_context_ratio: tuple[str, ...] = flag((), repeat=True, metavar="[LANG=]CUT", default_text=CUTS[1])
    """with --perplexity-model: most bits per character relative to the model's unigram level alone
    (random characters and mojibake score about 1)"""
    min_word_order_gain: tuple[str, ...] = flag((), repeat=True, metavar="[LANG=]CUT", default_text=CUTS[2])
    """with --perplexity-model: fewest bits per character the document's word order must save over its
    words shuffled (shuffled-word text saves none)"""
    workers: int = workers_flag(os.cpu_count() or 1, "tasks run at once (local processes, or Slurm jobs)")
    tasks: int | None = flag(
        None, type=COUNT, default_text="the larger of --workers and one per 64 MiB of input files"
    )
    """parts the input is cut into (contiguous blocks; one output shard each; a compressed file is
    never split); the output does not depend on it"""
    executor: str = flag("local", choices=("local", "slurm"))
    """run the tasks as local processes, or submit them as Slurm jobs (sbatch) and return"""
    partition: str | None = None
    """with --executor slurm: the Slurm partition"""
    slurm_time: str = flag(SlurmSettings.time, metavar="HH:MM:SS")
    """with --executor slurm: each job's time limit"""
    cpus_per_task: int = flag(SlurmSettings.cpus_per_task, type=COUNT)
    """with --executor slurm: cores per job"""
    mem_per_cpu_gb: int = flag(SlurmSettings.mem_per_cpu_gb, type=COUNT)
    """with --executor slurm: memory per core, in GB"""
    overwrite: bool = overwrite_flag()

    def __post_init__(self) -> None:
        if self.min_lang_prob is not None and not self.lang:
            raise UserError("--min-lang-prob applies only with --lang (the languages to keep)")
        cut_options = {"--max-bits-per-char": self.max_bits_per_char, "--max-context-ratio":
                       self.max_context_ratio, "--min-word-order-gain": self.min_word_order_gain}  # fmt: skip
        for option, items in cut_options.items():
            if items and not self.perplexity_model:
                raise UserError(f"{option} applies only with --perplexity-model LANG=DIR")
        if self.executor == "slurm" and not self.partition:
            raise UserError("--executor slurm needs --partition (the Slurm partition to submit to)")
        slurm_only = {"--partition": self.partition is not None, "--slurm-time": self.slurm_time != SlurmSettings.time,
                      "--cpus-per-task": self.cpus_per_task != SlurmSettings.cpus_per_task,
                      "--mem-per-cpu-gb": self.mem_per_cpu_gb != SlurmSettings.mem_per_cpu_gb}  # fmt: skip
        for option, given in slurm_only.items():
            if given and self.executor != "slurm":
                raise UserError(f"{option} applies only with --executor slurm")

    def slurm(self) -> SlurmSettings | None:
        if self.executor != "slurm":
            return None
        assert self.partition is not None
        return SlurmSettings(self.partition, self.slurm_time, self.cpus_per_task, self.mem_per_cpu_gb)

    def perplexity_rules(self) -> tuple[PerplexityRule, ...]:
        """Each language's reference model and cuts; a cut named for a language applies to it, one
        without a language to every language, else the default."""
        from megacpt.clean.perplexity import Cut, load_rule  # numpy: once the options are good

        models = by_language(self.perplexity_model, "--perplexity-model", what="DIR")
        cut_items = (self.max_bits_per_char, self.max_context_ratio, self.min_word_order_gain)
        names = ("--max-bits-per-char", "--max-context-ratio", "--min-word-order-gain")
        cuts = [by_language(items, name, "*", "CUT") for items, name in zip(cut_items, names, strict=True)]
        for given, name in zip(cuts, names, strict=True):
            for language in set(given) - {"*"} - set(models):
                raise UserError(f"{name} {language}=... names a language without --perplexity-model")
        rules = []
        for language, model_dir in models.items():
            chosen = [
                given.get(language, given.get("*", default))
                for given, default in zip(cuts, CUTS, strict=True)
            ]
            bits, ratio, gain = (None if cut == "none" else Cut(cut) for cut in chosen)
            rules.append(load_rule(language, Path(model_dir), (bits, ratio, gain)))
        return tuple(rules)

    def config(self) -> CleanConfig:
        quality = QualityConfig(
            min_script_share=self.min_script_share,
            min_chars=self.min_chars,
            max_chars=self.max_chars,
            max_symbol_ratio=self.max_symbol_ratio,
            max_digit_ratio=self.max_digit_ratio,
            max_dup_line_fraction=self.max_dup_line_fraction,
            max_dup_ngram_fraction=self.max_dup_ngram_fraction,
            disabled=frozenset(self.disable),
        )
        return CleanConfig(
            text_key=self.json_key,
            normalization=self.normalization,
            languages=self.lang,
            min_lang_prob=CleanConfig.min_lang_prob if self.min_lang_prob is None else self.min_lang_prob,
            quality=quality,
            exact_dedup=self.exact_dedup,
            near_dedup=self.near_dedup,
            near_dup_threshold=self.near_dup_threshold,
            perplexity=self.perplexity_rules(),
        )


@exits_on_user_error
def main(argv: list[str] | None = None) -> None:
    options = parse(CleanOptions, argv, __doc__)
    config = options.config()
    try:
        from megacpt.clean.pipeline import clean_corpus, submit_clean  # datatrove: once the options are good
    except ModuleNotFoundError as err:
        if err.name != "datatrove":
            raise
        raise UserError(
            "megacpt clean runs on datatrove, in the clean extra: pip install 'megacpt[clean]'"
        ) from None
    given = options.input, options.output
    slurm = options.slurm()
    if slurm is None:
        report = clean_corpus(
            *given, options.report, config, options.workers, options.overwrite, options.tasks
        )
        print(report.summary())
        return
    submit_clean(*given, slurm, options.report, config, options.workers, options.overwrite, options.tasks)
    print(
        f"submitted the cleaning jobs to Slurm partition {slurm.partition}: the output and its report appear "
        f"at {options.output} when the last job ends (squeue lists them; their logs are in the work folder "
        f"beside the output, which the same command resumes from if a job fails)"
    )


REFERENCE_DOC = """Train a reference model for `megacpt clean --perplexity-model`: a character n-gram model of
text in one language that the cleaned corpus should resemble (CCNet's perplexity filter, as RedWhale
used it), with the scores of held-out reference documents that percentile cuts refer to.

    megacpt perplexity-model --language ko --text ref/ko_wiki.jsonl.zst --output lm/ko
    megacpt clean raw/ko.jsonl clean/ko.jsonl --lang ko --perplexity-model ko=lm/ko
"""


@dataclass(frozen=True, kw_only=True)
class ReferenceModelOptions:
    """``megacpt perplexity-model``'s options."""

    language: str
    """the reference text's language (an ISO 639-1 code, e.g. ko); the text is checked to be in it"""
    text: tuple[Path, ...]
    """reference JSONL files (plain, .gz or .zst)"""
    json_key: str = json_key_flag("text")
    output: Path
    """the model folder to write"""
    order: int = flag(5, type=ranged(int, 2, MAX_ORDER))
    """the n of the character n-grams"""
    heldout_fraction: float = flag(0.1, type=ranged(float, 0, 0.5, above=True))
    """share of reference documents held out to calibrate percentile cuts"""
    seed: int = flag(0, type=NON_NEGATIVE)
    """which documents are held out"""
    max_characters: int = flag(10_000_000, type=COUNT)
    """read the reference text up to this many characters (training takes about 0.5 KB of memory and
    25 us per character)"""
    overwrite: bool = overwrite_flag()


@exits_on_user_error
def perplexity_model_main(argv: list[str] | None = None) -> None:
    options = parse(ReferenceModelOptions, argv, REFERENCE_DOC)
    for path in options.text:
        if not path.is_file():
            raise UserError(f"reference text {path} is not a file")
    check_output(options.output, options.text, options.overwrite, REFERENCE_MODEL)  # before reading
    from megacpt.clean.perplexity import train_reference_model  # numpy: once the options are good
    from megacpt.tokenizer.corpus import iter_texts

    texts: list[str] = []
    characters = 0
    for text in iter_texts(options.text, options.json_key):
        if characters >= options.max_characters:
            print(
                f"read the reference's first {len(texts)} documents: --max-characters {options.max_characters:,}"
            )
            break
        texts.append(text)
        characters += len(text)
    meta = train_reference_model(
        texts, options.language, options.output, order=options.order, heldout_fraction=options.heldout_fraction,
        seed=options.seed, sources=tuple(map(str, options.text)), overwrite=options.overwrite,
    )  # fmt: skip
    held = meta["heldout_percentiles"]
    print(
        f"wrote {options.output}: a {meta['language']} {meta['order']}-gram character model of "
        f"{meta['train_documents']} documents ({meta['train_characters']:,} characters); on "
        f"{meta['heldout_documents']} held-out documents: bits/char median {held['bits_per_character'][50]:.2f} "
        f"(p99 {held['bits_per_character'][99]:.2f}), context ratio median {held['context_ratio'][50]:.2f}, "
        f"word-order gain p1 {held['word_order_gain'][1]:.2f}"
    )
