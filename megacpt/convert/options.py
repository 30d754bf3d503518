"""The options of ``megacpt convert`` (one dataclass per direction) and ``megacpt resize``: typed,
checked on construction, light to import (``megacpt.options`` builds their command lines)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from megacpt.convert.methods import INPUT_METHODS, METHODS, PRESETS, DistillConfig, resolve_methods
from megacpt.errors import UserError
from megacpt.options import COUNT, NON_NEGATIVE, flag, overwrite_flag


@dataclass(frozen=True, kw_only=True)
class ConvertOptions:
    """What every conversion takes."""

    command: ClassVar[str]
    input: Path
    output: Path
    overwrite: bool = overwrite_flag()

    @property
    def inputs(self) -> list[Path]:
        """The files the conversion reads (never to be replaced by its output)."""
        return [self.input]


@dataclass(frozen=True, kw_only=True)
class GgufToHf(ConvertOptions):
    """GGUF file -> Hugging Face directory (dequantised)"""

    command = "gguf-to-hf"
    input: Path
    """a .gguf file"""
    output: Path
    """new Hugging Face model directory"""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """the dtype of the written weights"""


@dataclass(frozen=True, kw_only=True)
class HfToMegatron(ConvertOptions):
    """Hugging Face directory -> megacpt checkpoint"""

    command = "hf-to-megatron"
    input: Path
    """Hugging Face model directory"""
    output: Path
    """new checkpoint directory"""
    make_vocab_size_divisible_by: int = flag(128, type=COUNT)
    """pad the vocabulary rows to a multiple of this times --target-tp (Megatron-LM's padding)"""
    target_tp: int = flag(1, type=COUNT)
    """TP the model will train at (padding, checks)"""
    target_pp: int = flag(1, type=COUNT)
    """PP the model will train at (checks)"""


@dataclass(frozen=True, kw_only=True)
class GgufToMegatron(HfToMegatron):
    """GGUF file -> megacpt checkpoint"""

    command = "gguf-to-megatron"
    input: Path
    """a .gguf file"""


@dataclass(frozen=True, kw_only=True)
class MegatronToHf(ConvertOptions):
    """megacpt checkpoint (any layout) -> Hugging Face directory"""

    command = "megatron-to-hf"
    input: Path
    """megacpt checkpoint (iter_N), or a run's checkpoint root (its latest)"""
    output: Path
    """new Hugging Face model directory"""
    tokenizer: Path | None = flag(None, default_text="the one converted in")
    """tokenizer directory written beside the model"""
    max_shard_size_mb: int = flag(2048, type=COUNT)
    """largest safetensors shard"""

    @property
    def inputs(self) -> list[Path]:
        return [self.input, *([self.tokenizer] if self.tokenizer else [])]


CONVERSIONS: tuple[type[ConvertOptions], ...] = (GgufToHf, HfToMegatron, GgufToMegatron, MegatronToHf)


@dataclass(frozen=True, kw_only=True)
class ResizeOptions:
    """``megacpt resize``'s options."""

    input: Path
    """Hugging Face model dir or megacpt checkpoint"""
    output: Path
    """new checkpoint directory"""
    base_tokenizer: Path
    """the tokenizer the input model was trained with"""
    tokenizer: Path
    """the expanded tokenizer (only appends tokens)"""
    preset: str | None = flag(None, choices=tuple(sorted(PRESETS)))
    """the row methods of a published recipe"""
    input_init: str | None = flag(None, choices=INPUT_METHODS, default_text="the preset's, else subword_mean")
    """method for new embedding rows"""
    output_init: str | None = flag(None, choices=METHODS, default_text="the preset's, else subword_mean")
    """method for new output-layer rows"""
    logit_calibration: Literal["frequency", "none"] = "frequency"
    """shift each new output row's logit by its token's log frequency (runs the base model once)"""
    untie_embeddings: bool = False
    """give a tied model its own output layer (old rows copied, new rows from --output-init)"""
    distill_text: tuple[Path, ...] | None = None
    """--input-init distill: JSONL text in the new tokens' languages (the expansion's training text)"""
    distill_tokens: int = flag(DistillConfig.tokens, type=COUNT)
    """--input-init distill: expanded tokens of that text to learn from"""
    distill_steps: int = flag(DistillConfig.steps, type=COUNT)
    """--input-init distill: Adam steps"""
    seed: int = flag(0, type=NON_NEGATIVE)
    """seed of the random method"""
    target_tp: int = flag(1, type=COUNT)
    """Megatron: TP the padding is computed for"""
    overwrite: bool = overwrite_flag()

    def __post_init__(self) -> None:
        distilled = self.methods[0] == "distill"
        given = self.distill_text is not None or self.distill_tokens != DistillConfig.tokens
        if not distilled and (given or self.distill_steps != DistillConfig.steps):
            raise UserError(
                "--distill-text/--distill-tokens/--distill-steps apply only with --input-init distill"
            )
        if distilled and not self.distill_text:
            raise UserError("--input-init distill needs --distill-text: JSONL in the new tokens' languages")

    @property
    def methods(self) -> tuple[str, str]:
        """(input, output) row methods: the explicit ones, else the preset's."""
        return resolve_methods(self.preset, self.input_init, self.output_init)

    @property
    def inputs(self) -> list[Path]:
        return [self.input, self.base_tokenizer, self.tokenizer, *(self.distill_text or ())]

    def distill(self) -> DistillConfig | None:
        """The distillation settings when the input rows are distilled."""
        if self.methods[0] != "distill":
            return None
        for path in self.distill_text or ():
            if not path.is_file():
                raise UserError(f"--distill-text {path} is not a file")
        return DistillConfig(tokens=self.distill_tokens, steps=self.distill_steps, seed=self.seed)
