"""The molecule pipeline: (fragment) SMILES -> tokens -> sample many -> SMILES, scored and written as files.

A molecule model is a token model over a SMILES codec (``codecs.smiles``), trained by the ``lm`` task on
one molecule per line. Generation starts at ``<bos>`` (from scratch) or after a fragment prompt and ends
at ``<eos>``; the same token loop serves text, molecules and RL rollouts.
"""
from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import GenforgeError
from .text import TextModel

MAX_N = 100_000  # molecules one call may ask for
DEFAULT_MAX_TOKENS = 120  # tokens per molecule at most (MOSES molecules have <= 57 characters)
OUTPUT_SUFFIXES = (".smi", ".csv", ".sdf")


class MoleculeModel(TextModel):
    """A loaded SMILES model: ``sample`` molecules, ``score`` them, ``save`` them as .smi/.csv/.sdf/.png."""

    modality = "molecule"

    def check_prompt(self, prompt: str) -> list[int]:
        """The token ids of a fragment prompt (``""`` = from scratch); a prompt the codec cannot read is a
        one-line error naming the bad part."""
        if "\n" in prompt or "\r" in prompt:
            raise GenforgeError("a molecule prompt is one SMILES fragment on one line")
        return self.codec.encode(prompt.strip())

    def sample(self, n: int, prompt: str = "", temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
               seed: int | None = None, max_tokens: int | None = None, batch_size: int = 256,
               callback: Callable[[int, int], None] | None = None, watermark: Any = None) -> list[str]:
        """``n`` SMILES strings, each the prompt followed by what the model wrote up to ``<eos>``; invalid
        ones are kept (validity is a property of the model, measured by ``genforge eval``). ``watermark``:
        a ``sampling.watermark.WatermarkSettings`` to mark every token with (``genforge detect`` finds it)."""
        from ..sampling.tokens import sample_sequences

        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_N:
            raise GenforgeError(f"n={n!r} is invalid: allowed an integer from 1 to {MAX_N:,}")
        ids = self.check_prompt(prompt)
        room = self.context_length - len(ids)
        if room < 1:
            raise GenforgeError(f"the prompt has {len(ids)} tokens and fills the model's {self.context_length}-token "
                                "context: give a shorter fragment")
        params = self.params(temperature=temperature, top_k=top_k, top_p=top_p, seed=seed,
                             max_tokens=min(room, max_tokens or DEFAULT_MAX_TOKENS), watermark=watermark)
        seqs = sample_sequences(self.model, ids, n, params, self.codec.eos_id, batch_size=batch_size,
                                callback=callback)
        head = prompt.strip()
        return [head + self.codec.decode(s).rstrip("\n") for s in seqs]

    @staticmethod
    def check_output(out: str | Path, grid: str | Path | None = None) -> str:
        """The output file's suffix, if genforge can write it (before any sampling is spent)."""
        suffix = Path(out).suffix.lower()
        if suffix not in OUTPUT_SUFFIXES:
            raise GenforgeError(f"--out {str(out)!r}: allowed suffixes are {', '.join(OUTPUT_SUFFIXES)}")
        if grid is not None and Path(grid).suffix.lower() != ".png":
            raise GenforgeError(f"--grid {str(grid)!r} must be a .png file")
        return suffix

    def save(self, smiles: Sequence[str], out: str | Path, grid: str | Path | None = None,
             settings: dict[str, Any] | None = None) -> list[Path]:
        """Write ``smiles`` to ``out`` by its suffix: ``.smi`` (all, one per line), ``.csv`` (with validity,
        QED, logP, SA and weight) or ``.sdf`` (valid ones, 2D coordinates, scores as fields); ``grid``: a PNG
        of the first valid molecules drawn with their scores. Files appear whole or not at all."""
        from ..atomic import atomic_write_bytes, atomic_write_text

        out = Path(out)
        suffix = self.check_output(out, grid)
        props = _properties(smiles)
        written = []
        if suffix == ".smi":
            written.append(atomic_write_text(out, "".join(s + "\n" for s in smiles)))
        elif suffix == ".csv":
            written.append(atomic_write_text(out, _csv(smiles, props)))
        else:
            written.append(atomic_write_text(out, _sdf(smiles, props, settings or {})))
        if grid is not None:
            written.append(atomic_write_bytes(grid, grid_png(smiles, props)))
        return written


def _properties(smiles: Sequence[str]) -> list[dict[str, float] | None]:
    from ..chem import properties

    return properties(list(smiles))


def _csv(smiles: Sequence[str], props: Sequence[dict[str, float] | None]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["smiles", "valid", "qed", "logp", "sa", "weight"])
    for s, p in zip(smiles, props):
        w.writerow([s, int(p is not None)] + ([f"{p[k]:.4f}" for k in ("qed", "logp", "sa", "weight")]
                                              if p else ["", "", "", ""]))
    return buf.getvalue()


def _sdf(smiles: Sequence[str], props: Sequence[dict[str, float] | None], settings: dict[str, Any]) -> str:
    from rdkit import Chem
    from rdkit.Chem import AllChem

    buf = io.StringIO()
    writer = Chem.SDWriter(buf)
    for i, (s, p) in enumerate(zip(smiles, props)):
        m = Chem.MolFromSmiles(s) if p else None
        if m is None:
            continue
        AllChem.Compute2DCoords(m)
        m.SetProp("_Name", f"genforge-{i}")
        m.SetProp("SMILES", s)
        for k, v in p.items():
            m.SetProp(k, f"{v:.4f}")
        for k, v in settings.items():
            m.SetProp(f"genforge_{k}", str(v))
        writer.write(m)
    writer.close()
    return buf.getvalue()


def grid_png(smiles: Sequence[str], props: Sequence[dict[str, float] | None] | None = None, n: int = 24,
             per_row: int = 6) -> bytes:
    """A PNG grid of the first ``n`` valid molecules, each captioned with its QED, logP and SA."""
    from rdkit import Chem
    from rdkit.Chem import Draw

    props = props if props is not None else _properties(smiles)
    mols, legends = [], []
    for s, p in zip(smiles, props):
        if p is not None and len(mols) < n:
            mols.append(Chem.MolFromSmiles(s))
            legends.append(f"QED {p['qed']:.2f}  logP {p['logp']:.1f}  SA {p['sa']:.1f}")
    if not mols:
        raise GenforgeError("none of the molecules is valid: there is nothing to draw")
    img = Draw.MolsToGridImage(mols, molsPerRow=min(per_row, len(mols)), subImgSize=(250, 220), legends=legends,
                               returnPNG=False)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def molecule_svg(smiles: str, size: tuple[int, int] = (260, 200)) -> str | None:
    """One molecule drawn as SVG text (the studio shows these), or None when it is not valid."""
    from rdkit import Chem
    from rdkit.Chem.Draw import rdMolDraw2D

    m = Chem.MolFromSmiles(smiles) if smiles else None
    if m is None:
        return None
    d = rdMolDraw2D.MolDraw2DSVG(*size)
    d.DrawMolecule(m)
    d.FinishDrawing()
    return d.GetDrawingText()
