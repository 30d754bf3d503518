"""Workarounds in Megatron-core's model.

- ``scale_llama3_rope``: ``GPTModel(rope_scaling=True)`` hard-codes Llama 3.1's low/high frequency
  factors and original context length; a model with other values would silently get the wrong
  ones. The rotary embedding's private ``_apply_scaling`` takes them as arguments.
"""

from __future__ import annotations

from typing import Any


def scale_llama3_rope(
    rotary: Any,
    factor: float,
    low_freq_factor: float,
    high_freq_factor: float,
    original_max_position_embeddings: int,
) -> None:
    """Scale ``rotary``'s (a ``RotaryEmbedding``) inverse frequencies as Llama 3.x does."""
    rotary.inv_freq = rotary._apply_scaling(
        rotary.inv_freq,
        factor=factor,
        low_freq_factor=low_freq_factor,
        high_freq_factor=high_freq_factor,
        original_max_position_embeddings=original_max_position_embeddings,
    )
