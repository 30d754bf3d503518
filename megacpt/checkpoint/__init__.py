"""Megatron-core checkpoints: one package for their format and everything that reads or writes them.

- ``meta``: the layout (``iter_N``, ``latest``, ``megacpt.json``) and the trust checks that read a
  checkpoint's files without running code;
- ``state``: save, resume and ``load_pretrained`` for a training run (Megatron ``dist_checkpointing``);
- ``tensors``: reading and writing tensors without a model (conversion, the vocabulary resize);
- ``model``: opening a checkpoint as a model in this process (calibration, checks).

When to save is policy and stays with the trainer (``megacpt.training.checkpointer``).
"""
