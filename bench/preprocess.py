"""Preprocessing throughput and memory: tools/preprocess_data.py against the reference method and the raw limit.

Input: the bundled ko/ja/en corpora replicated to ``--size-mb`` (and ``--big-mb`` for the memory
check) of JSONL in ``--tmp``; tokenizer: Mistral-7B's SentencePiece model from ``mistral-common``.
All in one run, with the same tokenizer and the same ``--workers``:

(a) ours: ``tools/preprocess_data.py --workers W --append-eod`` (wall time of the whole command)
    against the reference method, Megatron-LM's ``preprocess_data.py`` loop: a process pool
    JSON-decoding and encoding one document at a time (``pool.imap(..., chunksize=32)``) into
    Megatron-core's Python ``IndexedDatasetBuilder.add_document``; its output must be byte-identical.
(b) ours against the raw limits: the tokenizer's own batch encoding of the same texts
    (``encode(texts, num_threads=W)``), texts already in memory, nothing written; and gigatoken's
    raw ``Tokenizer.from_sentencepiece(...).encode_files(JsonlFileSource([file]))`` as a whole
    process (reading, JSON and encoding in Rust, every token held in memory, nothing written).
    With ``--megatron-lm DIR`` (a Megatron-LM checkout, not part of this repository), also
    Megatron-LM's own ``tools/preprocess_data.py`` on the same file.
(c) peak memory (sum of RSS over the process tree, sampled every 50 ms) of ours at ``--size-mb``
    and at ``--big-mb``.
(a) and (b) are also given in CPU seconds (the process tree's user + system time), which a
machine shared with other work disturbs far less than wall time.
(d) the C++ builder alone against Megatron-core's Python ``IndexedDatasetBuilder``, on the same
    documents: the first ``--builder-docs`` of the corpus tokenised by the same model, with the
    end-of-document id (made once, kept in ``--tmp``). Each builder fed the way its users feed it,
    finalize included, ``--builder-repeats`` interleaved repeats, median [min-max] of wall time:
    (d1) lists of ids, what tokenizers return: ours ``add_lists`` 256 documents per call,
         Megatron's ``add_document(ids, [len(ids)])`` as Megatron-LM's preprocess_data.py calls it;
    (d2) NumPy, each builder's fastest input: ours ``add_documents`` of one flat uint16 array
         per 256 documents, Megatron's ``add_document`` of one uint16 array per document.
    Ours fsyncs its .bin and .idx, Megatron's builder does not: its time plus an fsync of its two
    files is also given. The inputs are frozen out of the garbage collector, which would
    otherwise charge Megatron's allocating builder for scanning them. Also timed: making (d2)'s
    flat input from lists in Python (np.fromiter), against handing the lists over.
(e) merging 8 shards: ours ``merge`` (streamed) against Megatron's ``add_index`` per shard
    (which holds every index in Python lists) then finalize.
``--only-builders`` runs (d) and (e) alone (a minute, plus about 20 s of tokenising once).

    python bench/preprocess.py --size-mb 200 --big-mb 1000 --workers 2
    python bench/preprocess.py --only-builders --builder-repeats 7
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import shutil
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
CORPORA = REPO / "examples" / "corpora"


def model_path() -> str:
    import mistral_common

    return str(Path(mistral_common.__file__).parent / "data" / "tokenizer.model.v1")


def build_corpus(path: Path, size_mb: int) -> None:
    """Replicate the bundled corpora (line by line, interleaved) up to ``size_mb`` MB."""
    if path.exists() and path.stat().st_size >= size_mb * 1e6:
        return
    lines = [ln for f in sorted(CORPORA.glob("*/*.jsonl")) for ln in f.read_bytes().splitlines(keepends=True)]
    written = 0
    with open(f"{path}.partial", "wb") as out:
        for line in itertools.cycle(lines):
            out.write(line)
            written += len(line)
            if written >= size_mb * 1e6:
                break
    os.replace(f"{path}.partial", path)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_tree(cmd: list[str]) -> tuple[float, float, float]:
    """Run ``cmd``; return (wall seconds, CPU seconds of it and its descendants, peak summed RSS
    of the process tree in MiB). CPU time is what survives a machine shared with other work."""
    cpu = _children_cpu()
    start = time.perf_counter()
    proc = psutil.Popen(cmd, cwd=REPO)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            try:
                procs = [proc, *proc.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in procs if p.is_running()))
            except psutil.Error:
                pass
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    code = proc.wait()
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    if code != 0:
        raise SystemExit(f"{cmd[:3]} failed with exit code {code}")
    return seconds, _children_cpu() - cpu, peak / 2**20


# ---------------------------------------------------------------- the reference method

_SP = None


def _ref_init(model: str) -> None:
    global _SP
    import sentencepiece as spm

    _SP = spm.SentencePieceProcessor(model_file=model)


def _ref_encode(line: str) -> list[int]:
    assert _SP is not None
    return [*_SP.encode_as_ids(json.loads(line)["text"]), _SP.eos_id()]


def reference_run(corpus: str, prefix: str, workers: int) -> None:
    """Megatron-LM's preprocess_data.py loop, with Megatron-core's Python builder."""
    import multiprocessing as mp

    import numpy as np
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    builder = IndexedDatasetBuilder(f"{prefix}.bin", dtype=np.uint16)
    with open(corpus, encoding="utf-8") as fin, mp.Pool(workers, _ref_init, (model_path(),)) as pool:
        for ids in pool.imap(_ref_encode, fin, 32):
            builder.add_document(ids, [len(ids)])
    builder.finalize(f"{prefix}.idx")


_DOCS: list[list[int]] = []


def _ceiling_init(prefix: str, documents: int) -> None:
    from megacpt.data.indexed import read_documents

    _DOCS.extend(d.tolist() for d in itertools.islice(read_documents(prefix), documents))


def _ceiling_item(i: int) -> list[int]:
    return _DOCS[i]


def reference_ceiling(prefix: str, workers: int, documents: int) -> float:
    """Documents/s of the reference loop when encoding costs nothing: workers hand back
    pre-tokenised documents, so only its single consuming process (unpickling, the Python
    builder, finalize) is timed. No number of workers takes the reference past this rate."""
    import multiprocessing as mp

    import numpy as np
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    with mp.Pool(workers, _ceiling_init, (prefix, documents)) as pool:
        pool.map(_ceiling_item, range(workers * 4), 1)  # every worker initialised before timing
        start = time.perf_counter()
        builder = IndexedDatasetBuilder(f"{prefix}.ceiling.bin", dtype=np.uint16)
        for ids in pool.imap(_ceiling_item, range(documents), 32):
            builder.add_document(ids, [len(ids)])
        builder.finalize(f"{prefix}.ceiling.idx")
        return documents / (time.perf_counter() - start)


# ---------------------------------------------------------------- the raw limit and the builders


def raw_limit(corpus: Path, workers: int) -> tuple[float, float, int]:
    """(wall, CPU) seconds of the tokenizer's own batch encoding of every text (in memory), nothing written."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=model_path())
    with open(corpus, encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f]
    seconds = cpu = 0.0
    tokens = 0
    for i in range(0, len(texts), 20_000):
        start, start_cpu = time.perf_counter(), time.process_time()
        ids = sp.encode(texts[i : i + 20_000], num_threads=workers)
        seconds += time.perf_counter() - start
        cpu += time.process_time() - start_cpu
        tokens += sum(map(len, ids))
    return seconds, cpu, tokens


def gigatoken_raw(*corpora: Path) -> list[str]:
    """A whole process running gigatoken's raw file encoding (the speed bar for (b))."""
    code = (
        "import gigatoken, sys; t = gigatoken.Tokenizer.from_sentencepiece(sys.argv[1]); "
        "a = t.encode_files(gigatoken.JsonlFileSource(sys.argv[2:], field='text')); print(len(a))"
    )
    return [sys.executable, "-c", code, model_path(), *map(str, corpora)]


def megatron_lm_cmd(checkout: Path, corpus: Path, prefix: Path, workers: int) -> list[str]:
    return [
        sys.executable,
        str(checkout / "tools" / "preprocess_data.py"),
        "--input",
        str(corpus),
        "--output-prefix",
        str(prefix),
        "--tokenizer-type",
        "SentencePieceTokenizer",
        "--tokenizer-model",
        model_path(),
        "--append-eod",
        "--workers",
        str(workers),
        "--json-keys",
        "text",
    ]


def builder_tokens(corpus: Path, documents: int, workers: int) -> str:
    """Prefix of a dataset of the first ``documents`` documents of ``corpus`` tokenised by the
    Mistral SentencePiece model, each ending with the end-of-document id (as (a) writes them).
    Made once per corpus and kept next to it."""
    import numpy as np
    import sentencepiece as spm

    from megacpt.data.indexed import IndexedWriter

    prefix = f"{corpus.with_suffix('')}.tokens{documents}"
    if not os.path.exists(f"{prefix}.idx"):
        sp = spm.SentencePieceProcessor(model_file=model_path())
        with open(corpus, encoding="utf-8") as f:
            texts = [json.loads(line)["text"] for line in itertools.islice(f, documents)]
        with IndexedWriter(prefix, np.uint16) as writer:
            for i in range(0, len(texts), 20_000):
                writer.add_lists(sp.encode(texts[i : i + 20_000], num_threads=workers), sp.eos_id())
    return prefix


def _timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall, CPU) seconds of ``fn()`` in this process."""
    start, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - start, time.process_time() - cpu


def _fsync(*paths: Path) -> None:
    for path in paths:
        with open(path, "rb+") as f:
            os.fsync(f.fileno())


class Spread:
    """Median and range of repeated timings."""

    def __init__(self) -> None:
        self.values: list[float] = []

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def __str__(self) -> str:
        return f"{self.median:.3f} s [{min(self.values):.3f}-{max(self.values):.3f}]"


def builders(prefix: str, tmp: Path, repeats: int, batch: int = 256, shards: int = 8) -> None:
    """(d) and (e): the C++ writer against Megatron-core's Python builder on the same documents.

    Each repeat runs every variant once, interleaved, each to its own finish (finalize included);
    the outputs must be byte-identical. Ours fsyncs its .bin and .idx; Megatron's builder does
    not, so its time plus fsyncing its two files is also given ("same durability")."""
    import gc

    import numpy as np
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    from megacpt.data.indexed import IndexedWriter, merge, read_documents

    arrays = [np.array(d) for d in read_documents(prefix)]  # uint16, the dataset's dtype: fastest for both
    lists = [a.tolist() for a in arrays]
    lengths = np.array([a.size for a in arrays], dtype=np.int64)
    flat = np.concatenate(arrays)
    starts = np.concatenate([[0], np.cumsum(lengths)])
    docs, tokens = len(arrays), int(flat.size)

    def ours_lists() -> None:
        with IndexedWriter(tmp / "cpp_lists", np.uint16) as w:
            for i in range(0, docs, batch):
                w.add_lists(lists[i : i + batch])

    def ours_numpy() -> None:
        with IndexedWriter(tmp / "cpp_numpy", np.uint16) as w:
            for i in range(0, docs, batch):
                j = min(i + batch, docs)
                w.add_documents(flat[starts[i] : starts[j]], lengths[i:j])

    def megatron(name: str, source: list) -> Callable[[], None]:
        def run() -> None:
            builder = IndexedDatasetBuilder(str(tmp / f"{name}.bin"), dtype=np.uint16)
            for doc in source:
                builder.add_document(doc, [len(doc)])
            builder.finalize(str(tmp / f"{name}.idx"))

        return run

    def to_flat() -> None:  # what handing the C++ writer NumPy costs a worker holding lists
        for i in range(0, docs, batch):
            part = lists[i : i + batch]
            n = np.fromiter(map(len, part), np.int64, len(part))
            np.fromiter(itertools.chain.from_iterable(part), np.int64, int(n.sum()))

    for i in range(shards):  # (e)'s inputs, written once
        with IndexedWriter(tmp / f"shard{i}", np.uint16) as w:
            w.add_documents(
                flat[starts[i * docs // shards] : starts[(i + 1) * docs // shards]],
                lengths[i * docs // shards : (i + 1) * docs // shards],
            )

    def megatron_merge() -> None:
        builder = IndexedDatasetBuilder(str(tmp / "py_merged.bin"), dtype=np.uint16)
        for i in range(shards):
            builder.add_index(str(tmp / f"shard{i}"))
        builder.finalize(str(tmp / "py_merged.idx"))

    runs = {  # keyed by the prefix each writes
        "cpp_lists": ours_lists,
        "py_lists": megatron("py_lists", lists),
        "cpp_numpy": ours_numpy,
        "py_numpy": megatron("py_numpy", arrays),
        "to_flat": to_flat,
        "cpp_merged": lambda: merge(tmp / "cpp_merged", [tmp / f"shard{i}" for i in range(shards)]),
        "py_merged": megatron_merge,
    }
    wall = {name: Spread() for name in runs}
    cpu = {name: Spread() for name in runs}
    durable = {name: Spread() for name in runs if name.startswith("py_")}  # Megatron's, then fsync
    gc.collect()
    gc.freeze()  # the inputs stay out of every collection: Megatron's builder allocates, ours does not
    print(
        f"(d) builders on the first {docs:,} documents ({tokens:,} tokens, {tokens / docs:.0f} per "
        f"document) of the corpus tokenised by SentencePiece; {repeats} repeats, median "
        f"[min-max]; load average before: {os.getloadavg()}"
    )
    for repeat in range(repeats):
        for name, run in runs.items():
            for f in tmp.glob(f"{name}.*"):
                f.unlink()  # every writer starts from nothing
            seconds, cpu_seconds = _timed(run)
            wall[name].values.append(seconds)
            cpu[name].values.append(cpu_seconds)
            if name in durable:
                sync = _timed(lambda: _fsync(tmp / f"{name}.bin", tmp / f"{name}.idx"))[0]  # noqa: B023
                durable[name].values.append(seconds + sync)
        if repeat == 0:
            for a, b in (
                ("cpp_lists", "py_lists"),
                ("cpp_numpy", "py_numpy"),
                ("cpp_merged", "py_merged"),
                ("cpp_lists", "cpp_numpy"),
                ("cpp_lists", "cpp_merged"),
            ):
                for ext in (".bin", ".idx"):
                    assert (tmp / f"{a}{ext}").read_bytes() == (tmp / f"{b}{ext}").read_bytes(), f"{a} != {b}"

    def report(label: str, ours: str, theirs: str, goal: str) -> None:
        print(
            f"{label}: ours {wall[ours]} (CPU {cpu[ours].median:.3f} s); Megatron {wall[theirs]} "
            f"(CPU {cpu[theirs].median:.3f} s), with fsync of its files {durable[theirs]}"
        )
        print(
            f"    ours / Megatron speed: x{wall[theirs].median / wall[ours].median:.1f} by wall time{goal}; "
            f"x{durable[theirs].median / wall[ours].median:.1f} at the same durability; "
            f"x{cpu[theirs].median / cpu[ours].median:.1f} by CPU time"
        )

    report(
        f"(d1) lists in (add_lists, {batch} per call / add_document per list)",
        "cpp_lists",
        "py_lists",
        " (goal >= 20)",
    )
    report(
        f"(d2) NumPy in (add_documents of a flat uint16 array, {batch} documents per call / "
        "add_document per uint16 array)",
        "cpp_numpy",
        "py_numpy",
        " (goal >= 20)",
    )
    print(
        f"    making (d2)'s flat input from lists (np.fromiter, as a worker would): {wall['to_flat']} = "
        f"x{wall['to_flat'].median / wall['cpp_lists'].median:.1f} all of (d1)'s ours"
    )
    report(f"(e) merging {shards} shards (merge / add_index per shard)", "cpp_merged", "py_merged", "")
    print(f"load average after: {os.getloadavg()}")
    gc.unfreeze()
    for name in [*runs, *(f"shard{i}" for i in range(shards))]:
        for f in tmp.glob(f"{name}.*"):
            f.unlink()


def _median_run(runs: list[tuple[float, float, float]]) -> tuple[float, float, float]:
    """The run of median wall time."""
    return sorted(runs)[len(runs) // 2]


def ours_cmd(corpus: Path, prefix: Path, workers: int) -> list[str]:
    return [
        sys.executable,
        str(REPO / "tools" / "preprocess_data.py"),
        "--input",
        str(corpus),
        "--output-prefix",
        str(prefix),
        "--tokenizer",
        model_path(),
        "--append-eod",
        "--workers",
        str(workers),
        "--no-progress",
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size-mb", type=int, default=200)
    p.add_argument("--big-mb", type=int, default=1000, help="0 skips the memory run on the big input")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--tmp", default="/tmp/megacpt-bench-preprocess")
    p.add_argument("--builder-docs", type=int, default=200_000, help="documents for (d) and (e)")
    p.add_argument("--builder-repeats", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3, help="runs of ours and of gigatoken raw (medians)")
    p.add_argument("--only-builders", action="store_true", help="run only (d) and (e)")
    p.add_argument(
        "--megatron-lm", type=Path, default=None, help="a Megatron-LM checkout: time its script too"
    )
    p.add_argument(
        "--reference-run", nargs=3, metavar=("CORPUS", "PREFIX", "WORKERS"), help=argparse.SUPPRESS
    )
    args = p.parse_args()
    if args.reference_run:
        corpus, prefix, workers = args.reference_run
        reference_run(corpus, prefix, int(workers))
        return
    tmp = Path(args.tmp)
    tmp.mkdir(parents=True, exist_ok=True)
    corpus = tmp / f"corpus{args.size_mb}.jsonl"
    build_corpus(corpus, args.size_mb)
    mb = corpus.stat().st_size / 1e6
    print(f"input: {corpus} ({mb:.0f} MB), workers={args.workers}, load average before: {os.getloadavg()}")
    for f in tmp.iterdir():  # earlier outputs: a finished run would not be redone
        if f.is_dir():
            shutil.rmtree(f)
        elif not f.name.startswith("corpus"):
            f.unlink()
    if args.only_builders:
        builders(builder_tokens(corpus, args.builder_docs, args.workers), tmp, args.builder_repeats)
        return

    # ours and gigatoken's raw encoding alternate, --repeats times each: medians of the same minutes
    ours_runs, giga_runs = [], []
    for _ in range(args.repeats):
        for f in tmp.glob("ours*"):
            f.unlink()
        ours_runs.append(timed_tree(ours_cmd(corpus, tmp / "ours", args.workers)))
        giga_runs.append(timed_tree(gigatoken_raw(corpus)))
    ours_s, ours_cpu, ours_mem = _median_run(ours_runs)
    giga_s, giga_cpu, giga_mem = _median_run(giga_runs)
    print(f"ours, wall seconds of {args.repeats} runs: {[round(r[0], 2) for r in ours_runs]}")
    print(f"gigatoken raw, wall seconds of {args.repeats} runs: {[round(r[0], 2) for r in giga_runs]}")
    stats = json.loads((tmp / "ours.stats.json").read_text())
    docs, tokens = stats["documents"], stats["tokens"]
    print(
        f"ours: {ours_s:.1f} s = {docs / ours_s:,.0f} docs/s, {tokens / ours_s:,.0f} tok/s, "
        f"{mb / ours_s:.2f} MB/s, peak RSS {ours_mem:.0f} MiB"
    )

    ref_cmd = [sys.executable, __file__, "--reference-run", str(corpus), str(tmp / "ref"), str(args.workers)]
    ref_s, ref_cpu, ref_mem = timed_tree(ref_cmd)
    same = all(
        (tmp / f"ref{e}").read_bytes() == (tmp / f"ours_text_document{e}").read_bytes()
        for e in (".bin", ".idx")
    )
    print(
        f"reference (pool, one document at a time, Megatron-core Python builder): {ref_s:.1f} s = "
        f"{docs / ref_s:,.0f} docs/s, peak RSS {ref_mem:.0f} MiB, byte-identical output: {same}"
    )
    print(
        f"(a) ours / reference speed: x{ref_s / ours_s:.2f} by wall time (goal >= 3); "
        f"CPU seconds ours {ours_cpu:.1f}, reference {ref_cpu:.1f}: x{ref_cpu / ours_cpu:.2f}"
    )
    ceiling = reference_ceiling(str(tmp / "ours_text_document"), args.workers, min(docs, args.builder_docs))
    print(
        f"reference ceiling (its consuming process alone, encoding free): {ceiling:,.0f} docs/s; "
        f"ours per worker here: {docs / ours_s / args.workers:,.0f} docs/s, so ours passes 3x the "
        f"ceiling from {3 * ceiling / (docs / ours_s / args.workers):.0f} workers if it scales linearly"
    )

    raw_s, raw_cpu, raw_tokens = raw_limit(corpus, args.workers)
    assert raw_tokens + docs == tokens, "raw limit and ours tokenised different text"
    print(f"raw limit (SentencePiece encode(texts, num_threads={args.workers}), in memory): {raw_s:.1f} s")
    print(
        f"(b) ours / raw-limit speed: x{raw_s / ours_s:.2f} by wall time (goal >= 0.85); "
        f"CPU seconds raw limit {raw_cpu:.1f}: x{raw_cpu / ours_cpu:.2f}"
    )

    print(f"gigatoken raw encode_files (whole process, median): {giga_s:.1f} s, peak RSS {giga_mem:.0f} MiB")
    print(
        f"(b') ours / gigatoken raw time: x{ours_s / giga_s:.2f} (goal <= 1.25); "
        f"CPU seconds {ours_cpu:.1f} vs {giga_cpu:.1f}"
    )
    if args.megatron_lm:
        env_path = os.pathsep.join([str(args.megatron_lm), os.environ.get("PYTHONPATH", "")])
        os.environ["PYTHONPATH"] = env_path
        mlm_s, _, mlm_mem = timed_tree(megatron_lm_cmd(args.megatron_lm, corpus, tmp / "mlm", args.workers))
        print(
            f"Megatron-LM tools/preprocess_data.py: {mlm_s:.1f} s, peak RSS {mlm_mem:.0f} MiB; "
            f"ours is x{mlm_s / ours_s:.2f} faster (goal >= 6)"
        )

    if args.big_mb:
        big = tmp / f"corpus{args.big_mb}.jsonl"
        build_corpus(big, args.big_mb)
        big_s, _, big_mem = timed_tree(ours_cmd(big, tmp / "ours_big", args.workers))
        big.unlink()
        print(f"ours at {args.big_mb} MB: {big_s:.1f} s, peak RSS {big_mem:.0f} MiB")
        print(
            f"(c) peak memory {args.big_mb} MB / {args.size_mb} MB input: x{big_mem / ours_mem:.2f}  (goal: flat)"
        )

    builders(builder_tokens(corpus, args.builder_docs, args.workers), tmp, args.builder_repeats)


if __name__ == "__main__":
    main()
