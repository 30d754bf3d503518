"""What the command line needs to know of the row initialisations, without importing torch.

The method and preset names, how a preset and explicit choices resolve, and the distillation
settings, so that ``megacpt resize --help`` answers before any heavy import
(``megacpt.convert.resize`` and ``megacpt.convert.distill`` do the work).
"""

from __future__ import annotations

from dataclasses import dataclass

from megacpt.config.schema import Preset
from megacpt.errors import UserError

METHODS = ("random", "mean", "subword_mean", "subword_first")
INPUT_METHODS = (*METHODS, "distill")  # distill needs the base model and text: resize_checkpoint
# preset -> (input rows, output rows). Swallow and RedWhale both build both rows from the pieces.
PRESETS: dict[Preset, tuple[str, str]] = {
    "swallow": ("subword_mean", "subword_mean"),
    "eeve": ("subword_mean", "subword_first"),
    "redwhale": ("subword_mean", "subword_mean"),
}


def resolve_methods(
    preset: str | None, input_method: str | None, output_method: str | None
) -> tuple[str, str]:
    """(input, output) methods from a preset and/or explicit choices (explicit ones win)."""
    if preset is not None and preset not in PRESETS:
        raise UserError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    default_in, default_out = PRESETS[preset] if preset else ("subword_mean", "subword_mean")
    chosen = (input_method or default_in, output_method or default_out)
    for method, allowed in zip(chosen, (INPUT_METHODS, METHODS), strict=True):
        if method not in allowed:
            raise UserError(f"unknown initialisation method {method!r}; choose one of {', '.join(allowed)}")
    return chosen


@dataclass(frozen=True)
class DistillConfig:
    """How much text and how many steps the learnt rows get (defaults: ``bench/results/expansion_split.md``)."""

    tokens: int = 24576  # expanded tokens of training text to learn from
    window: int = 48  # expanded tokens per window (the text is cut near twice as many characters)
    steps: int = 48  # Adam steps on the new rows
    batch_size: int = 16  # windows per step
    lr: float = 3e-3
    seed: int = 0

    def __post_init__(self) -> None:
        if self.tokens < 1:
            raise UserError(f"the distillation budget must be at least one token, got {self.tokens}")
        if self.window < 4 or self.batch_size < 1 or self.steps < 1 or not self.lr > 0:
            raise UserError(
                "distillation needs a window of >= 4 tokens, a batch of >= 1, >= 1 step and a positive LR"
            )
