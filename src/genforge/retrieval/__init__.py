"""RETRIEVE: documents -> chunks -> embeddings -> a persistent index; context building and grounding.

The public names load on first use (``from genforge.retrieval import open_index``), so importing
the package stays cheap: faiss, BeautifulSoup and the embedding model load only when needed.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "Passage": "index", "IndexInfo": "index", "RetrievalIndex": "index", "open_index": "index",
    "list_indexes": "index", "remove_index": "index", "add_documents": "build", "AddReport": "build",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
