"""Sampling: turn a ``StepModel``'s logits into tokens and text.

``processors`` holds the pure logits processors and ``sample_next``; ``stop`` the streaming stop-string
matcher; ``decode`` the autoregressive loop (``stream_tokens``, ``stream_text``, ``generate_text``);
``search`` the batched refiners (``best_of_n``, ``beam_search``). The names below are importable from
``genforge.sampling`` directly; they load on first use, so importing this package stays cheap.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "sample_next": "processors", "process_logits": "processors",
    "stream_tokens": "decode", "stream_text": "decode", "generate_text": "decode",
    "best_of_n": "search", "beam_search": "search",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
