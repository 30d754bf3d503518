"""Vocabulary expansion: train target-language tokens, select them, append them to a base tokenizer.

Entry point: ``expand_vocab(ExpansionConfig(...)) -> ExpansionResult``; ``tools/expand_vocab.py``
is its command line. Old token ids never change; see ``expand`` for the output directory layout.
"""

from typing import Any

from megacpt.tokenizer.config import ExpansionConfig, SelectConfig, TrainConfig


def __getattr__(name: str) -> Any:
    """``expand_vocab`` and ``ExpansionResult`` import transformers: only when asked for (PEP 562),
    so that reading a corpus or a config through this package stays light."""
    if name in ("ExpansionResult", "expand_vocab"):
        from megacpt.tokenizer import expand

        return getattr(expand, name)
    raise AttributeError(f"module 'megacpt.tokenizer' has no attribute {name!r}")


__all__ = ["ExpansionConfig", "ExpansionResult", "SelectConfig", "TrainConfig", "expand_vocab"]
