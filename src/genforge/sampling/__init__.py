"""Sampling: turn a ``StepModel``'s logits into tokens and text.

``processors`` holds the pure logits processors and ``sample_next``; ``stop`` the streaming stop-string
matcher; ``decode`` the autoregressive loop (``stream_tokens``, ``stream_text``, ``generate_text``);
``search`` the batched refiners (``best_of_n``, ``beam_search``). Import from those modules directly.
"""
