"""Check that a model's heads, query groups, FFN and layers divide a target TP/PP layout."""

from __future__ import annotations

from megacpt.config.schema import Config, ModelConfig, ParallelConfig
from megacpt.config.validate import validate_layout


def check_layout(model: ModelConfig, tensor_parallel_size: int, pipeline_parallel_size: int) -> None:
    """Raise ``UserError`` when the model cannot be split ``tensor_parallel_size`` x ``pipeline_parallel_size``."""
    parallel = ParallelConfig(
        tensor_model_parallel_size=tensor_parallel_size, pipeline_model_parallel_size=pipeline_parallel_size
    )
    config = Config(model=model, parallel=parallel)
    config.training.global_batch_size = config.training.micro_batch_size
    config.data.seq_length = min(config.data.seq_length, model.max_position_embeddings)
    validate_layout(config, tensor_parallel_size * pipeline_parallel_size)
