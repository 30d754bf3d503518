"""Training: the loop over Megatron-core schedules, when it checkpoints (the format: ``megacpt.checkpoint``), batches, loss and metrics."""
