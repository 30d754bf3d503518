"""Convert a model between Hugging Face safetensors and a megacpt Megatron-core checkpoint.

Examples:

    python tools/convert_checkpoint.py hf-to-megatron --input models/Llama-2-7b-hf --output ckpt/llama2 \\
        --target-tp 2 --target-pp 2
    python tools/convert_checkpoint.py megatron-to-hf --input runs/ko/checkpoints/iter_0025000 \\
        --output export/llama2-ko --tokenizer out/tokenizer-ko

Families: Llama 2/3 (and SOLAR-style deep Llamas), Mistral, Qwen2. The Megatron checkpoint loads at
any TP/PP (``checkpoint.pretrained=<dir>``); its vocabulary rows are padded for ``--target-tp``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from megacpt.convert import families
from megacpt.convert.hf_to_megatron import convert_hf_to_megatron
from megacpt.convert.layout import check_layout
from megacpt.convert.megatron_to_hf import convert_megatron_to_hf
from megacpt.convert.safetensors_io import HFReader
from megacpt.errors import exits_on_user_error


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="direction", required=True)
    to_mcore = sub.add_parser("hf-to-megatron", help="Hugging Face directory -> megacpt checkpoint")
    to_mcore.add_argument("--input", required=True, type=Path, help="Hugging Face model directory")
    to_mcore.add_argument("--output", required=True, type=Path, help="new checkpoint directory")
    to_mcore.add_argument("--make-vocab-size-divisible-by", type=int, default=128)
    to_mcore.add_argument(
        "--target-tp", type=int, default=1, help="TP the model will train at (padding, checks)"
    )
    to_mcore.add_argument("--target-pp", type=int, default=1, help="PP the model will train at (checks)")
    to_hf = sub.add_parser("megatron-to-hf", help="megacpt checkpoint (any layout) -> Hugging Face directory")
    to_hf.add_argument("--input", required=True, type=Path, help="megacpt checkpoint directory (iter_N)")
    to_hf.add_argument("--output", required=True, type=Path, help="new Hugging Face model directory")
    to_hf.add_argument(
        "--tokenizer", type=Path, default=None, help="tokenizer dir (default: the one converted in)"
    )
    to_hf.add_argument("--max-shard-size-mb", type=int, default=2048)
    return p.parse_args(argv)


@exits_on_user_error
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.direction == "hf-to-megatron":
        model = families.model_config(HFReader(args.input).config, args.make_vocab_size_divisible_by)
        check_layout(model, args.target_tp, args.target_pp)
        out = convert_hf_to_megatron(
            args.input, args.output, args.make_vocab_size_divisible_by, args.target_tp
        )
    else:
        out = convert_megatron_to_hf(
            args.input, args.output, args.tokenizer, args.max_shard_size_mb * 1024**2
        )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
