"""Cleaning at scale: throughput per core, speed-up from 1 to 2 workers, peak memory against input
size, resuming after a kill, and a baseline checkout measured in the same run.

The corpus is the bundled Korean, Japanese and English text replicated with mutations until it
reaches the size asked: every replica of a document is an exact copy, a near copy (a few characters
changed) or a heavily edited one (a third of its sentences dropped and shuffled), so deduplication
has work of every kind. It is written as four plain JSONL files.

    python bench/clean_scale.py --megabytes 50 500 --baseline /path/to/older/checkout --repeats 3

With a baseline, the baseline and this checkout's one-worker run alternate ``--repeats`` times and
the median of their time ratios is reported: this machine's speed drifts between runs.

Each run is ``megacpt clean`` in a subprocess (``--lang ko --lang ja --lang en``, default filters);
peak memory is the largest sum of proportional set sizes over its process tree (shared pages
counted once), sampled every 0.1 s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORPORA = REPO / "examples" / "corpora"
LANGS = ("ko", "ja", "en")


def _documents() -> list[dict]:
    docs = []
    for path in sorted(CORPORA.glob("*/*.jsonl")):
        docs += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return docs


def _mutate(text: str, rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.4:
        return text  # an exact copy
    if roll < 0.7:  # a near copy: a few characters changed
        chars = list(text)
        for _ in range(max(1, len(chars) // 100)):
            chars[rng.randrange(len(chars))] = rng.choice(text)
        return "".join(chars)
    parts = text.replace("다. ", "다.\n").replace("。", "。\n").replace(". ", ".\n").split("\n")
    kept = [p for p in parts if rng.random() > 0.33] or parts[:1]
    rng.shuffle(kept)
    return " ".join(kept) + f" ({rng.randrange(10**9)})"


def make_corpus(folder: Path, megabytes: float, seed: int = 0) -> Path:
    """Four plain JSONL files of about ``megabytes`` in all (made once per size and seed)."""
    folder = folder / f"corpus_{megabytes:g}mb_seed{seed}"
    if (folder / "done").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    docs = _documents()
    target = megabytes * 1e6
    written, replica = 0, 0
    with contextlib.ExitStack() as stack:
        files = [
            stack.enter_context(open(folder / f"part{i}.jsonl", "w", encoding="utf-8")) for i in range(4)
        ]
        while written < target:
            for doc in docs:
                text = doc["text"] if replica == 0 else _mutate(doc["text"], rng)
                line = (
                    json.dumps({"id": f"{doc.get('id', '')}-{replica}", "text": text}, ensure_ascii=False)
                    + "\n"
                )
                files[min(int(4 * written / target), 3)].write(line)
                written += len(line.encode("utf-8"))
                if written >= target:
                    break
            replica += 1
    (folder / "done").write_text("")
    return folder


def _tree_pss_kib(root: int) -> int:
    """Proportional set size of ``root`` and its descendants, from /proc (pages shared between
    forked processes counted once in all)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def run_clean(repo: Path, corpus: Path, out: Path, workers: int, kill_after: float | None = None,
              tasks: int | None = None) -> dict:  # fmt: skip
    """One ``megacpt clean`` run of ``repo``'s code: seconds, peak tree PSS, its summary."""
    cmd = [sys.executable, "-m", "megacpt.cli", "clean", str(corpus), str(out), "--workers", str(workers),
           *(arg for lang in LANGS for arg in ("--lang", lang)), "--overwrite"]  # fmt: skip
    if tasks is not None:
        cmd += ["--tasks", str(tasks)]
    env = dict(os.environ, PYTHONPATH=str(repo), OMP_NUM_THREADS="1")
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)  # fmt: skip
    by_stage: dict[str, int] = {}  # the peak while each stage ran
    logs = out.parent / f".{out.name}.clean-work" / "logs"
    while proc.poll() is None:
        pss, stage = _tree_pss_kib(proc.pid), "start"
        with contextlib.suppress(OSError, ValueError):  # the stage running: the newest folder of logs
            stage = max((p for p in logs.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime).name
        by_stage[stage] = max(by_stage.get(stage, 0), pss)
        if kill_after is not None and time.perf_counter() - start > kill_after:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return {"killed_after_s": round(time.perf_counter() - start, 1)}
        time.sleep(0.1)
    seconds = time.perf_counter() - start
    peak_stage = max(by_stage, key=by_stage.__getitem__, default="")
    stdout, stderr = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{stderr[-3000:]}")
    size = sum(p.stat().st_size for p in corpus.glob("*.jsonl"))
    return {"workers": workers, "seconds": round(seconds, 1), "mb_per_s": round(size / 1e6 / seconds, 3),
            "mb_per_s_per_worker": round(size / 1e6 / seconds / workers, 3), "peak_pss_mib": round(max(by_stage.values(), default=0) / 1024), "peak_stage": peak_stage,
            "peak_pss_mib_by_stage": {stage: round(kib / 1024) for stage, kib in by_stage.items()},
            "summary": stdout.strip().splitlines()[0]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--megabytes", type=float, nargs="+", default=[50.0, 500.0])
    parser.add_argument("--baseline", type=Path, help="another checkout, measured on the first size")
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/megacpt_clean_scale"))
    parser.add_argument("--skip-resume", action="store_true")
    parser.add_argument(
        "--repeats", type=int, default=1, help="baseline and one-worker runs, alternating, on the first size"
    )
    parser.add_argument(
        "--megabytes-per-task", type=float, help="also run the larger sizes with this many MB per task"
    )
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    first = make_corpus(args.scratch, args.megabytes[0])
    size = sum(p.stat().st_size for p in first.glob("*.jsonl")) / 1e6
    print(f"corpus {first}: {size:.1f} MB")
    results: dict[str, dict] = {}
    out = args.scratch / "out.jsonl"
    one = f"{size:g} MB, 1 worker(s)"
    if args.baseline is not None:  # alternating, so that the machine's drift falls on both alike
        times: dict[str, list[float]] = {"baseline_seconds": [], "seconds": []}
        for _ in range(args.repeats):
            results["baseline, 1 worker"] = run_clean(args.baseline, first, args.scratch / "base.jsonl", 1)
            results[one] = run_clean(REPO, first, out, 1)
            times["baseline_seconds"].append(results["baseline, 1 worker"]["seconds"])
            times["seconds"].append(results[one]["seconds"])
            print("baseline, then 1 worker:", results["baseline, 1 worker"], results[one], flush=True)
        ratios = [round(b / s, 2) for b, s in zip(times["baseline_seconds"], times["seconds"], strict=True)]
        results["per-core speed-up over the baseline, runs alternating"] = {
            **times,
            "ratios": ratios,
            "median": statistics.median(ratios),
        }
    else:
        results[one] = run_clean(REPO, first, out, 1)
    results[f"{size:g} MB, 2 worker(s)"] = run_clean(REPO, first, out, 2)
    print("1 and 2 worker(s):", results[one], results[f"{size:g} MB, 2 worker(s)"], flush=True)
    reference = out.read_bytes()
    if not args.skip_resume:
        killed = run_clean(
            REPO, first, out, 2, kill_after=results[f"{size:g} MB, 2 worker(s)"]["seconds"] / 2
        )
        resumed = run_clean(REPO, first, out, 2)
        same = out.read_bytes() == reference
        results["killed halfway, then resumed"] = {**killed, **resumed, "output_identical": same}
        print("resume:", results["killed halfway, then resumed"], flush=True)
    for megabytes in args.megabytes[1:]:
        corpus = make_corpus(args.scratch, megabytes)
        big = sum(p.stat().st_size for p in corpus.glob("*.jsonl")) / 1e6
        results[f"{big:g} MB, 2 worker(s)"] = run_clean(REPO, corpus, args.scratch / "big.jsonl", 2)
        print(f"{big:g} MB:", results[f"{big:g} MB, 2 worker(s)"], flush=True)
        if args.megabytes_per_task:
            tasks = max(2, round(big / args.megabytes_per_task))
            name = f"{big:g} MB, 2 worker(s), {tasks} tasks"
            results[name] = run_clean(REPO, corpus, args.scratch / "big.jsonl", 2, tasks=tasks)
            print(f"{name}:", results[name], flush=True)
    print(json.dumps(results, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
