"""Sampling: turn a ``StepModel``'s logits into tokens and text.

``processors`` holds the pure logits processors and ``sample_next``; ``tokens`` the one autoregressive
loop (prefill, step, penalty counts, sliding window: ``sample_tokens``, ``stream_tokens``); ``search``
best-of-n and beam search on its pieces; ``stop`` the streaming stop-string matcher; ``text`` text on top
of the loop (``stream_text``, ``generate_text``). The modules form a chain (processors, stop <- tokens <-
search <- text), no cycles. The names below are importable from ``genforge.sampling`` directly; they
load on first use, so importing this package stays cheap.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "sample_next": "processors", "process_logits": "processors",
    "sample_tokens": "tokens", "stream_tokens": "tokens",
    "stream_text": "text", "generate_text": "text",
    "best_of_n": "search", "beam_search": "search",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
