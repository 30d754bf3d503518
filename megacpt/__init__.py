"""megacpt: continual pretraining of LLMs into new languages on Megatron-core."""

__version__ = "0.1.0"
