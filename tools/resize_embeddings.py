"""Grow a model's embedding and output layer for an expanded tokenizer, initialising the new rows.

Example (EEVE: input rows = mean of sub-token rows, output rows = first sub-token's row):

    python tools/resize_embeddings.py --input ckpt/solar --output ckpt/solar-ko \\
        --base-tokenizer models/SOLAR-10.7B --tokenizer out/tokenizer-ko --preset eeve --target-tp 8

``--input`` is a Hugging Face model directory or a megacpt Megatron checkpoint (then only the two
vocabulary tensors are read and rewritten). Methods: random, mean, subword_mean, subword_first;
presets: swallow, eeve, redwhale. The input is never modified.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from megacpt.config.loader import from_dict
from megacpt.config.schema import ModelConfig
from megacpt.convert.layout import check_layout
from megacpt.convert.megatron_io import META, read_meta
from megacpt.convert.resize import METHODS, PRESETS, expansion_from_tokenizers, resolve_methods
from megacpt.convert.resize_checkpoint import resize_hf, resize_megatron
from megacpt.errors import UserError, exits_on_user_error


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--input", required=True, type=Path, help="Hugging Face model dir or megacpt checkpoint")
    p.add_argument("--output", required=True, type=Path, help="new checkpoint directory")
    p.add_argument(
        "--base-tokenizer", required=True, type=Path, help="the tokenizer the input model was trained with"
    )
    p.add_argument(
        "--tokenizer", required=True, type=Path, help="the expanded tokenizer (only appends tokens)"
    )
    p.add_argument("--preset", choices=sorted(PRESETS), default=None)
    p.add_argument("--input-init", choices=METHODS, default=None, help="method for new embedding rows")
    p.add_argument("--output-init", choices=METHODS, default=None, help="method for new output-layer rows")
    p.add_argument("--seed", type=int, default=0, help="seed of the random method")
    p.add_argument("--target-tp", type=int, default=1, help="Megatron: TP the padding is computed for")
    return p.parse_args(argv)


@exits_on_user_error
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if not args.input.is_dir():
        raise UserError(f"input {args.input} is not a directory")
    methods = resolve_methods(args.preset, args.input_init, args.output_init)
    expansion = expansion_from_tokenizers(args.base_tokenizer, args.tokenizer)
    if (args.input / META).is_file():
        check_layout(from_dict(ModelConfig, read_meta(args.input)["model"], "model"), args.target_tp, 1)
        out = resize_megatron(
            args.input, args.output, expansion, methods, args.seed, args.target_tp, args.tokenizer
        )
    else:
        out = resize_hf(args.input, args.output, expansion, methods, args.seed, args.tokenizer)
    added = expansion.new_size - expansion.old_size
    print(
        f"wrote {out}: {expansion.old_size} -> {expansion.new_size} tokens ({added} new; input {methods[0]}, output {methods[1]})"
    )


if __name__ == "__main__":
    main()
