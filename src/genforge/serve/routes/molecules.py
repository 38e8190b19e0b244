"""Molecule models on the API: SMILES completions with their scores, and ``POST /v1/molecules/draw``.

A molecule model (``pipelines.molecule.MoleculeModel``: a token model over a SMILES codec) answers
``POST /v1/completions`` through the same batch engine as text models. The prompt is a SMILES fragment
(``""``: a molecule from scratch); each choice's ``text`` is what the model wrote after it, up to its
end-of-molecule token (never a newline), so ``echo: true`` gives the whole SMILES as OpenAI's
semantics say. genforge adds ``genforge_molecule`` to every choice (the whole SMILES, its validity and
QED, logP, SA, weight; streamed: on the choice's last chunk); OpenAI clients ignore the extra field.

``POST /v1/molecules/draw`` draws SMILES as SVG with RDKit (the studio's Molecules tab shows them). The
SVG is RDKit's own output for a molecule RDKit parsed from plain SMILES tokens: text that is not SMILES
syntax (spaces, CXSMILES labels, markup) is refused before RDKit sees it, so no request text reaches
the drawing.
"""
from __future__ import annotations

import asyncio
from collections import defaultdict

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ...errors import GenforgeError
from ..schemas import APIError
from ..state import Served, Server
from .completions import Completions

router = APIRouter()
MAX_DRAW = 64  # molecules one draw request may ask for
MAX_SMILES = 500  # characters of one SMILES to draw
SCORES = ("qed", "logp", "sa", "weight")


def molecule_prompt(m: Served, prompt: str) -> tuple[str, list[int]]:
    """The stripped fragment and its token ids (``<bos>`` first), or a 400 naming the bad character/token."""
    try:
        ids = m.tm.check_prompt(prompt)
    except GenforgeError as e:
        raise APIError(400, str(e), "prompt", "invalid_prompt") from None
    return prompt.strip(), ids


def default_max_tokens(m: Served, prompt_tokens: int = 1) -> int | None:
    """Tokens a molecule may take when the request does not say: the pipeline's default, within the room the
    context leaves after the prompt (None when it leaves none: the context check then says so)."""
    from ...pipelines.molecule import DEFAULT_MAX_TOKENS

    room = m.context_length - prompt_tokens
    return min(DEFAULT_MAX_TOKENS, room) if room >= 1 else None


def describe(smiles: list[str]) -> list[dict]:
    """Each SMILES with its validity and scores (None when the molecule is not valid)."""
    from ...chem import properties
    from ...data.molecules import quiet_rdkit

    quiet_rdkit()
    given = [s for s in smiles if s.strip()]  # RDKit reads "" as a molecule with no atoms: not one here
    found = dict(zip(given, properties(given))) if given else {}
    out = []
    for s in smiles:
        p = found.get(s)
        out.append({"smiles": s, "valid": p is not None,
                    **{k: (None if p is None else round(float(p[k]), 4)) for k in SCORES}})
    return out


class MoleculeCompletions(Completions):
    """Completions whose choices also carry ``genforge_molecule`` (the whole SMILES and its scores)."""

    def __init__(self, head: str, echo: str) -> None:
        self.head, self.echo = head, echo
        self.streamed: defaultdict[int, str] = defaultdict(str)

    def choice(self, index, text, logprobs, finish_reason):
        out = super().choice(index, text, logprobs, finish_reason)
        return {**out, "genforge_molecule": describe([self.head + text[len(self.echo):]])[0]}

    def delta(self, ev, logprobs):
        self.streamed[ev.index] += ev.text
        out = super().choice(ev.index, ev.text, logprobs, ev.finish_reason)
        if ev.finish_reason and ev.finish_reason != "error":
            out["genforge_molecule"] = describe([self.head + self.streamed[ev.index]])[0]
        return out


def molecule_settings(m: Served) -> dict:
    """What /v1/models tells about a molecule model beside the text fields."""
    return {"codec": "smiles", "vocab_size": m.tm.codec.vocab_size, "scores": list(SCORES),
            "defaults": {"n": 8, "max_tokens": default_max_tokens(m)}}


class DrawRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    smiles: str | list[str] = Field(description=f"one SMILES or a list of up to {MAX_DRAW}")
    width: int = Field(default=260, ge=80, le=1000, description="pixels")
    height: int = Field(default=200, ge=80, le=1000, description="pixels")

    @field_validator("width", "height", mode="before")
    @classmethod
    def _not_a_bool(cls, value):
        if isinstance(value, bool):
            raise ValueError("must be a number, not a boolean")
        return value


def _drawable(smiles: str) -> bool:
    """Plain SMILES tokens only (no spaces, CXSMILES extensions or other text) and not too long."""
    from ...codecs.smiles import tokenize

    if not smiles or len(smiles) > MAX_SMILES:
        return False
    try:
        tokenize(smiles)
    except GenforgeError:
        return False
    return True


def _draw(smiles: list[str], size: tuple[int, int]) -> list[dict]:
    from ...pipelines.molecule import molecule_svg

    info = describe([s if _drawable(s) else "" for s in smiles])
    out = []
    for i, (s, d) in enumerate(zip(smiles, info)):
        svg = molecule_svg(s, size) if d["valid"] else None
        out.append({"index": i, **d, "smiles": s, "valid": svg is not None, "svg": svg})
    return out


@router.post("/v1/molecules/draw")
async def draw(req: DrawRequest, state: Server):
    smiles = [req.smiles] if isinstance(req.smiles, str) else req.smiles
    if not 1 <= len(smiles) <= MAX_DRAW:
        raise APIError(400, f"smiles holds {len(smiles)} molecules: give 1 to {MAX_DRAW}", "smiles", "invalid_value")
    state.admit()
    try:
        data = await asyncio.to_thread(_draw, smiles, (req.width, req.height))
    finally:
        state.inflight -= 1
    return {"object": "list", "data": data}
