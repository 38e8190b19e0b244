"""``POST /v1/embeddings``: the unit-norm mean of a text model's final hidden states, per input."""
from __future__ import annotations

import asyncio
import base64

from fastapi import APIRouter

from ..schemas import APIError, EmbeddingRequest
from ..state import Server
from .completions import encode

router = APIRouter()
MAX_INPUTS = 64


@router.post("/v1/embeddings")
async def embeddings(req: EmbeddingRequest, state: Server):
    import torch

    m = state.get(req.model)
    texts = [req.input] if isinstance(req.input, str) else req.input
    if not texts or len(texts) > MAX_INPUTS:
        raise APIError(400, f"input must hold 1 to {MAX_INPUTS} strings", "input")
    rows = [encode(m, t, "input") for t in texts]
    for ids in rows:
        if len(ids) > m.context_length:
            raise APIError(400, f"an input has {len(ids)} tokens but the model's context is {m.context_length}; "
                           "shorten it", "input", "context_length_exceeded")

    def work():
        model = m.tm.model
        dev = next(model.parameters()).device
        with torch.inference_mode():
            vecs = [model.embed(torch.tensor([ids], device=dev))[0].float() for ids in rows]
            return [torch.nn.functional.normalize(v, dim=0).cpu() for v in vecs]

    data = []
    for i, v in enumerate(await asyncio.to_thread(work)):
        emb = base64.b64encode(v.numpy().astype("<f4").tobytes()).decode() if req.encoding_format == "base64" \
            else v.tolist()
        data.append({"object": "embedding", "index": i, "embedding": emb})
    total = sum(len(ids) for ids in rows)
    return {"object": "list", "data": data, "model": m.name, "usage": {"prompt_tokens": total, "total_tokens": total}}
