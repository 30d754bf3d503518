"""``megacpt convert`` (checkpoints between GGUF, Hugging Face and Megatron) and ``megacpt resize``
(embedding rows for an expanded tokenizer): the command-line faces of ``megacpt.convert``.

Only the option names load here, so ``--help`` and bad flags answer before torch, transformers
and Megatron-core import; ``megacpt.convert.commands`` does the work.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from megacpt.atomic import CHECKPOINT, HF_MODEL, check_output
from megacpt.checkpoint.meta import META
from megacpt.convert.methods import INPUT_METHODS, METHODS, PRESETS, DistillConfig, resolve_methods
from megacpt.errors import UserError, exits_on_user_error
from megacpt.options import COUNT, NON_NEGATIVE, ArgumentParser, add_overwrite

CONVERT_DOC = """Convert a model between Hugging Face safetensors, GGUF and a megacpt Megatron-core checkpoint.

Examples:

    python tools/convert_checkpoint.py gguf-to-hf --input SmolLM2-135M-Instruct.Q4_1.gguf --output models/smollm2
    python tools/convert_checkpoint.py gguf-to-megatron --input model.gguf --output ckpt/base --target-tp 2

    python tools/convert_checkpoint.py hf-to-megatron --input models/Llama-2-7b-hf --output ckpt/llama2 \\
        --target-tp 2 --target-pp 2
    python tools/convert_checkpoint.py megatron-to-hf --input runs/ko/checkpoints/iter_0025000 \\
        --output export/llama2-ko --tokenizer out/tokenizer-ko

Families: Llama 2/3 (and SOLAR-style deep Llamas, SmolLM), Mistral, Qwen2. GGUF files are read with
transformers' GGUF loader and dequantised (``megacpt.convert.gguf``). The Megatron checkpoint loads at
any TP/PP (``checkpoint.pretrained=<dir>``); its vocabulary rows are padded for ``--target-tp``.
"""


def _convert_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = ArgumentParser(description=CONVERT_DOC.split("\n")[0])
    sub = p.add_subparsers(dest="direction", required=True)
    gguf_to_hf = sub.add_parser("gguf-to-hf", help="GGUF file -> Hugging Face directory (dequantised)")
    gguf_to_hf.add_argument("--input", required=True, type=Path, help="a .gguf file")
    gguf_to_hf.add_argument("--output", required=True, type=Path, help="new Hugging Face model directory")
    gguf_to_hf.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32")
    add_overwrite(gguf_to_hf)
    for name, source in (("hf-to-megatron", "Hugging Face directory"), ("gguf-to-megatron", "GGUF file")):
        to_mcore = sub.add_parser(name, help=f"{source} -> megacpt checkpoint")
        to_mcore.add_argument("--input", required=True, type=Path, help=source)
        to_mcore.add_argument("--output", required=True, type=Path, help="new checkpoint directory")
        to_mcore.add_argument("--make-vocab-size-divisible-by", type=COUNT, default=128)
        add_overwrite(to_mcore)
        to_mcore.add_argument(
            "--target-tp", type=COUNT, default=1, help="TP the model will train at (padding, checks)"
        )
        to_mcore.add_argument(
            "--target-pp", type=COUNT, default=1, help="PP the model will train at (checks)"
        )
    to_hf = sub.add_parser("megatron-to-hf", help="megacpt checkpoint (any layout) -> Hugging Face directory")
    to_hf.add_argument(
        "--input",
        required=True,
        type=Path,
        help="megacpt checkpoint (iter_N), or a run's checkpoint root (its latest)",
    )
    to_hf.add_argument("--output", required=True, type=Path, help="new Hugging Face model directory")
    to_hf.add_argument(
        "--tokenizer", type=Path, default=None, help="tokenizer dir (default: the one converted in)"
    )
    to_hf.add_argument("--max-shard-size-mb", type=COUNT, default=2048)
    add_overwrite(to_hf)
    return p.parse_args(argv)


@exits_on_user_error
def convert_main(argv: list[str] | None = None) -> None:
    args = _convert_args(argv)
    kind = CHECKPOINT if args.direction.endswith("-to-megatron") else HF_MODEL
    check_output(args.output, [args.input, getattr(args, "tokenizer", None)], args.overwrite, kind)
    from megacpt.convert import commands  # the heavy imports, once the options are known to be good

    print(f"wrote {commands.convert(args)}")


RESIZE_DOC = """Grow a model's embedding and output layer for an expanded tokenizer, initialising the new rows.

Example (EEVE: input rows = mean of sub-token rows, output rows = first sub-token's row):

    python tools/resize_embeddings.py --input ckpt/solar --output ckpt/solar-ko \\
        --base-tokenizer models/SOLAR-10.7B --tokenizer out/tokenizer-ko --preset eeve --target-tp 8

``--input`` is a Hugging Face model directory or a megacpt Megatron checkpoint (then only the two
vocabulary tensors are read and rewritten). ``--preset`` takes the row methods of a published
recipe. By default the new output rows are also logit-calibrated from
the new tokens' frequencies (``megacpt.convert.calibrate``; this runs the base model once over a
few hundred tokens). A model with tied embeddings stays tied unless ``--untie-embeddings``. The input
is never modified.

``--input-init distill`` learns the new input rows from the frozen base model on ``--distill-text``
(token distillation, ``megacpt.convert.distill``); pair it with ``--untie-embeddings``, since tied
rows also serve as output rows (``bench/results/expansion_split.md``).
"""


def _resize_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = ArgumentParser(description=RESIZE_DOC.split("\n")[0])
    p.add_argument("--input", required=True, type=Path, help="Hugging Face model dir or megacpt checkpoint")
    p.add_argument("--output", required=True, type=Path, help="new checkpoint directory")
    p.add_argument(
        "--base-tokenizer", required=True, type=Path, help="the tokenizer the input model was trained with"
    )
    p.add_argument(
        "--tokenizer", required=True, type=Path, help="the expanded tokenizer (only appends tokens)"
    )
    p.add_argument("--preset", choices=sorted(PRESETS), default=None)
    p.add_argument("--input-init", choices=INPUT_METHODS, default=None, help="method for new embedding rows")
    p.add_argument("--output-init", choices=METHODS, default=None, help="method for new output-layer rows")
    p.add_argument(
        "--logit-calibration",
        choices=("frequency", "none"),
        default="frequency",
        help="shift each new output row's logit by its token's log frequency (runs the base model once)",
    )
    p.add_argument(
        "--untie-embeddings",
        action="store_true",
        help="give a tied model its own output layer (old rows copied, new rows from --output-init)",
    )
    p.add_argument(
        "--distill-text",
        nargs="+",
        type=Path,
        default=None,
        help="--input-init distill: JSONL text in the new tokens' languages (the expansion's training text)",
    )
    p.add_argument(
        "--distill-tokens",
        type=COUNT,
        default=DistillConfig.tokens,
        help="--input-init distill: expanded tokens of that text to learn from",
    )
    p.add_argument(
        "--distill-steps", type=COUNT, default=DistillConfig.steps, help="--input-init distill: Adam steps"
    )
    p.add_argument("--seed", type=NON_NEGATIVE, default=0, help="seed of the random method")
    p.add_argument("--target-tp", type=COUNT, default=1, help="Megatron: TP the padding is computed for")
    add_overwrite(p)
    return p.parse_args(argv)


def _distill_config(args: argparse.Namespace, input_method: str) -> DistillConfig | None:
    """The distillation settings when the input rows are distilled; distillation flags otherwise
    are refused, not ignored."""
    given = args.distill_text is not None or args.distill_tokens != DistillConfig.tokens
    given = given or args.distill_steps != DistillConfig.steps
    if input_method != "distill":
        if given:
            raise UserError(
                "--distill-text/--distill-tokens/--distill-steps apply only with --input-init distill"
            )
        return None
    if not args.distill_text:
        raise UserError("--input-init distill needs --distill-text: JSONL in the new tokens' languages")
    for path in args.distill_text:
        if not path.is_file():
            raise UserError(f"--distill-text {path} is not a file")
    return DistillConfig(tokens=args.distill_tokens, steps=args.distill_steps, seed=args.seed)


@exits_on_user_error
def resize_main(argv: list[str] | None = None) -> None:
    args = _resize_args(argv)
    if not args.input.is_dir():
        raise UserError(f"input {args.input} is not a directory")
    methods = resolve_methods(args.preset, args.input_init, args.output_init)
    distill_cfg = _distill_config(args, methods[0])
    inputs = [args.input, args.base_tokenizer, args.tokenizer, *(args.distill_text or [])]
    kind = CHECKPOINT if (args.input / META).is_file() else HF_MODEL
    if kind == HF_MODEL and args.target_tp != 1:
        raise UserError(
            "--target-tp applies only to a megacpt checkpoint input; a Hugging Face model has no TP padding"
        )
    check_output(args.output, inputs, args.overwrite, kind)
    from megacpt.convert import commands  # the heavy imports, once the options are known to be good

    commands.resize(args, methods, distill_cfg)
