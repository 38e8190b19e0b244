"""``GET /v1/indexes``: the retrieval indexes a request can name in ``genforge_retrieve`` (the studio's
"Sources" menu), and which one the server uses by default (``--retrieve``)."""
from __future__ import annotations

import asyncio

from fastapi import APIRouter

from ..state import Server

router = APIRouter()


def _rows() -> list[dict]:
    from ...retrieval.index import list_indexes

    out = []
    for info in list_indexes():
        row = info.to_dict() if hasattr(info, "to_dict") else dict(vars(info))
        out.append({k: v for k, v in row.items() if k != "path"})  # no server paths in answers
    return out


@router.get("/v1/indexes")
async def indexes(state: Server):
    return {"object": "list", "data": await asyncio.to_thread(_rows), "default": state.settings.retrieve}
