"""Training: the loop over Megatron-core schedules, its checkpoints, batches, loss and metrics."""
