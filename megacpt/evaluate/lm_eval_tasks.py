"""lm-evaluation-harness tasks for bits per byte on local JSONL, and the command that matches ``val_bpb``.

``write_tasks`` writes one task per language (``megacpt_bpb_<lang>``: ``loglikelihood_rolling`` over
the ``text`` field of a local JSONL file, metric ``bits_per_byte``) plus a group ``megacpt_bpb``
into a folder for ``lm_eval --include_path``. The data is read by the ``datasets`` library's
packaged ``json`` builder, so nothing is fetched from a hub. ``command`` gives the ``lm_eval`` line
whose model arguments make the harness score exactly what the trainer's validation scores
(``megacpt.evaluate.windows``): windows of ``max_length`` = the run's sequence length, the
end-of-document id as ``prefix_token_id``, no BOS added.

    megacpt lm-eval-tasks --out tasks ko=heldout/ko.jsonl ja=heldout/ja.jsonl \\
        --model runs/x/final_hf --seq-length 512
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from megacpt.atomic import LM_EVAL_TASKS, atomic_directory, check_output
from megacpt.errors import UserError, exits_on_user_error
from megacpt.options import NON_NEGATIVE, flag, overwrite_flag, parse, ranged
from megacpt.tokenizer.corpus import iter_texts

GROUP = "megacpt_bpb"


def task_name(lang: str) -> str:
    return f"{GROUP}_{lang}"


def write_tasks(
    out_dir: str | os.PathLike, files: Mapping[str, str | os.PathLike], overwrite: bool = False
) -> list[str]:
    """Write the task YAMLs for ``files`` (language -> JSONL) as the folder ``out_dir``, whole (an
    earlier one only with ``overwrite``, none of its old tasks kept); returns the task names."""
    if not files:
        raise UserError("no held-out files given: pass LANG=FILE.jsonl")
    for lang, path in files.items():
        if not Path(path).is_file():
            raise UserError(f"{path}: no such JSONL file")
        if next(iter_texts([Path(path)]), None) is None:
            raise UserError(f"{path} holds no non-empty 'text' field: nothing to score for {lang}")
    check_output(out_dir, files.values(), overwrite, LM_EVAL_TASKS)
    with atomic_directory(out_dir, LM_EVAL_TASKS, replace=overwrite) as out:
        return _write(out, files)


def _write(out: Path, files: Mapping[str, str | os.PathLike]) -> list[str]:
    names = []
    for lang, path in files.items():
        source = Path(path).resolve()
        task = {
            "task": task_name(lang),
            "dataset_path": "json",
            "dataset_kwargs": {"data_files": {"test": str(source)}},
            "test_split": "test",
            "output_type": "loglikelihood_rolling",
            "doc_to_text": "",
            "doc_to_target": "{{text}}",
            "metric_list": [{"metric": "bits_per_byte"}],
            "metadata": {"version": 1.0},
        }
        (out / f"{task_name(lang)}.yaml").write_text(
            yaml.safe_dump(task, allow_unicode=True, sort_keys=False)
        )
        names.append(task_name(lang))
    group = {"group": GROUP, "task": names, "metadata": {"version": 1.0}}
    (out / f"{GROUP}.yaml").write_text(yaml.safe_dump(group, sort_keys=False))
    return names


def model_args(model_dir: str | os.PathLike, seq_length: int, eod_id: int) -> str:
    """``--model_args`` that score what the trainer's validation scores."""
    return f"pretrained={model_dir},max_length={seq_length},prefix_token_id={eod_id},add_bos_token=False"


def command(model_dir: str | os.PathLike, tasks_dir: str | os.PathLike, seq_length: int, eod_id: int) -> str:
    return (
        f"lm_eval --model hf --model_args {model_args(model_dir, seq_length, eod_id)} "
        f"--include_path {tasks_dir} --tasks {GROUP} --batch_size 8"
    )


def _eos_id(model_dir: str) -> int:
    from transformers import AutoTokenizer

    eos = AutoTokenizer.from_pretrained(model_dir).eos_token_id
    if eos is None:
        raise UserError(f"{model_dir}: its tokenizer has no end-of-sequence token; pass --eod-id")
    return int(eos)


@dataclass(frozen=True, kw_only=True)
class TasksOptions:
    """``megacpt lm-eval-tasks``'s options."""

    files: tuple[str, ...] = flag(positional=True, metavar="LANG=FILE.jsonl")
    """held-out JSONL (field 'text') per language"""
    out: Path
    """folder for the task YAMLs (lm_eval --include_path)"""
    model: str
    """the Hugging Face export the printed command evaluates"""
    seq_length: int = flag(4096, type=ranged(int, 2))
    """the run's data.seq_length"""
    eod_id: int | None = flag(None, type=NON_NEGATIVE, default_text="the model's eos")
    """the run's data.eod_id"""
    overwrite: bool = overwrite_flag()


@exits_on_user_error
def main(argv: list[str] | None = None) -> None:
    args = parse(
        TasksOptions, argv, __doc__.split("\n")[0], module_form="python -m megacpt.evaluate.lm_eval_tasks"
    )
    files: dict[str, str] = {}
    for item in args.files:
        lang, sep, path = item.partition("=")
        if not sep or not lang or not path:
            raise UserError(f"expected LANG=FILE.jsonl, got {item!r}")
        if lang in files:
            raise UserError(f"language {lang!r} is given twice ({files[lang]}, {path})")
        files[lang] = path
    if not (Path(args.model) / "config.json").is_file():
        raise UserError(f"{args.model} is not a Hugging Face model directory (no config.json)")
    eod = args.eod_id if args.eod_id is not None else _eos_id(args.model)
    write_tasks(args.out, files, args.overwrite)
    print(command(args.model, args.out, args.seq_length, eod))


if __name__ == "__main__":
    main()
