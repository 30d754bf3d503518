"""``megacpt clean``'s own datatrove pipeline steps, around the deduplication stages (``minhash.py``).

- ``ReadInputs``: a task's contiguous block of the inputs (``plan.py``), every line a document,
  bad ones included, named by its position. datatrove's ``JsonlReader`` is not used: it drops
  malformed lines with a log message, where our report counts and shows each, and it cannot split
  one large file between tasks;
- ``CleanDocuments``: a datatrove ``BaseFilter`` running ``DocumentCleaner`` (our input checks,
  Korean/Japanese-aware normalisation, py3langid, quality filters, perplexity); datatrove's own
  language filter downloads a fastText model and its quality filters are tuned on English;
- ``WriteKept``: each task's surviving documents, in order, for the stages after deduplication;
- ``KeepFirstCopies``: drops what ``FirstCopies`` found to be later copies, writes the output shard;
- ``Publish``: one task merges the tasks' reports and publishes the output atomically.

Each task saves a ``ReportPart``; the published report merges them, so counts and examples do
not depend on the number of tasks.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.filters.base_filter import BaseFilter

from megacpt.atomic import atomic_directory, atomic_path
from megacpt.clean.config import CleanConfig
from megacpt.clean.documents import DocumentCleaner, Dropped, line_numbers, split_position
from megacpt.clean.plan import Unit, read_unit
from megacpt.clean.report import CleanReport, ReportPart
from megacpt.errors import UserError
from megacpt.inputs import open_binary

CLEANED_CORPUS = "cleaned corpus"  # a sharded output's kind, for megacpt.atomic


def kept_path(work: Path, rank: int) -> Path:
    return work / "kept" / f"{rank:05d}.jsonl"


class ReadInputs(PipelineStep):
    """Task ``rank`` reads its units' lines as documents: empty text, the raw bytes in metadata."""

    name = "📖 read inputs"
    type = "📖 - READER"

    def __init__(self, paths: list[str], plan: list[list[Unit]], max_line_bytes: int) -> None:
        super().__init__()
        self.paths, self.plan, self.max_line_bytes = paths, plan, max_line_bytes

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        for unit in self.plan[rank]:
            for pos, raw in read_unit(self.paths[unit.index], unit, self.max_line_bytes):
                self.stat_update("lines")
                yield Document(text="", id=str(pos), metadata={"position": pos, "raw": raw})


class CleanDocuments(BaseFilter):
    """Keeps a document that passes every check, its text cleaned; records each removal and why."""

    name = "🧹 clean"

    def __init__(self, config: CleanConfig, work: Path) -> None:
        super().__init__()
        self.config, self.work = config, work
        self.cleaner: DocumentCleaner | None = None
        self.part = ReportPart()

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        self.cleaner, self.part = DocumentCleaner(self.config), ReportPart()
        yield from super().run(data, rank, world_size)
        self.part.save(self.work / "reports" / f"clean-{rank:05d}.json")

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        assert self.cleaner is not None
        pos = doc.metadata["position"]
        self.part.documents_in += 1
        outcome = self.cleaner(doc.metadata.pop("raw"), first_line=split_position(pos)[1] == 0)
        if isinstance(outcome, Dropped):
            self.part.remove(outcome.filter, pos, outcome.doc_id, outcome.why)
            return False, outcome.filter
        doc.text = outcome.text
        doc.metadata.update(
            json_line=outcome.json_line, lang=outcome.lang, boilerplate=outcome.boilerplate_lines,
            changed=outcome.changed,
        )  # fmt: skip
        return True


class WriteKept(PipelineStep):
    """Writes each passing document (its place and counts, a tab, its JSON line) and passes it on."""

    name = "💾 kept so far"
    type = "💽 - WRITER"

    def __init__(self, work: Path) -> None:
        super().__init__()
        self.work = work

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        path = kept_path(self.work, rank)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8") as out:
            for doc in data:
                m = doc.metadata
                out.write(json.dumps([m["position"], m["lang"], m["boilerplate"], m["changed"]]))
                out.write("\t" + m["json_line"] + "\n")  # JSON escapes a tab inside a string
                yield doc


class KeepFirstCopies(PipelineStep):
    """Writes task ``rank``'s output shard: its kept documents less the later copies."""

    name = "✂️ keep first copies"
    type = "🫂 - DEDUP"

    def __init__(self, work: Path) -> None:
        super().__init__()
        self.work = work

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        removal_file = self.work / "removals" / f"{rank:05d}.npy"
        removals = iter(np.load(removal_file).tolist() if removal_file.exists() else [])  # sorted by index
        removal = next(removals, None)
        part = ReportPart()
        shard = self.work / "shards" / f"{rank:05d}.jsonl"
        shard.parent.mkdir(parents=True, exist_ok=True)
        with (
            open(kept_path(self.work, rank), encoding="utf-8") as src,
            open(shard, "w", encoding="utf-8") as dst,
        ):
            for index, line in enumerate(src):
                meta, json_line = line.split("\t", 1)
                pos, lang, boilerplate, changed = json.loads(meta)
                if removal is None or removal[0] != index:
                    dst.write(json_line)
                    part.keep(lang, boilerplate, changed)
                    continue
                _, first, exact, jaccard = removal
                removal = next(removals, None)
                doc_id = json.loads(json_line).get("id")
                if exact:
                    part.remove("exact_duplicate", pos, doc_id, "same text as {first}", first)
                else:
                    part.remove(
                        "near_duplicate",
                        pos,
                        doc_id,
                        f"estimated Jaccard {jaccard:.2f} with {{first}}",
                        first,
                    )
                self.stat_update("removed")
        part.save(self.work / "reports" / f"dedup-{rank:05d}.json")
        return iter(())


class Publish(PipelineStep):
    """One task: merges the reports, then publishes the shards as one file or as a folder of shards,
    with the report; nothing is published when no document survived (an error naming the reasons)."""

    name = "📦 publish"
    type = "💽 - WRITER"

    def __init__(self, work: Path, paths: list[str], tasks: int, output: str, report_path: str,
                 sharded: bool, report: CleanReport, started: float) -> None:  # fmt: skip
        super().__init__()
        self.work, self.paths, self.tasks, self.output = work, paths, tasks, output
        self.report_path, self.sharded, self.report, self.started = report_path, sharded, report, started

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        published = self.work / "published"
        if not published.exists():  # else a run stopped while it cleaned up: only that is left
            self._publish()
            published.touch()
        for intermediate in (
            "kept",
            "signatures",
            "buckets",
            "records",
            "keys",
            "removals",
            "memberships",
            "shards",
            "reports",
        ):
            shutil.rmtree(self.work / intermediate, ignore_errors=True)
        (self.work / "run.json").unlink(
            missing_ok=True
        )  # a later run starts afresh; the logs stay, for Slurm
        return iter(())

    def _publish(self) -> None:
        report = self.report
        for stage in ("clean", "dedup"):
            for task in range(self.tasks):
                report.add(
                    json.loads(
                        (self.work / "reports" / f"{stage}-{task:05d}.json").read_text(encoding="utf-8")
                    )
                )
        report.resolve(self._describer(report.positions()))
        report.seconds = round(time.time() - self.started, 3)
        if not report.documents_out:
            # beside a file output as usual; beside a folder of shards, which is not created for it
            failure_report = self.output + ".report.json" if self.sharded else self.report_path
            report.write(failure_report)
            removed = (
                ", ".join(f"{r}: {n}" for r, n in report.removed.items() if n)
                or "the input holds no documents"
            )
            raise UserError(
                f"kept 0 of {report.documents_in} documents ({removed}); nothing written to "
                f"{self.output}, see {failure_report}"
            )
        shards = [self.work / "shards" / f"{task:05d}.jsonl" for task in range(self.tasks)]
        if self.sharded:
            with atomic_directory(self.output, CLEANED_CORPUS, replace=True) as tmp:
                for task, shard in enumerate(shards):
                    if shard.stat().st_size:  # linked, not moved: a failed publish can run again
                        _link_or_copy(shard, tmp / f"part-{task:05d}.jsonl")
                report.write(tmp / "report.json")
        else:
            with atomic_path(self.output) as tmp, open(tmp, "wb") as out:
                for shard in shards:
                    with open(shard, "rb") as src:
                        shutil.copyfileobj(src, out, 1 << 20)
            report.write(self.report_path)

    def _describer(self, positions: list[int]) -> Any:
        """Position -> {file, line, place}: line numbers found in one pass over each file named."""
        wanted: dict[int, list[int]] = {}
        for pos in positions:
            index, offset = split_position(pos)
            wanted.setdefault(index, []).append(offset)
        lines: dict[int, dict[int, int]] = {}
        for index, offsets in wanted.items():
            with open_binary(self.paths[index]) as stream:
                lines[index] = line_numbers(stream, offsets)
        several = len(self.paths) > 1

        def describe(pos: int) -> dict[str, Any]:
            index, offset = split_position(pos)
            line = lines[index][offset]
            path = self.paths[index]
            return {"file": path, "line": line, "place": f"{path} line {line}" if several else f"line {line}"}

        return describe


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # another file system, or one without hard links
        shutil.copyfile(source, target)
