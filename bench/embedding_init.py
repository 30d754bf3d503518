"""Starting loss on held-out Korean and Japanese text for each new-row initialisation method.

A tiny Llama over Mistral-7B's 32,000-piece SentencePiece vocabulary is trained briefly on the
bundled text of ``--base-langs`` (the brief's setting is English only; ``en,ko,ja`` mimics a
base model that saw a little of the target languages, as Llama 2 did). The vocabulary is then
expanded with Korean and Japanese tokens by ``megacpt.tokenizer.expand_vocab`` (trained on the
non-held-out ko/ja documents; every 10th document is held out), the model is resized with
``megacpt.convert.resize_checkpoint.resize_hf`` once per method, and the mean next-token loss of
the resized model on the held-out documents (tokenised with the expanded tokenizer) is printed,
with its ratio to the ``random`` baseline measured in the same run. The recipes' claim: sub-token
methods start lower than ``random`` and ``mean``. With ``--adapt-steps N`` each resized model then
trains only its embedding and output layer for N steps on the non-held-out ko+ja text (EEVE's
first stages, same seed and batches for every method) and its held-out loss is printed again:
whether a better start is still ahead after a little training.

    PYTHONPATH=. python bench/embedding_init.py --base-langs en --steps 300
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import mistral_common
import torch
import transformers

from megacpt.convert.resize import expansion_from_tokenizers
from megacpt.convert.resize_checkpoint import resize_hf
from megacpt.tokenizer import ExpansionConfig, SelectConfig, TrainConfig, expand_vocab

CORPORA = Path(__file__).resolve().parents[1] / "examples" / "corpora"
FILES = {
    "en": [CORPORA / "en" / "wikitext2_valid.jsonl"],
    "ko": [CORPORA / "ko" / "klue_dev.jsonl"],
    "ja": [CORPORA / "ja" / "jsquad_valid_wiki.jsonl", CORPORA / "ja" / "jsts_jcqa_train.jsonl"],
}
ROWS = {  # name -> (input method, output method)
    "random": ("random", "random"),
    "mean": ("mean", "mean"),
    "subword_mean (swallow, redwhale)": ("subword_mean", "subword_mean"),
    "subword_first": ("subword_first", "subword_first"),
    "eeve (subword_mean / subword_first)": ("subword_mean", "subword_first"),
}


def documents(lang: str) -> tuple[list[str], list[str]]:
    """(train, held-out) documents of a language; every 10th document is held out."""
    docs = [
        json.loads(line)["text"] for f in FILES[lang] for line in f.open(encoding="utf-8") if line.strip()
    ]
    return [d for i, d in enumerate(docs) if i % 10], docs[::10]


def sequences(tokenizer, docs: list[str], length: int, limit: int) -> torch.Tensor:
    """Documents tokenised, concatenated and cut into ``[n, length]`` rows (at most ``limit``)."""
    ids: list[int] = []
    for doc in docs:
        ids += [*tokenizer.encode(doc, add_special_tokens=False), tokenizer.eos_token_id]
        if len(ids) >= length * limit:
            break
    n = min(len(ids) // length, limit)
    return torch.tensor(ids[: n * length]).reshape(n, length)


def train_base(directory: Path, data: torch.Tensor, steps: int, batch: int, seed: int) -> None:
    config = transformers.LlamaConfig(
        hidden_size=128,
        intermediate_size=384,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        vocab_size=32000,
        max_position_embeddings=256,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=steps, pct_start=0.1)
    model.train()
    for step in range(steps):
        rows = data[torch.randint(0, len(data), (batch,))]
        loss = model(rows, labels=rows).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        if step % 100 == 0 or step == steps - 1:
            print(f"  base step {step}: loss {loss.item():.3f}", flush=True)
    model.save_pretrained(directory)


def load(directory: Path) -> torch.nn.Module:
    return transformers.AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32)


@torch.no_grad()
def mean_loss(model: torch.nn.Module, data: torch.Tensor) -> float:
    model.eval()
    return sum(model(chunk, labels=chunk).loss.item() for chunk in data.split(16)) / len(data.split(16))


def adapt(model: torch.nn.Module, data: torch.Tensor, steps: int, batch: int, seed: int) -> torch.nn.Module:
    """Train only the input embedding and the output layer for ``steps`` steps (constant LR)."""
    trained = [model.get_input_embeddings().weight, model.get_output_embeddings().weight]
    for param in model.parameters():
        param.requires_grad_(any(param is t for t in trained))
    optimizer = torch.optim.AdamW(trained, lr=3e-3, weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        rows = data[torch.randint(0, len(data), (batch,), generator=generator)]
        model(rows, labels=rows).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--base-langs", default="en", help="comma-separated languages the base model is trained on"
    )
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq", type=int, default=64)
    p.add_argument("--new-tokens", type=int, default=2000)
    p.add_argument("--eval-sequences", type=int, default=48)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--adapt-steps", type=int, default=0, help="then train embeddings + head this many steps on ko+ja"
    )
    args = p.parse_args()
    torch.set_num_threads(2)
    start = time.time()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        spm_dir = tmp / "spm"
        spm_dir.mkdir()
        shutil.copy(
            Path(mistral_common.__file__).parent / "data" / "tokenizer.model.v1", spm_dir / "tokenizer.model"
        )
        (spm_dir / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "LlamaTokenizer"}))
        transformers.AutoTokenizer.from_pretrained(spm_dir).save_pretrained(tmp / "base_tok")
        base = transformers.AutoTokenizer.from_pretrained(tmp / "base_tok")
        split = {lang: documents(lang) for lang in FILES}
        train_files = []
        for lang in ("ko", "ja"):
            path = tmp / f"{lang}_train.jsonl"
            path.write_text(
                "".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in split[lang][0])
            )
            train_files.append(path)
        expand_vocab(
            ExpansionConfig(
                base=spm_dir / "tokenizer.model",
                corpus=train_files,
                output_dir=tmp / "exp_tok",
                language="ko+ja",
                heldout_fraction=0.0,
                train=TrainConfig(vocab_size=8000),
                select=SelectConfig(max_new_tokens=args.new_tokens),
            )
        )
        expansion = expansion_from_tokenizers(tmp / "base_tok", tmp / "exp_tok")
        expanded = transformers.AutoTokenizer.from_pretrained(tmp / "exp_tok")
        langs = args.base_langs.split(",")
        base_docs = [d for lang in langs for d in split[lang][0]]
        base_data = sequences(base, base_docs, args.seq, 100_000)
        print(
            f"base model: {len(base_data)} sequences of {args.seq} tokens from {langs}; "
            f"{expansion.new_size - expansion.old_size} new tokens",
            flush=True,
        )
        train_base(tmp / "base_model", base_data, args.steps, args.batch, args.seed)
        held = {
            lang: sequences(expanded, split[lang][1], args.seq, args.eval_sequences) for lang in ("ko", "ja")
        }
        new_share = {lang: (d >= expansion.old_size).float().mean().item() for lang, d in held.items()}
        base_held = {
            lang: sequences(base, split[lang][1], args.seq, args.eval_sequences) for lang in ("ko", "ja")
        }
        target_data = sequences(expanded, split["ko"][0] + split["ja"][0], args.seq, 100_000)
        results, adapted = {}, {}
        for name, methods in ROWS.items():
            out = resize_hf(
                tmp / "base_model", tmp / f"resized_{len(results)}", expansion, methods, args.seed
            )
            model = load(out)
            results[name] = {lang: mean_loss(model, data) for lang, data in held.items()}
            if args.adapt_steps:
                adapt(model, target_data, args.adapt_steps, args.batch, args.seed)
                adapted[name] = {lang: mean_loss(model, data) for lang, data in held.items()}
        base_model = load(tmp / "base_model")
        reference = {lang: mean_loss(base_model, data) for lang, data in base_held.items()}
    print(
        f"\nheld-out tokens that are new: ko {new_share['ko']:.1%}, ja {new_share['ja']:.1%}; "
        f"base model on base tokenisation (not comparable per token): ko {reference['ko']:.3f}, ja {reference['ja']:.3f}"
    )
    table("at the start", results)
    if adapted:
        table(f"after {args.adapt_steps} steps training embeddings + head on ko+ja", adapted)
    print(f"\ntotal {time.time() - start:.0f} s")


def table(title: str, results: dict[str, dict[str, float]]) -> None:
    print(f"\n{title}\n| method (input / output) | ko loss | ja loss | ko / random | ja / random |")
    print("| --- | --- | --- | --- | --- |")
    for name, loss in results.items():
        rk, rj = loss["ko"] / results["random"]["ko"], loss["ja"] / results["random"]["ja"]
        print(f"| {name} | {loss['ko']:.3f} | {loss['ja']:.3f} | {rk:.3f} | {rj:.3f} |")


if __name__ == "__main__":
    main()
