"""The web studio: ``GET /`` and ``/static/*``, plain files with no secrets and no model access.

They are open even when the server has an API key (the page asks for the key and sends it with its
API calls), like ``/health``.
"""
from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parent.parent / "static"

router = APIRouter()


@router.get("/", include_in_schema=False)
async def studio():
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


def mount(app: FastAPI) -> None:
    """Serve ``static/`` under ``/static``."""
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
