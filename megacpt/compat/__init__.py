"""The one boundary for foreign internals: every private name of Megatron-core, torch and
transformers that megacpt uses is used in this package, behind one named function per workaround.

- ``cpu``: running Megatron-core on a machine without CUDA (patches applied only there);
- ``optimizer``: Megatron's distributed optimizer over torch's Adam (no TE/apex), and the offset of
  a parameter in its flat buffer;
- ``data``: dataset building alone in a process, and keeping one split;
- ``model``: Llama 3.x RoPE scaling with a model's own factors;
- ``dcp``: torch DCP's storage records, Megatron's checkpoint writer without a Manager, the fake
  process group's store;
- ``streaming_save``: a torch_dist save strategy that makes each tensor only when it is written;
- ``gigatoken``: gigatoken's SentencePiece → tokenizer.json converter.

``BOUNDARY`` lists each foreign symbol used; ``REPLACED`` pins the source of each method replaced
wholesale. ``tests/compat/test_boundary.py`` checks both, so an upgrade of a dependency fails
loudly here rather than silently deep inside a run.
"""

from __future__ import annotations

# (module, attribute path) of every private or patched foreign symbol megacpt touches.
BOUNDARY: tuple[tuple[str, str], ...] = (
    ("megatron.core.tensor_parallel.random", "_get_cuda_rng_state"),
    ("megatron.core.tensor_parallel.random", "_set_cuda_rng_state"),
    ("megatron.core.tensor_parallel.random", "CudaRNGStatesTracker.add"),
    ("megatron.core.tensor_parallel.random", "CudaRNGStatesTracker.fork"),
    ("megatron.core.tensor_parallel.random", "_MODEL_PARALLEL_RNG_TRACKER_NAME"),
    ("megatron.core.optimizer.distrib_optimizer", "DistributedOptimizer._build_model_and_main_param_groups"),
    ("megatron.core.optimizer.distrib_optimizer", "DistributedOptimizer._get_model_param_range_map"),
    (
        "megatron.core.optimizer.distrib_optimizer",
        "DistributedOptimizer._set_main_param_and_optimizer_states",
    ),
    ("megatron.core.optimizer.distrib_optimizer", "DistributedOptimizer.state_dict"),
    ("megatron.core.optimizer.distrib_optimizer", "HAVE_APEX_OR_TE"),
    ("megatron.core.optimizer.optimizer", "Float16OptimizerWithFloat16Params.__init__"),
    ("megatron.core.dist_checkpointing.strategies.filesystem_async", "_results_queue"),
    ("megatron.core.dist_checkpointing.strategies.torch", "_replace_state_dict_keys_with_sharded_keys"),
    ("megatron.core.models.common.embeddings.rotary_pos_embedding", "RotaryEmbedding._apply_scaling"),
    ("megatron.core.datasets.gpt_dataset", "GPTDatasetConfig"),
    ("torch.distributed.checkpoint.filesystem", "_StorageInfo"),
    ("torch.distributed.checkpoint.filesystem", "FileSystemWriter._write_data"),
    ("torch.testing._internal.distributed.fake_pg", "FakeStore"),
    ("gigatoken._load.sentencepiece", "sentencepiece_to_tokenizer_json"),
)

# sha256 of ``inspect.getsource`` of each foreign method that megacpt replaces wholesale (its
# replacement copies the original's logic): a change upstream must be looked at before upgrading.
REPLACED: dict[tuple[str, str], str] = {
    (
        "megatron.core.tensor_parallel.random",
        "CudaRNGStatesTracker.add",
    ): "c7b54631963881cc19e3a76792f870a0f1ac9fe6a95a1f9ecd9d1e1a0b6787a3",
    (
        "megatron.core.tensor_parallel.random",
        "CudaRNGStatesTracker.fork",
    ): "92b05af7dcf35f4593ccea14ca3845e8185cda822e2e71287c0b1014da5ecaf8",
    (
        "megatron.core.optimizer.distrib_optimizer",
        "DistributedOptimizer._set_main_param_and_optimizer_states",
    ): "0fb8c1343b9d75846dbdc8e318c8e92c12461ac34976151344ebc34e4d9fb95b",
    (
        "megatron.core.optimizer.distrib_optimizer",
        "DistributedOptimizer.state_dict",
    ): "8881ca2f563866d6107cadad13cf99060b40a1d816e024b4f3e0039e1658210e",
}
