"""Training: one fit() loop, checkpoints, distributed set-up."""
