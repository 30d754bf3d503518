"""Typed run configuration: schema, strict YAML loading with overrides, validation, Megatron mapping."""

from megacpt.config.loader import dump_config, load_config
from megacpt.config.schema import Config

__all__ = ["Config", "dump_config", "load_config"]
