"""Bits per byte of SmolLM2-135M right after the vocabulary resize, for every initialisation method.

The real model (``megacpt.convert.reference_model.fetch_smollm2``) is the base. Its byte-level
tokenizer is expanded with default flags on the training side of the bundled Korean + Japanese text
(``megacpt.recipes.corpora``: one document in ten, chosen by hash, is held out), the model is
resized once per method with ``resize_hf`` (tied embeddings kept tied unless the row says
untied), and bits per byte (summed NLL / ln 2 / UTF-8 bytes, per-document windows of
``--seq-length``, ``megacpt.evaluate.hf``) is measured on held-out Korean, Japanese and English
text. The baseline, measured in the same run on the same documents, is the unexpanded base model
with its own tokenizer; each method is reported as a ratio to it (1.00 = as good as the base).

    PYTHONPATH=. python bench/embedding_init.py --bytes 20000
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from megacpt.convert.calibrate import Calibration
from megacpt.convert.reference_model import fetch_smollm2
from megacpt.convert.resize import expansion_from_tokenizers
from megacpt.convert.resize_checkpoint import calibration_for, resize_hf
from megacpt.evaluate import hf
from megacpt.recipes.corpora import bundled_files, first_bytes, split_documents, write_jsonl
from megacpt.tokenizer import ExpansionConfig, SelectConfig, expand_vocab

LANGS = ("ko", "ja", "en")
# key -> (description, input method, output method, frequency calibration, untie)
ROWS = {
    "random": ("random", "random", "random", False, False),
    "mean": ("mean", "mean", "mean", False, False),
    "first": ("subword_first", "subword_first", "subword_first", False, False),
    "subword": ("subword_mean (swallow, redwhale presets)", "subword_mean", "subword_mean", False, False),
    "calibrated": (
        "subword_mean + frequency calibration (default)",
        "subword_mean",
        "subword_mean",
        True,
        False,
    ),
    "eeve_untied": (
        "untied eeve (subword_mean / subword_first)",
        "subword_mean",
        "subword_first",
        False,
        True,
    ),
    "eeve_untied_cal": ("untied eeve + frequency calibration", "subword_mean", "subword_first", True, True),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--bytes", type=int, default=20000, help="held-out UTF-8 bytes per language (whole documents)"
    )
    p.add_argument("--seq-length", type=int, default=512)
    p.add_argument("--new-tokens", type=int, default=16000, help="--max-new-tokens of the expansion")
    p.add_argument(
        "--rows", default=",".join(ROWS), help=f"comma-separated rows to run, of {', '.join(ROWS)}"
    )
    args = p.parse_args()
    base_dir = fetch_smollm2()
    work = Path(tempfile.mkdtemp(prefix="embedding_init-"))
    try:
        heldout, train_files = {}, {}
        for lang in LANGS:
            train, held = split_documents(bundled_files(lang))
            heldout[lang] = first_bytes(held, args.bytes)
            train_files[lang] = [write_jsonl(work / f"{lang}.train.jsonl", train)]
        result = expand_vocab(
            ExpansionConfig(
                base=base_dir,
                corpus={lang: train_files[lang] for lang in ("ko", "ja")},
                output_dir=work / "tokenizer",
                heldout_fraction=0.0,
                heldout={
                    lang: [write_jsonl(work / f"{lang}.heldout.jsonl", heldout[lang])] for lang in LANGS
                },
                select=SelectConfig(max_new_tokens=args.new_tokens),
            )
        )
        print(
            f"expansion: +{result.num_new_tokens} tokens; held-out token ratios "
            + ", ".join(f"{s.language} {s.token_ratio:.3f}" for s in result.stats),
            flush=True,
        )
        model, tokenizer = hf.load(base_dir)
        measure = {lang: dict(prefix=tokenizer.eos_token_id, seq_length=args.seq_length) for lang in LANGS}
        start = time.perf_counter()
        base = {lang: hf.score_documents(model, tokenizer, heldout[lang], **measure[lang]) for lang in LANGS}
        print(
            "base (own tokenizer): "
            + ", ".join(f"{lang} {base[lang].bits_per_byte:.4f}" for lang in LANGS)
            + f"  [{time.perf_counter() - start:.0f} s]",
            flush=True,
        )
        expansion = expansion_from_tokenizers(base_dir, result.output_dir)
        calibration: Calibration | None = None
        lines = [
            "| method (input / output) | "
            + " | ".join(f"{lang} bpb | {lang} / base" for lang in LANGS)
            + " |",
            "| --- |" + " ---: | ---: |" * len(LANGS),
            "| base model, own tokenizer | "
            + " | ".join(f"{base[lang].bits_per_byte:.4f} | 1.000" for lang in LANGS)
            + " |",
        ]
        for name in args.rows.split(","):
            label, input_method, output_method, calibrated, untie = ROWS[name]
            if calibrated and calibration is None:
                calibration = calibration_for(base_dir, expansion, None)
            out = work / "resized"
            shutil.rmtree(out, ignore_errors=True)
            resize_hf(
                base_dir,
                out,
                expansion,
                (input_method, output_method),
                tokenizer_dir=result.output_dir,
                calibration=calibration if calibrated else None,
                untie=untie,
            )
            model, tokenizer = hf.load(out)
            start = time.perf_counter()
            bpb = {
                lang: hf.score_documents(model, tokenizer, heldout[lang], **measure[lang]).bits_per_byte
                for lang in LANGS
            }
            cells = " | ".join(
                f"{bpb[lang]:.4f} | {bpb[lang] / base[lang].bits_per_byte:.3f}" for lang in LANGS
            )
            lines.append(f"| {label} | {cells} |")
            print(lines[-1] + f"  [{time.perf_counter() - start:.0f} s]", flush=True)
        print("\n".join(lines))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
