"""Near-duplicate removal, judged: recall per edit level and precision on injected copies.

Every document of the bundled corpora (Korean, Japanese, English) is kept once; after them come
copies of a random third of them, each with one edit level: the same text with other whitespace,
or a share of its characters replaced by other characters of the same document. A copy removed is a
true positive; an original removed is a false one (unless the corpus itself repeats it: those are
counted apart). Only deduplication runs (no language or quality filter), with the default
threshold, so an older checkout's implementation can be judged by the same script:

    python bench/clean_dedup.py --seeds 0 1 2
    PYTHONPATH=/path/to/older/checkout python bench/clean_dedup.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
from pathlib import Path

from megacpt.clean.config import CleanConfig
from megacpt.clean.filters import FILTERS, QualityConfig
from megacpt.clean.pipeline import clean_corpus

CORPORA = Path(__file__).resolve().parents[1] / "examples" / "corpora"
EDITS = (0.0, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2)  # share of characters replaced (0: whitespace only)


def _edited(text: str, share: float, rng: random.Random) -> str:
    if share == 0.0:
        return "  " + text.replace(" ", "  ") + "\n"
    chars = list(text)
    for i in rng.sample(range(len(chars)), max(1, round(share * len(chars)))):
        chars[i] = rng.choice(text)
    return "".join(chars)


def judge(seed: int, folder: Path) -> dict[str, float]:
    rng = random.Random(seed)
    docs = [json.loads(line) for path in sorted(CORPORA.glob("*/*.jsonl"))
            for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]  # fmt: skip
    docs = [d for d in docs if len(d["text"]) >= 100]
    rows = [{"id": f"orig-{i}", "text": d["text"]} for i, d in enumerate(docs)]
    for i in rng.sample(range(len(docs)), len(docs) // 3):
        share = rng.choice(EDITS)
        rows.append({"id": f"copy-{share}-{i}", "text": _edited(docs[i]["text"], share, rng)})
    corpus = folder / f"corpus{seed}.jsonl"
    corpus.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    config = CleanConfig(quality=QualityConfig(disabled=frozenset(FILTERS)))
    out = folder / f"out{seed}.jsonl"
    clean_corpus(str(corpus), str(out), config=config, workers=2, overwrite=True)
    kept = {json.loads(line)["id"] for line in out.read_text(encoding="utf-8").splitlines()}
    removed = [r["id"] for r in rows if r["id"] not in kept]
    repeats = len({d["text"] for d in docs}) != len(docs)
    result = {"documents": len(rows), "copies": len(rows) - len(docs)}
    for share in EDITS:
        copies = [r["id"] for r in rows if r["id"].startswith(f"copy-{share}-")]
        result[f"recall_{share:g}"] = round(sum(c not in kept for c in copies) / max(len(copies), 1), 3)
    true = sum(r.startswith("copy-") for r in removed)
    result["precision"] = round(true / max(len(removed), 1), 4)
    result["originals_removed"] = len(removed) - true
    result["corpus_repeats_itself"] = repeats
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = {seed: judge(seed, Path(tmp)) for seed in args.seeds}
    for seed, result in results.items():
        print(seed, json.dumps(result))
    keys = [k for k in results[args.seeds[0]] if k.startswith(("recall", "precision", "originals"))]
    print("mean", json.dumps({k: round(sum(r[k] for r in results.values()) / len(results), 4) for k in keys}))


if __name__ == "__main__":
    main()
