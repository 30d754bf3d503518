"""``megacpt convert`` (checkpoints between GGUF, Hugging Face and Megatron) and ``megacpt resize``
(embedding rows for an expanded tokenizer): the command-line faces of ``megacpt.convert``.

Only the options load here (``megacpt.convert.options``), so ``--help`` and bad flags answer before
torch, transformers and Megatron-core import; ``megacpt.convert.commands`` does the work.
"""

from __future__ import annotations

from megacpt.atomic import CHECKPOINT, HF_MODEL, check_output
from megacpt.checkpoint.meta import META
from megacpt.convert.options import CONVERSIONS, ResizeOptions
from megacpt.errors import UserError, exits_on_user_error
from megacpt.options import parse, parse_command

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


@exits_on_user_error
def convert_main(argv: list[str] | None = None) -> None:
    commands = {options.command: (options, options.__doc__ or "") for options in CONVERSIONS}
    options = parse_command(commands, argv, CONVERT_DOC.split("\n")[0])
    kind = CHECKPOINT if options.command.endswith("-to-megatron") else HF_MODEL
    check_output(options.output, options.inputs, options.overwrite, kind)
    from megacpt.convert import commands as work  # the heavy imports, once the options are known to be good

    print(f"wrote {work.convert(options)}")


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


@exits_on_user_error
def resize_main(argv: list[str] | None = None) -> None:
    options = parse(ResizeOptions, argv, RESIZE_DOC.split("\n")[0])
    if not options.input.is_dir():
        raise UserError(f"input {options.input} is not a directory")
    distill = options.distill()
    kind = CHECKPOINT if (options.input / META).is_file() else HF_MODEL
    if kind == HF_MODEL and options.target_tp != 1:
        raise UserError(
            "--target-tp applies only to a megacpt checkpoint input; a Hugging Face model has no TP padding"
        )
    check_output(options.output, options.inputs, options.overwrite, kind)
    from megacpt.convert import commands  # the heavy imports, once the options are known to be good

    commands.resize(options, options.methods, distill)
