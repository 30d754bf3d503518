"""Training start-up at scale: building the sample indices of a blend of ten datasets (≥ 2.5B tokens).

One dataset of about a tenth of ``--tokens-b`` billion tokens is tokenised from the bundled corpora
(replicated) and hard-linked under ten prefixes, so that the blend's ten datasets cost no more
disk than one. Then, for blends of 1, 2, 5 and 10 of them, ``torchrun --nproc-per-node R`` ranks
call ``build_gpt_datasets`` as the trainer does (gloo; one epoch of the blend in 2,048-token
samples, plus 1,000 validation samples per language): first with an empty index cache, then again
from the cache. Each rank reports its seconds (Megatron-core imported before the clock starts, as
in the trainer), its peak RSS, and how many index files it wrote
(``numpy.save`` counted), to show that rank 0 alone builds them and the others only read.

    PYTHONPATH=. python bench/index_startup.py --tokens-b 2.5 --ranks 2 --tmp /tmp/idxbench
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.preprocess import REPO, build_corpus, model_path

SEQ = 2048


def make_datasets(tmp: Path, tokens_b: float, count: int) -> tuple[list[str], int]:
    """``count`` prefixes of one dataset of ``tokens_b / count`` billion tokens; its token count."""
    one = tmp / "one"
    stats_path = Path(f"{one}.stats.json")
    if not stats_path.exists():
        corpus = tmp / "corpus.jsonl"
        build_corpus(corpus, int(tokens_b / count * 1e9 * 3.3 / 1e6))  # ~3.2 bytes of JSONL a token
        subprocess.run(
            [
                sys.executable,
                str(REPO / "tools" / "preprocess_data.py"),
                "--no-progress",
                "--input",
                str(corpus),
                "--output-prefix",
                str(one),
                "--tokenizer",
                model_path(),
                "--append-eod",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        corpus.unlink()
    tokens = json.loads(stats_path.read_text())["tokens"]
    prefixes = []
    for i in range(count):
        prefix = tmp / f"ds{i}_text_document"
        for ext in (".bin", ".idx", ".doc_bytes.npy"):
            if not Path(f"{prefix}{ext}").exists():
                os.link(f"{one}_text_document{ext}", f"{prefix}{ext}")
        prefixes.append(str(prefix))
    return prefixes, tokens


def worker(prefixes: list[str], tokens: int, cache: str, out: str) -> None:
    """One rank: build the blend's datasets as the trainer does; write this rank's figures."""
    import megatron.core.datasets.gpt_dataset  # noqa: F401  (imported by the trainer long before: not timed)
    import numpy as np
    import torch.distributed as dist

    from bench.procstatus import status_kib
    from megacpt.config.schema import DatasetEntry
    from megacpt.data.mixture.build import build_gpt_datasets
    from megacpt.data.mixture.spec import DataMixture

    dist.init_process_group("gloo")
    saves = 0
    original = np.save

    def counted(*args, **kwargs):  # Megatron-core writes every index file with numpy.save
        nonlocal saves
        saves += 1
        return original(*args, **kwargs)

    np.save = counted
    mixture = DataMixture.of(
        [DatasetEntry(prefix=p, lang=("ko", "ja")[i % 2]) for i, p in enumerate(prefixes)]
    )
    dist.barrier()
    start = time.perf_counter()
    built = build_gpt_datasets(
        mixture,
        seq_length=SEQ,
        seed=1234,
        split="99,1,0",
        train_samples=tokens * len(prefixes) // SEQ,
        valid_samples=1000,
        eod_id=2,
        pad_id=0,
        cache_dir=cache,
    )
    seconds = time.perf_counter() - start
    assert len(built.train) >= tokens * len(prefixes) // SEQ
    figures = {
        "rank": dist.get_rank(),
        "seconds": seconds,
        "peak_rss_mib": status_kib("VmHWM") / 1024,
        "saves": saves,
    }
    Path(f"{out}.{dist.get_rank()}.json").write_text(json.dumps(figures))
    dist.barrier()
    dist.destroy_process_group()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tokens-b", type=float, default=2.5, help="billions of tokens in the 10-dataset blend")
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--blends", default="1,2,5,10", help="numbers of datasets to blend")
    p.add_argument("--tmp", type=Path, default=Path("/tmp/idxbench"))
    p.add_argument(
        "--worker", nargs=4, metavar=("PREFIXES_JSON", "TOKENS", "CACHE", "OUT"), help=argparse.SUPPRESS
    )
    args = p.parse_args()
    if args.worker:
        prefixes, tokens, cache, out = args.worker
        worker(json.loads(prefixes), int(tokens), cache, out)
        return
    args.tmp.mkdir(parents=True, exist_ok=True)
    blends = [int(b) for b in args.blends.split(",")]
    prefixes, tokens = make_datasets(args.tmp, args.tokens_b, max(blends))
    print("| datasets | tokens | samples | cache | rank | seconds | peak RSS MiB | index files written |")
    print("| ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |")
    for count in blends:
        cache = args.tmp / f"cache{count}"
        shutil.rmtree(cache, ignore_errors=True)
        for state in ("empty", "warm"):
            out = args.tmp / f"figures{count}{state}"
            env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
            subprocess.run(
                [
                    "torchrun",
                    "--standalone",
                    f"--nproc-per-node={args.ranks}",
                    __file__,
                    "--worker",
                    json.dumps(prefixes[:count]),
                    str(tokens),
                    str(cache),
                    str(out),
                ],
                check=True,
                env=env,
                stdout=subprocess.DEVNULL,
            )
            for rank in range(args.ranks):
                f = json.loads(Path(f"{out}.{rank}.json").read_text())
                print(
                    f"| {count} | {tokens * count / 1e9:.2f} B | {tokens * count // SEQ:,} | {state} | {rank} | "
                    f"{f['seconds']:.1f} | {f['peak_rss_mib']:.0f} | {f['saves']} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
