"""Data: tokenised Megatron indexed datasets (writing, merging, reading, preprocessing) and mixtures."""
