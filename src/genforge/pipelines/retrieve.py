"""The pipeline's retrieve stage for token models: query an index, fit the passages into the prompt
(through ``retrieval.context.build_context``, the one way in), and check the answer's grounding.

Used by ``TextModel.answer`` (the Python API and ``genforge generate --retrieve``), ``genforge chat
--retrieve`` and the server's ``genforge_retrieve`` request field, so all three build the same prompt.
"""
from __future__ import annotations

import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import GenforgeError
from ..retrieval.context import Context, build_context
from ..retrieval.grounding import SentenceSupport, check_grounding, support_method
from ..types import Codec

DEFAULT_K = 4  # passages retrieved per question
REPLY_RESERVE = 64  # tokens kept free for the reply when max_tokens is not given (a reply may then slide on)


@dataclass
class Answer:
    """A generation grounded in retrieved passages: the text, what it cites, and how well it is supported."""

    text: str
    citations: list  # retrieval.context.Citation, numbered as in the prompt
    grounding: list[SentenceSupport]
    prompt: str  # the whole prompt the model continued (sources block + the user's prompt)
    finish_reason: str = "length"
    grounding_method: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def unsupported(self) -> list[SentenceSupport]:
        return [s for s in self.grounding if s.supported is False]

    def render(self) -> str:
        """The answer for a terminal: sentences with their citation ([n]) or ``[unsupported]``, then the
        sources and a one-line grounding summary."""
        from ..retrieval.context import sources_text
        from ..retrieval.grounding import annotate

        judged = [s for s in self.grounding if s.supported is not None]
        summary = (f"grounding ({self.grounding_method}): {len(judged) - len(self.unsupported)} of {len(judged)} "
                   "judged sentences supported by the sources" if judged else
                   "grounding: no sentence long enough to judge")
        return annotate(self.text, self.grounding) + "\n\n" + sources_text(self.citations) + summary

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "citations": [c.to_dict() for c in self.citations],
                "grounding": grounding_dict(self.grounding, self.grounding_method),
                "finish_reason": self.finish_reason}


def grounding_dict(supports: list[SentenceSupport], method: str) -> dict[str, Any]:
    """The grounding report as the API and ``--json`` give it."""
    judged = [s for s in supports if s.supported is not None]
    return {"method": method, "sentences": [s.to_dict() for s in supports],
            "unsupported": sum(1 for s in judged if not s.supported), "judged": len(judged)}


def keep_encodable(codec: Codec) -> Callable[[str], str]:
    """Text -> the text the codec can encode: a character it cannot is replaced by its unaccented form
    when that is encodable ("é" -> "e"), else dropped (a character model's alphabet is small)."""
    ok: dict[str, str] = {}

    def one(ch: str) -> str:
        if ch not in ok:
            ok[ch] = ""
            for cand in (ch, unicodedata.normalize("NFKD", ch)[:1]):
                try:
                    if cand and codec.encode(cand):
                        ok[ch] = cand
                        break
                except GenforgeError:
                    continue
        return ok[ch]

    return lambda text: "".join(one(c) for c in text)


def open_retriever(index: Any):
    """An index object from a name (``retrieval.open_index``) or an already opened index."""
    if isinstance(index, str):
        from ..retrieval.index import open_index

        return open_index(index)
    return index


def retrieve_context(index: Any, query: str, codec: Codec, budget: int, k: int = DEFAULT_K,
                     filters: Mapping[str, str] | None = None) -> Context:
    """Search ``index`` for ``query`` and build the delimited sources block in at most ``budget`` tokens."""
    if not query.strip():
        raise GenforgeError("the question is empty: nothing to retrieve passages for")
    from ..retrieval.index import check_k

    passages = open_retriever(index).search(query, k=check_k(k), filters=dict(filters or {}) or None)
    return build_context(passages, lambda s: len(codec.encode(s)), budget, keep=keep_encodable(codec))


def context_budget(context_length: int, prompt_tokens: int, max_tokens: int | None) -> int:
    """Tokens left for the sources block beside the prompt and the reply."""
    reserve = max_tokens if max_tokens is not None else min(REPLY_RESERVE, context_length // 4)
    budget = context_length - prompt_tokens - reserve
    if budget <= 0:
        raise GenforgeError(f"the prompt ({prompt_tokens} tokens) and the reply ({reserve} tokens) fill the "
                            f"model's {context_length}-token context: no room for retrieved passages; "
                            "shorten the prompt or lower max_tokens")
    return budget


def ground(text: str, ctx: Context) -> tuple[list[SentenceSupport], str]:
    """The grounding check of ``text`` against the passages of ``ctx``, and the method used."""
    method = support_method()
    return check_grounding(text, [c.text for c in ctx.citations], method=method), method


def with_sources(messages: list[dict[str, str]], block: str, default_system: str) -> list[dict[str, str]]:
    """Chat messages with the sources block at the end of the system message (one is added if none)."""
    if not block:
        return list(messages)
    out = [dict(m) for m in messages]
    if out and out[0].get("role") == "system":
        out[0]["content"] = (out[0].get("content") or "").rstrip() + "\n" + block.rstrip()
    else:
        out.insert(0, {"role": "system", "content": (default_system.rstrip() + "\n" + block).strip()})
    return out
