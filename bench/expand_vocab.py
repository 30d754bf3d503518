"""Time a full vocabulary expansion over ~100 MB of Korean JSONL against one tokenisation pass.

Baseline: encoding the same training text once with the base tokenizer (Mistral-7B's
SentencePiece model, or tekken as a byte-level BPE ``tokenizer.json``), the least work any
frequency-based selection must do. The corpus is the bundled KLUE text
replicated to the requested size (as examples/corpora/README.md suggests for throughput runs), so
the trainer sees few distinct words; every counting and encoding pass runs over the full size.

    python bench/expand_vocab.py --megabytes 100 --base sentencepiece
    python bench/expand_vocab.py --megabytes 100 --base tekken --trainer hf_bpe
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import mistral_common

from megacpt.tokenizer import ExpansionConfig, SelectConfig, TrainConfig, expand_vocab
from megacpt.tokenizer.config import TRAINERS
from megacpt.tokenizer.corpus import load_split
from megacpt.tokenizer.load import load_base

REPO = Path(__file__).resolve().parents[1]
KO = REPO / "examples" / "corpora" / "ko" / "klue_dev.jsonl"
EN = REPO / "examples" / "corpora" / "en" / "wikitext2_valid.jsonl"
DATA = Path(os.path.dirname(mistral_common.__file__)) / "data"
BASES = {"sentencepiece": DATA / "tokenizer.model.v1", "tekken": DATA / "tekken_240911.json"}


def build_corpus(path: Path, megabytes: float) -> int:
    """Replicate the Korean corpus (ids made unique) to ``megabytes``; return the size in bytes."""
    lines = KO.read_text(encoding="utf-8").splitlines()
    docs = [json.loads(line)["text"] for line in lines]
    written, copy = 0, 0
    with path.open("w", encoding="utf-8") as out:
        while written < megabytes * 1e6:
            for i, doc in enumerate(docs):
                line = json.dumps({"id": f"{copy}-{i}", "text": doc}, ensure_ascii=False) + "\n"
                out.write(line)
                written += len(line.encode("utf-8"))
            copy += 1
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--megabytes", type=float, default=100.0)
    parser.add_argument("--base", choices=sorted(BASES), default="sentencepiece")
    parser.add_argument("--trainer", choices=TRAINERS, default="sentencepiece_bpe")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "ko.jsonl"
        size = build_corpus(corpus, args.megabytes)
        train = load_split([corpus], 0.1).train
        base = load_base(BASES[args.base])
        start = time.perf_counter()
        for i in range(0, len(train), 4096):
            base.encode(train[i : i + 4096], None)
        baseline = time.perf_counter() - start
        config = ExpansionConfig(
            base=BASES[args.base],
            train=TrainConfig(trainer=args.trainer),
            corpus=[corpus],
            output_dir=Path(tmp) / "out",
            language="ko",
            heldout={"en": [EN]},
            select=SelectConfig(max_new_tokens=16000),
        )
        start = time.perf_counter()
        result = expand_vocab(config)
        total = time.perf_counter() - start
    steps = ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items())
    print(f"corpus: {size / 1e6:.1f} MB JSONL, {len(train)} training documents")
    print(f"baseline (one base-tokenizer encoding pass over the training text): {baseline:.1f} s")
    print(f"expand_vocab: {total:.1f} s ({steps}); {result.num_new_tokens} new tokens")
    print(f"ratio expand_vocab / baseline: {total / baseline:.1f}x; throughput {size / 1e6 / total:.2f} MB/s")
    for s in result.stats:
        print(f"{s.language}: token ratio {s.token_ratio:.3f}")


if __name__ == "__main__":
    main()
