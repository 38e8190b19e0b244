"""What fits a model's context: the one place that decides ``max_tokens`` and which chat turns to keep.

Used by ``genforge generate``, ``genforge chat`` and the server (completions, and chat for the API and
the studio). The rules:

- an explicit ``max_tokens`` must fit beside the prompt, else ``ContextLengthError`` stating the three
  numbers (OpenAI's semantics for explicit values);
- ``max_tokens=None`` means "what fits": all the room the prompt leaves;
- a chat that may drop turns (``genforge chat``, the studio) leaves out the oldest messages, never the
  system message or the newest one, until the reply has room: ``max_tokens`` if given, else half the
  context (then the reply gets all the room left). When even the system message and the newest one
  leave less than ``max_tokens``, the reply gets what is left, down to ``MIN_REPLY_TOKENS``;
- with ``slide`` (generation slides the window past the context: the CLI, ``genforge chat``, the studio,
  a server started with ``--sliding-window``) an explicit ``max_tokens`` is kept as asked: only the prompt
  must fit, and a chat that may drop turns keeps room for at most half the context of it.

Pure functions over a ``render`` and an ``encode`` callable: no torch, no template, no model here.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import GenforgeError

MIN_REPLY_TOKENS = 8  # a chat that leaves less room than this for the reply is refused


class ContextLengthError(GenforgeError):
    """The prompt and the reply cannot fit the model's context (the HTTP API's ``context_length_exceeded``)."""


def fit_max_tokens(prompt_tokens: int, context: int, max_tokens: int | None, what: str = "prompt",
                   slide: bool = False) -> int:
    """The ``max_tokens`` to generate with: ``None`` = all the room left; an explicit value must fit, or
    with ``slide`` (generation slides the window past the context) only the prompt must."""
    room = context - prompt_tokens
    if slide and max_tokens is not None and room >= 0:
        return max_tokens
    if max_tokens is None:
        if room < 1:
            raise ContextLengthError(f"the {what} has {prompt_tokens} tokens, which leaves no room for a reply in "
                                     f"the model's context of {context} tokens: shorten the {what} to at most "
                                     f"{context - 1} tokens")
        return room
    if max_tokens > room:
        fix = f"lower max_tokens to {room} or shorten the {what}" if room >= 1 else \
            f"shorten the {what} to at most {context - 1} tokens"
        raise ContextLengthError(f"the {what} has {prompt_tokens} tokens and max_tokens is {max_tokens} "
                                 f"({prompt_tokens + max_tokens} in all), but the model's context is {context} "
                                 f"tokens: {fix}")
    return max_tokens


@dataclass(frozen=True)
class ChatWindow:
    """The part of a conversation that fits, rendered and encoded."""

    messages: list[Mapping[str, Any]]  # what the prompt holds: the system message (if any) first
    prompt: str  # the rendered prompt
    prompt_ids: list[int]
    max_tokens: int  # what the reply may use
    dropped: int  # oldest messages left out


def fit_chat(messages: Sequence[Mapping[str, Any]], render: Callable[[list], str],
             encode: Callable[[str], list[int]], context: int, max_tokens: int | None = None,
             drop_oldest: bool = False, min_reply: int = MIN_REPLY_TOKENS, slide: bool = False) -> ChatWindow:
    """Render ``messages`` into a prompt that leaves room for the reply; see the module docstring.

    Without ``drop_oldest`` nothing is left out (the HTTP API's default). ``render`` and ``encode``
    errors (bad messages, text outside the vocabulary) pass through unchanged.
    """
    msgs = list(messages)
    head = msgs[:1] if msgs and msgs[0].get("role") == "system" else []
    rest = msgs[len(head):]

    def window(drop: int) -> tuple[list, str, list[int]]:
        kept = head + rest[drop:]
        prompt = render(kept)
        return kept, prompt, encode(prompt)

    kept, prompt, ids = window(0)
    if not drop_oldest:
        n = len(ids)
        return ChatWindow(kept, prompt, ids, fit_max_tokens(n, context, max_tokens, "conversation", slide), 0)
    want = max_tokens if max_tokens is not None else context // 2
    if slide:  # the reply may run past the context: no need to clear the whole of it
        want = min(want, context // 2)
    # where the kept part may start: at a user message (or at the start), never past the newest message
    starts = [0] + [i for i in range(1, len(rest)) if rest[i].get("role") == "user"]
    if len(ids) + want > context and len(starts) > 1:
        fitted, lo, hi = None, 1, len(starts) - 1  # the fewest drops that fit: a binary search (fewer = longer)
        while lo <= hi:
            mid = (lo + hi) // 2
            candidate = window(starts[mid])
            if len(candidate[2]) + want <= context:
                fitted, hi = candidate, mid - 1
            else:
                lo = mid + 1
        kept, prompt, ids = fitted or window(starts[-1])
    room = context - len(ids)
    if room < min(min_reply, want):
        raise ContextLengthError(f"that message is too long: with the system message the prompt is {len(ids)} "
                                 f"tokens and the model's context is {context}; shorten it (or the system "
                                 "message)")
    budget = room if max_tokens is None else max_tokens if slide else min(max_tokens, room)
    return ChatWindow(kept, prompt, ids, budget, len(rest) - (len(kept) - len(head)))
