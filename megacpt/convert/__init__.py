"""Model surgery: Hugging Face <-> Megatron-core checkpoint conversion and vocabulary resizing."""
