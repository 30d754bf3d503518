"""Vocabulary expansion: train target-language tokens, select them, append them to a base tokenizer.

Entry point: ``expand_vocab(ExpansionConfig(...)) -> ExpansionResult``; ``tools/expand_vocab.py``
is its command line. Old token ids never change; see ``expand`` for the output directory layout.
"""

from megacpt.tokenizer.config import ExpansionConfig, SelectConfig, TrainConfig
from megacpt.tokenizer.expand import ExpansionResult, expand_vocab

__all__ = ["ExpansionConfig", "ExpansionResult", "SelectConfig", "TrainConfig", "expand_vocab"]
