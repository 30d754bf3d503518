"""Model construction: Megatron-core GPTModel chunks for this rank from a megacpt config."""
