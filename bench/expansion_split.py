"""Where does a resized model lose against its base? Held-out NLL split by position class.

The resized SmolLM2 reads held-out text with the expanded tokenizer, the base reads the same bytes
with its own. Both tokenisations are aligned where they end a token at the same character; each
aligned span (usually one expanded token against its base pieces) is charged to one class:

- ``new``: predicting a new token;
- ``after_new``: an old token right after a new one;
- ``later``: an old token later in a window that holds new tokens;
- ``rest``: an old token with no new token before it (identical to the base up to float noise).

Each class is reported as its share of the bits-per-byte gap (resized minus base, so the classes
add up to the gap), per language, for each initialisation named by ``--methods``:

- ``mean``: ``subword_mean``, tied;
- ``calibrated``: ``subword_mean`` plus the frequency logit calibration, tied (the default; its
  offsets times ``--calibration-scale``);
- ``distil_tied``: the calibrated rows, then input distillation (``megacpt.convert.distill``), tied;
- ``distil_untied``: input rows distilled from the calibrated rows, output rows the calibrated ones.

The held-out text comes from other sources than the tokenizer's and the distillation's training
text (``megacpt.recipes.corpora``: Korean laws and bills, Japanese Wikipedia paragraphs, whole
WikiText-2 articles). Documents are cut to their first ``--max-tokens`` base tokens.

    PYTHONPATH=. python bench/expansion_split.py --tokenizer runs/quickstart/tokenizer --docs 16
"""

from __future__ import annotations

import argparse
import itertools
import math
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch

from megacpt.convert import distill
from megacpt.convert.calibrate import calibrate
from megacpt.convert.methods import DistillConfig
from megacpt.convert.reference_model import fetch_smollm2
from megacpt.convert.resize import expansion_from_tokenizers, new_rows
from megacpt.recipes.corpora import LANGS, heldout_documents, training_documents

CLASSES = ("new", "after_new", "later", "rest")


class Span(NamedTuple):
    """Expanded tokens ``ids[j0 + 1 .. j1]`` against the base pieces of the same bytes."""

    ids: list[int]
    j0: int
    j1: int
    kind: str
    nll: float
    base_nll: float


METHODS = ("mean", "calibrated", "distil_tied", "distil_untied")


@torch.no_grad()
def token_nll(model: Any, ids: list[int]) -> list[float]:
    """NLL of ``ids[1:]``, each given the ids before it."""
    x = torch.tensor([ids])
    logp = torch.log_softmax(model(input_ids=x).logits.float()[0, :-1], dim=-1)
    return (-logp.gather(1, x[0, 1:, None])[:, 0]).tolist()


def classify(ids: Sequence[int], j0: int, j1: int, old: int) -> str:
    """The class of the expanded tokens ``j0 + 1 .. j1`` (``j0`` is the last aligned token before)."""
    if any(t >= old for t in ids[j0 + 1 : j1 + 1]):
        return "new"
    if j0 >= 0 and ids[j0] >= old:
        return "after_new"
    return "later" if any(t >= old for t in ids[: j0 + 1]) else "rest"


class Split:
    """The base model's per-token NLL on each held-out document, computed once, and the split."""

    def __init__(self, base: Any, base_tok: Any, tok: Any, old: int, eod: int, texts: list[str], limit: int):
        self.base_tok, self.tok, self.old, self.eod = base_tok, tok, old, eod
        self.texts = [self._cut(t, limit) for t in texts]
        self.bytes = sum(len(t.encode("utf-8")) for t in self.texts)
        self.base_nll = [token_nll(base, [eod, *self._encode(base_tok, t)[0]]) for t in self.texts]

    @staticmethod
    def _encode(tokenizer: Any, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return enc["input_ids"], enc["offset_mapping"]

    def _cut(self, text: str, limit: int) -> str:
        _, offsets = self._encode(self.base_tok, text)
        return text[: offsets[:limit][-1][1]]

    def spans(self, model: Any) -> Iterator[Span]:
        """Every aligned span of every document under ``model``, with its NLL against the base's."""
        for text, nll_b in zip(self.texts, self.base_nll, strict=True):
            _, off_b = self._encode(self.base_tok, text)
            ids, off = self._encode(self.tok, text)
            nll = token_nll(model, [self.eod, *ids])
            ends_b = distill.closed_ends(off_b)
            aligned = sorted(
                [(-1, -1)] + [(j, ends_b[e]) for e, j in distill.closed_ends(off).items() if e in ends_b]
            )
            for (j0, k0), (j1, k1) in itertools.pairwise(aligned):
                yield Span(
                    ids,
                    j0,
                    j1,
                    classify(ids, j0, j1, self.old),
                    sum(nll[j0 + 1 : j1 + 1]),
                    sum(nll_b[k0 + 1 : k1 + 1]),
                )

    def of(self, model: Any) -> dict[str, float]:
        """bits per byte of the base and of ``model``, and each class's share of the gap."""
        split = dict.fromkeys(CLASSES, 0.0)
        base_total = new_total = 0.0
        for span in self.spans(model):
            split[span.kind] += span.nll - span.base_nll
            base_total, new_total = base_total + span.base_nll, new_total + span.nll
        scale = 1 / math.log(2) / self.bytes
        return {
            "base": base_total * scale,
            "model": new_total * scale,
            **{k: v * scale for k, v in split.items()},
        }

    def token_ratio(self) -> float:
        """Expanded tokens per base token over the documents."""
        expanded = sum(len(self._encode(self.tok, t)[0]) for t in self.texts)
        return expanded / sum(len(n) for n in self.base_nll)


def default_rows(frozen: Any, expansion: Any, scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The new rows ``subword_mean`` gives, and the same plus ``scale`` times the frequency calibration
    (``megacpt resize``'s default at scale 1)."""
    mean = new_rows("subword_mean", frozen.embedding, expansion.pieces)
    hidden = lambda t: frozen.model.model(input_ids=t).last_hidden_state.float()  # noqa: E731
    with torch.no_grad():
        frequencies = expansion.frequencies or [1] * len(mean)
        shift = calibrate(expansion.pieces, frequencies, hidden, 2048).shift()
    return mean, mean + scale * shift


def build(base_dir: Path, old_rows: torch.Tensor, inputs: torch.Tensor, outputs: torch.Tensor | None) -> Any:
    """The base model resized in memory: new input rows ``inputs``; an untied head when ``outputs``."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32).eval()
    old = old_rows.shape[0]
    model.resize_token_embeddings(old + inputs.shape[0], mean_resizing=False)
    model.get_input_embeddings().weight.data[old:] = inputs
    if outputs is not None:
        model.config.tie_word_embeddings = False
        head = torch.nn.Linear(old_rows.shape[1], old + outputs.shape[0], bias=False)
        head.weight.data = torch.cat([old_rows, outputs])
        model.lm_head = head
    return model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--tokenizer", type=Path, required=True, help="an expanded SmolLM2 tokenizer (megacpt expand)"
    )
    p.add_argument("--docs", type=int, default=16, help="held-out documents per language")
    p.add_argument("--max-tokens", type=int, default=400, help="base tokens per document")
    p.add_argument("--methods", default="mean,calibrated,distil_untied")
    p.add_argument(
        "--calibration-scale",
        type=float,
        default=1.0,
        help="multiply the frequency calibration's logit offsets (1: the default of megacpt resize)",
    )
    p.add_argument("--distill-tokens", type=int, default=DistillConfig.tokens)
    args = p.parse_args()
    methods = args.methods.split(",")
    if unknown := sorted(set(methods) - set(METHODS)):
        raise SystemExit(f"error: unknown methods {unknown}; choose from {', '.join(METHODS)}")
    from transformers import AutoTokenizer

    base_dir = fetch_smollm2()
    base_tok, tok = (
        AutoTokenizer.from_pretrained(str(base_dir)),
        AutoTokenizer.from_pretrained(str(args.tokenizer)),
    )
    expansion = expansion_from_tokenizers(base_dir, args.tokenizer)
    old = expansion.old_size
    frozen = distill.hf_base(str(base_dir))
    base_model = frozen.model  # type: ignore[attr-defined]
    eod = int(base_tok.eos_token_id)
    splits = {
        lang: Split(
            base_model, base_tok, tok, old, eod, heldout_documents(lang)[: args.docs], args.max_tokens
        )
        for lang in LANGS
    }
    table = frozen.embedding
    mean, calibrated = default_rows(frozen, expansion, args.calibration_scale)
    cfg = DistillConfig(tokens=args.distill_tokens)
    texts = [t for lang in ("ko", "ja") for t in training_documents(lang)]
    windows = distill.make_windows(texts, base_tok, tok, old, eod, cfg)
    print(f"{expansion.new_size - old} new tokens; {len(windows)} distillation windows", flush=True)
    print(
        "| method | seconds | "
        + " | ".join(f"{lang} {c}" for lang in LANGS for c in ("ratio", *CLASSES))
        + " |"
    )
    for method in methods:
        start = time.perf_counter()
        if method in ("mean", "calibrated"):
            model = build(base_dir, table, mean if method == "mean" else calibrated, None)
        else:
            learnt = distill.learn_rows(frozen, windows, calibrated, old, cfg)
            model = build(base_dir, table, learnt.input, None if method == "distil_tied" else calibrated)
        seconds = time.perf_counter() - start
        cells = []
        for lang in LANGS:
            r = splits[lang].of(model)
            cells += [f"{r['model'] / r['base']:.3f}", *(f"{r[c]:+.3f}" for c in CLASSES)]
        print(f"| {method} | {seconds:.0f} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
