"""Retrieval for API requests: ``genforge_retrieve`` (or the server's ``--retrieve``) puts passages from an
index in front of a completion's prompt or into a chat's system message, through the pipeline's one
context builder; the response carries ``genforge_citations`` and, once the text is known,
``genforge_grounding`` (each sentence's support; unsupported ones flagged).

Indexes open once per server (``Indexes``) and are searched off the event loop.
"""
from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from ..errors import GenforgeError
from ..pipelines.retrieve import DEFAULT_K, context_budget, ground, grounding_dict, retrieve_context
from ..retrieval.context import Context
from .schemas import APIError


class Indexes:
    """Index name -> the opened index, opened on first use (or at startup for ``--retrieve``)."""

    def __init__(self) -> None:
        self._open: dict[str, Any] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> Any:
        with self._lock:
            if name not in self._open:
                from ..pipelines.retrieve import open_retriever

                self._open[name] = open_retriever(name)
            return self._open[name]


def requested(req: Any, default: str | None) -> tuple[str, int, dict[str, str]] | None:
    """(index, k, filters) the request asks for: its ``genforge_retrieve`` field, else the server's default;
    ``genforge_retrieve: false`` turns the default off."""
    asked = req.genforge_retrieve
    if asked is False or (asked is None and not default):
        return None
    if asked is None:
        return default, DEFAULT_K, {}
    if isinstance(asked, str):
        return asked, DEFAULT_K, {}
    return asked.index, asked.k, dict(asked.filters or {})


async def request_context(indexes: Indexes, m: Any, req: Any, default: str | None, query: str,
                          prompt_tokens: int) -> Context | None:
    """The sources block for a request (None without retrieval); bad options or a missing index: a 400."""
    want = requested(req, default)
    if want is None:
        return None
    if m.modality != "text":
        raise APIError(400, f"genforge_retrieve applies to text models; {m.name!r} is a {m.modality} model",
                       "genforge_retrieve", "invalid_value")
    name, k, filters = want
    try:
        budget = context_budget(m.context_length, prompt_tokens, req.max_tokens)
        index = await asyncio.to_thread(indexes.get, name)
        return await asyncio.to_thread(retrieve_context, index, query, m.tm.codec, budget, k, filters)
    except GenforgeError as e:
        raise APIError(400, str(e), "genforge_retrieve", "retrieval_failed") from None


def citations_extra(ctx: Context | None) -> dict[str, Any]:
    """The response's (and the first stream chunk's) ``genforge_citations``."""
    return {} if ctx is None else {"genforge_citations": [c.to_dict() for c in ctx.citations]}


def grounding_finish(ctx: Context | None) -> Callable[[list[str]], dict[str, Any]] | None:
    """What the finished texts add to the response: ``genforge_grounding``, one report per choice."""
    if ctx is None:
        return None

    def finish(texts: list[str]) -> dict[str, Any]:
        reports = []
        for text in texts:
            supports, method = ground(text, ctx)
            reports.append(grounding_dict(supports, method))
        return {"genforge_grounding": reports}

    return finish
