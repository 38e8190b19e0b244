"""Where ``stream_tokens``, ``stream_text`` and ``generate_text`` were first defined; they live in
``tokens`` (the token loop) and ``text`` (text on top of it) now. Import them from ``genforge.sampling``."""

from __future__ import annotations

from .text import generate_text, stream_text
from .tokens import stream_tokens

__all__ = ["generate_text", "stream_text", "stream_tokens"]
