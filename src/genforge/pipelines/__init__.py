"""Pipelines: encode -> (retrieve) -> predict -> sample -> decode, one per modality."""
