"""The cleaning stage as a datatrove pipeline: read, clean, deduplicate, publish.

Five stages, each a datatrove executor's job that depends on the one before (``steps.py`` and
``minhash.py`` hold the steps and say which are datatrove's and which ours):

1. ``clean`` (``--tasks`` tasks, each a contiguous block of the input): read, check, normalise,
   identify the language, filter; write the surviving documents and their fingerprints;
2. ``buckets`` (one task per LSH band): the pairs of documents that share the band's values;
3. ``clusters`` (one task): the first copy of each cluster of duplicates, in input order;
4. ``dedup`` (``--tasks`` tasks): each task's output shard without the later copies;
5. ``publish`` (one task): the merged report, and the output as one file or a folder of shards.

Intermediate files live in a work folder beside the output (``.NAME.clean-work``); every stage
records its finished tasks there, so a run that stopped (killed, a node lost) resumes where it
was when the same command runs again, and the folder is removed once the output is published (a Slurm
run leaves its logs there; the next run replaces them).
The output and report are published atomically, so a failed run leaves no half-written file and
never touches an existing output. datatrove's executors run the stages: local processes by
default, or Slurm jobs (``executor="slurm"``), which return at once with the output to come.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from megacpt.atomic import check_output
from megacpt.clean.config import CleanConfig
from megacpt.clean.minhash import BandPairs, Fingerprints, FirstCopies, minhash_config
from megacpt.clean.plan import plan_tasks
from megacpt.clean.report import CleanReport
from megacpt.clean.slurm import SlurmSettings
from megacpt.clean.steps import (
    CLEANED_CORPUS,
    CleanDocuments,
    KeepFirstCopies,
    Publish,
    ReadInputs,
    WriteKept,
)
from megacpt.errors import UserError
from megacpt.inputs import input_files, is_jsonl

MAX_TASKS = 99_999  # datatrove names the tasks' files with five digits, and orders them by name
TASK_BYTES = 64 << 20  # the default task's share of the input: what one task holds in memory is bounded


def clean_corpus(
    inputs: str | os.PathLike | Sequence[str | os.PathLike],
    output_path: str,
    report_path: str | None = None,
    config: CleanConfig | None = None,
    workers: int | None = None,
    overwrite: bool = False,
    tasks: int | None = None,
) -> CleanReport:
    """Clean the JSONL ``inputs`` (files, globs or directories; plain, ``.gz`` or ``.zst``) into
    ``output_path``: one JSONL file, or a folder of shards when the path ends with ``/``. The JSON
    report goes beside a file (``<output>.report.json``, unless ``report_path`` says where) or into
    the folder (``report.json``). ``tasks`` (default: ``workers``, or one per 64 MiB of input when
    that is more) splits the input; ``workers`` local processes run them. Returns the report. An existing output is replaced only with
    ``overwrite``. A run that stops on an error of the input or settings leaves nothing; one that is
    killed or crashes leaves its work folder, to resume from."""
    plan = _plan(inputs, output_path, report_path, config, workers, overwrite, tasks)
    try:
        _run_locally(plan)
    except UserError:  # the input or the settings: running again cannot resume into anything else
        shutil.rmtree(plan.work, ignore_errors=True)
        raise
    shutil.rmtree(plan.work, ignore_errors=True)
    return CleanReport.read(plan.report_path)


def submit_clean(
    inputs: str | os.PathLike | Sequence[str | os.PathLike],
    output_path: str,
    slurm: SlurmSettings,
    report_path: str | None = None,
    config: CleanConfig | None = None,
    workers: int | None = None,
    overwrite: bool = False,
    tasks: int | None = None,
) -> None:
    """``clean_corpus`` as Slurm jobs, one array per stage, each depending on the one before; returns
    once they are submitted (at most ``workers`` tasks of a stage run at once)."""
    _submit(_plan(inputs, output_path, report_path, config, workers, overwrite, tasks), slurm)


@dataclass(frozen=True)
class _Plan:
    stages: dict[str, list]
    tasks: int
    workers: int
    work: Path
    report_path: str


def _plan(
    inputs: str | os.PathLike | Sequence[str | os.PathLike],
    output_path: str,
    report_path: str | None,
    config: CleanConfig | None,
    workers: int | None,
    overwrite: bool,
    tasks: int | None,
) -> _Plan:
    """Check the run before any work (see ``clean_corpus``) and build its stages."""
    config = config or CleanConfig()
    workers = workers or os.cpu_count() or 1
    paths = input_files(
        [inputs] if isinstance(inputs, (str, os.PathLike)) else inputs, is_jsonl, "JSONL files"
    )
    if not tasks:
        input_bytes = sum(os.path.getsize(p) for p in paths)
        tasks = max(workers, min(-(-input_bytes // TASK_BYTES), MAX_TASKS))
    if workers < 1 or not 1 <= tasks <= MAX_TASKS:
        raise UserError(
            f"workers must be at least 1 and tasks between 1 and {MAX_TASKS}, got {workers} and {tasks}"
        )
    sharded = str(output_path).endswith(("/", os.sep))
    output_path = str(output_path).rstrip("/" + os.sep) if sharded else str(output_path)
    if sharded:
        if report_path is not None:
            raise UserError("a sharded output (a path ending with /) holds its report.json: drop --report")
        report_path = os.path.join(output_path, "report.json")
        check_output(output_path, paths, overwrite, kind=CLEANED_CORPUS)
    else:
        report_path = report_path or output_path + ".report.json"
        check_output(output_path, paths, overwrite)
        if os.path.isfile(output_path) and not os.path.isfile(report_path):
            raise UserError(
                f"{output_path} exists and is not an earlier clean output (no {report_path} beside it): "
                f"not replacing it. Is the output path missing from the command line?"
            )
        check_output(report_path, [], True)
    if len({os.path.realpath(p) for p in (*paths, output_path, report_path)}) < len(set(paths)) + 2:
        raise UserError("the inputs, the output and the report must be different files")
    output = Path(output_path).absolute()
    work = output.with_name(f".{output.name}.clean-work")
    _claim(work, _fingerprint(paths, config, tasks, str(output), sharded))
    report = CleanReport(input=paths, output=output_path, workers=workers, config=_describe(config))
    publish = Publish(work, paths, tasks, output_path, report_path, sharded, report, time.time())
    return _Plan(_stages(paths, config, tasks, work, publish), tasks, workers, work, report_path)


def _stages(
    paths: list[str], config: CleanConfig, tasks: int, work: Path, publish: Publish
) -> dict[str, list]:
    """Each stage's pipeline steps (a stage left out when deduplication is off)."""
    dedup = config.exact_dedup or config.near_dedup
    mh = minhash_config(config.near_dup_threshold, config.num_perm, config.shingle_chars)
    first = [
        ReadInputs(paths, plan_tasks(paths, tasks), config.max_line_bytes),
        CleanDocuments(config, work),
        WriteKept(work),
    ]
    if dedup:
        first.append(Fingerprints(work, mh, near=config.near_dedup))
    stages: dict[str, list] = {"clean": first}
    if config.near_dedup:
        stages["buckets"] = [BandPairs(work, mh)]
    if dedup:
        num_perm = mh.num_buckets * mh.hashes_per_bucket
        stages["clusters"] = [
            FirstCopies(
                work, tasks, num_perm, config.exact_dedup, config.near_dedup, config.near_dup_threshold
            )
        ]
    stages["dedup"] = [KeepFirstCopies(work)]
    stages["publish"] = [publish]
    return stages


def _task_count(stage: str, steps: list, tasks: int) -> int:
    if stage == "buckets":
        return steps[0].bands
    return 1 if stage in ("clusters", "publish") else tasks


def _run_locally(plan: _Plan) -> None:
    from datatrove.executor import LocalPipelineExecutor

    executor = None
    for stage, steps in plan.stages.items():
        count = _task_count(stage, steps, plan.tasks)
        executor = LocalPipelineExecutor(
            steps, tasks=count, workers=min(plan.workers, count), logging_dir=str(plan.work / "logs" / stage),
            depends=executor, start_method="fork",
        )  # fmt: skip
    assert executor is not None
    with _stderr_to(plan.work / "logs" / "console.log"):
        executor.run()


def _submit(plan: _Plan, slurm: SlurmSettings) -> None:
    import subprocess

    from datatrove.executor import SlurmPipelineExecutor
    from loguru import logger

    if shutil.which("sbatch") is None:
        raise UserError("--executor slurm needs Slurm's sbatch on this machine's PATH")
    logger.remove()  # datatrove's account of each submission: warnings only
    logger.add(sys.stderr, level="WARNING")
    executor = None
    work = plan.work
    for stage, steps in plan.stages.items():
        count = _task_count(stage, steps, plan.tasks)
        executor = SlurmPipelineExecutor(
            steps, tasks=count, workers=min(plan.workers, count), time=slurm.time, partition=slurm.partition,
            cpus_per_task=slurm.cpus_per_task, mem_per_cpu_gb=slurm.mem_per_cpu_gb,
            qos="",  # none: a cluster without accounting refuses datatrove's default, "normal"
            job_name=f"clean-{stage}", logging_dir=str(work / "logs" / stage),
            slurm_logs_folder=str(work / "slurm" / stage), depends=executor, venv_path=_venv(),
            mail_type="NONE",
        )  # fmt: skip
    assert executor is not None
    try:
        executor.run()  # sbatch's own errors reach the terminal
    except subprocess.CalledProcessError as err:
        raise UserError(
            f"sbatch refused a cleaning job (exit {err.returncode}): see its message above"
        ) from None


def _venv() -> str | None:
    """This Python's virtual environment, activated by every job (the same code on every node)."""
    return os.path.join(sys.prefix, "bin", "activate") if sys.prefix != sys.base_prefix else None


@contextlib.contextmanager
def _stderr_to(log: Path) -> Iterator[None]:
    """datatrove logs every task's progress to stderr: send it to ``log`` (errors still reach the
    caller as exceptions)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    target = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(target, 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(target)


def _fingerprint(
    paths: list[str], config: CleanConfig, tasks: int, output: str, sharded: bool
) -> dict[str, Any]:
    inputs = [[os.path.abspath(p), os.path.getsize(p), os.path.getmtime(p)] for p in paths]
    return {
        "inputs": inputs,
        "config": _describe(config),
        "tasks": tasks,
        "output": output,
        "sharded": sharded,
    }


def _claim(work: Path, fingerprint: dict[str, Any]) -> None:
    """Make ``work`` this run's work folder: an earlier run's with the same inputs and settings is
    resumed; any other (another command, or a finished run's logs) only holds what a run makes, and
    is replaced."""
    stamp = work / "run.json"
    if work.exists():
        try:
            if json.loads(stamp.read_text(encoding="utf-8")) == json.loads(json.dumps(fingerprint)):
                return
        except (OSError, ValueError):
            pass
        shutil.rmtree(work)
    work.mkdir(parents=True)
    stamp.write_text(json.dumps(fingerprint), encoding="utf-8")


def _describe(config: CleanConfig) -> dict[str, Any]:
    described = asdict(config)
    described["quality"]["disabled"] = sorted(config.quality.disabled)
    described["perplexity"] = [
        {**asdict(rule), "model_dir": str(rule.model_dir)} for rule in config.perplexity
    ]
    return described
