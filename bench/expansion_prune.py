"""Drop the new tokens that cost most at the start: the start gap and token ratio against a threshold.

A resized model starts worse than its base (``bench/expansion_split.py``), mostly when it predicts
a new token. This bench charges that cost to the tokens that cause it, on the expansion's own
*training* text, and keeps only the tokens whose mean cost per occurrence is at most a threshold:

1. the expanded tokenizer's new rows get the default initialisation (``subword_mean`` plus the
   frequency calibration, tied) and the resized model reads ``--cost-docs`` training documents per
   language (hash order); each aligned span's NLL minus the base's over the same bytes is charged
   to the new token it predicts (``new``) or to the new token right before it (``after_new``);
2. for each threshold of ``--thresholds`` (nats per occurrence), the tokens over it are dropped
   (tokens that a kept token is merged from stay, so tokenisation still reaches it; tokens never
   seen in the sample stay), the frequencies are recounted on all training documents and the
   pruned tokenizer is written to ``--out/tau_T``;
3. each pruned tokenizer is initialised the same way and judged on held-out text from other
   sources (``megacpt.recipes.corpora``): resized / base bits per byte with the class split, and
   the held-out token ratio (expanded tokens per base token; lower means shorter sequences).

    PYTHONPATH=. python bench/expansion_prune.py --tokenizer runs/quickstart/tokenizer \
        --thresholds 2,1,0.5,0
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any

from expansion_split import LANGS, Split, build, default_rows

from megacpt.convert import distill
from megacpt.convert.reference_model import fetch_smollm2
from megacpt.convert.resize import expansion_from_tokenizers
from megacpt.recipes.corpora import heldout_documents, training_documents
from megacpt.tokenizer.expand import write_lists
from megacpt.tokenizer.load import load_base
from megacpt.tokenizer.select import Selection, closure, count_new

TARGET = ("ko", "ja")


def initialised(base_dir: Path, frozen: Any, tokenizer: Path) -> Any:
    """The base resized for ``tokenizer`` with the default rows: subword mean + calibration, tied."""
    _, calibrated = default_rows(frozen, expansion_from_tokenizers(base_dir, tokenizer))
    return build(base_dir, frozen.embedding, calibrated, None)


def costs(split: Split, model: Any) -> dict[int, list[float]]:
    """Token id -> [summed NLL gap (nats), occurrences] of the new tokens on ``split``'s documents."""
    out: dict[int, list[float]] = defaultdict(lambda: [0.0, 0])
    for span in split.spans(model):
        gap = span.nll - span.base_nll
        if span.kind == "new":
            new = [t for t in span.ids[span.j0 + 1 : span.j1 + 1] if t >= split.old]
            for t in new:
                out[t][0] += gap / len(new)
                out[t][1] += 1
        elif span.kind == "after_new":
            out[span.ids[span.j0]][0] += gap
    return out


def pruned(
    base: Any, keys: list[str], mean_cost: dict[str, float], tau: float, texts: list[str], out: Path
) -> int:
    """Write the tokenizer keeping the tokens whose mean cost is at most ``tau``; its size."""
    parts = base.reachable(keys)
    keep = closure({k for k in keys if mean_cost.get(k, float("-inf")) <= tau}, parts)
    kept = list(base.reachable([k for k in keys if k in keep]))
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    base.write(kept, base.base_size + len(kept), out)
    write_lists(base, Selection(kept, count_new(base, texts, kept), 0, True), out)
    return len(kept)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--tokenizer", type=Path, required=True, help="an expanded SmolLM2 tokenizer (megacpt expand)"
    )
    p.add_argument(
        "--thresholds", default="2,1,0.5,0", help="comma-separated mean costs (nats) to keep at most"
    )
    p.add_argument("--cost-docs", type=int, default=150, help="training documents per language for the costs")
    p.add_argument("--docs", type=int, default=16, help="held-out documents per language")
    p.add_argument("--max-tokens", type=int, default=400, help="base tokens per document")
    p.add_argument("--out", type=Path, default=Path("runs/expansion_prune"))
    args = p.parse_args()
    from transformers import AutoTokenizer

    base_dir = fetch_smollm2()
    frozen = distill.hf_base(str(base_dir))
    base_tok = AutoTokenizer.from_pretrained(str(base_dir))
    eod, old = int(base_tok.eos_token_id), len(base_tok)
    base = load_base(base_dir)
    rows = (args.tokenizer / "new_tokens.tsv").read_text(encoding="utf-8").splitlines()[1:]
    keys = [r.split("\t")[0] for r in rows]
    train = {lang: training_documents(lang) for lang in TARGET}

    def split(tokenizer: Path, texts: list[str]) -> Split:
        tok = AutoTokenizer.from_pretrained(str(tokenizer))
        return Split(frozen.model, base_tok, tok, old, eod, texts, args.max_tokens)

    model = initialised(base_dir, frozen, args.tokenizer)
    sample = [t for lang in TARGET for t in sorted(train[lang], key=hash_key)[: args.cost_docs]]
    charged = costs(split(args.tokenizer, sample), model)
    mean_cost = {keys[t - old]: c / n for t, (c, n) in charged.items() if n}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "costs.json").write_text(json.dumps(mean_cost, ensure_ascii=False, indent=0))
    print(f"{len(keys)} new tokens, {len(mean_cost)} seen in {len(sample)} training documents", flush=True)
    held = {lang: split(args.tokenizer, heldout_documents(lang)[: args.docs]) for lang in LANGS}
    texts = [t for lang in TARGET for t in train[lang]]
    print(
        "| threshold | new tokens | "
        + " | ".join(f"{g} tok ratio | {g} ratio | {g} new | {g} after" for g in TARGET)
        + " | en ratio |"
    )
    for tau in [float("inf"), *(map(float, args.thresholds.split(",")) if args.thresholds else ())]:
        tokenizer = args.tokenizer if tau == float("inf") else args.out / f"tau_{tau:g}"
        size = len(keys) if tau == float("inf") else pruned(base, keys, mean_cost, tau, texts, tokenizer)
        model = initialised(base_dir, frozen, tokenizer)
        cells = []
        for lang in LANGS:
            s = copy.copy(held[lang])  # the base's NLL is the same for every tokenizer
            s.tok = AutoTokenizer.from_pretrained(str(tokenizer))
            r = s.of(model)
            ratio = f"{r['model'] / r['base']:.3f}"
            cells += (
                [ratio]
                if lang == "en"
                else [f"{s.token_ratio():.3f}", ratio, f"{r['new']:+.3f}", f"{r['after_new']:+.3f}"]
            )
        print(f"| {tau:g} | {size} | " + " | ".join(cells) + " |", flush=True)


def hash_key(text: str) -> str:
    """A document's place in the sample: the same on every machine, whatever the file order."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


if __name__ == "__main__":
    main()
