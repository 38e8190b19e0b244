"""Small RDKit helpers shared by the molecule metrics, the RL rewards and the generation CLI.

- QED: Bickerton et al. 2012, "Quantifying the chemical beauty of drugs" (RDKit ``QED.qed``).
- logP: Wildman & Crippen 1999 atom contributions (RDKit ``Crippen.MolLogP``).
- SA score: Ertl & Schuffenhauer 2009, "Estimation of synthetic accessibility score of drug-like molecules",
  the implementation in RDKit's Contrib folder (``SA_Score/sascorer.py``), as MOSES uses it.
- ECFP4: Rogers & Hahn 2010, Morgan fingerprints of radius 2, folded to ``n_bits``.
- MOSES's filters (Polykovskiy et al. 2020, ``mol_passes_filters``), Bemis-Murcko scaffolds (Bemis & Murcko
  1996) and BRICS fragments (Degen et al. 2008), as the MOSES metrics compute them.

RDKit is imported when a function is first called, so importing this module is cheap.
"""
from __future__ import annotations

import csv
import importlib.util
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import DataError

if TYPE_CHECKING:
    from rdkit.Chem import Mol

MOSES_ATOMS = frozenset({"C", "N", "S", "O", "F", "Cl", "Br", "H"})  # the elements MOSES's filters allow


@lru_cache(maxsize=1)
def _quiet() -> None:
    from .data.molecules import quiet_rdkit

    quiet_rdkit()


def mol(smiles: str) -> Mol | None:
    """The RDKit molecule of a SMILES, or None when RDKit cannot parse it or it has no atoms (no log spam)."""
    from rdkit import Chem

    _quiet()
    m = Chem.MolFromSmiles(smiles) if smiles else None
    return m if m is not None and m.GetNumAtoms() else None


def qed(m: Mol) -> float:
    """Quantitative estimate of drug-likeness in [0, 1] (Bickerton et al. 2012)."""
    from rdkit.Chem import QED

    return float(QED.qed(m))


def logp(m: Mol) -> float:
    """Crippen's octanol-water partition coefficient (Wildman & Crippen 1999)."""
    from rdkit.Chem import Crippen

    return float(Crippen.MolLogP(m))


@lru_cache(maxsize=1)
def _sascorer() -> Any:
    from rdkit import RDConfig

    path = Path(RDConfig.RDContribDir) / "SA_Score" / "sascorer.py"
    if not path.is_file():
        raise DataError(f"RDKit's SA_Score contribution is missing ({path}): reinstall rdkit from PyPI")
    spec = importlib.util.spec_from_file_location("genforge_sascorer", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def sa_score(m: Mol) -> float:
    """Synthetic accessibility from 1 (easy) to 10 (hard) (Ertl & Schuffenhauer 2009)."""
    return float(_sascorer().calculateScore(m))


def weight(m: Mol) -> float:
    """Average molecular weight in daltons (RDKit ``Descriptors.MolWt``, as MOSES uses)."""
    from rdkit.Chem import Descriptors

    return float(Descriptors.MolWt(m))


@lru_cache(maxsize=4)
def _morgan(n_bits: int) -> Any:
    from rdkit.Chem import rdFingerprintGenerator

    return rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=n_bits)


def ecfp4(m: Mol, n_bits: int = 2048) -> Any:
    """The ECFP4 bit vector (Morgan, radius 2, ``n_bits`` bits) of a molecule, an RDKit ExplicitBitVect."""
    return _morgan(n_bits).GetFingerprint(m)


def ecfp4_numpy(m: Mol, n_bits: int = 2048) -> np.ndarray:
    """The ECFP4 bits as a uint8 array (n_bits,); the same bits as ``ecfp4``."""
    return _morgan(n_bits).GetFingerprintAsNumPy(m).astype(np.uint8, copy=False)


def tanimoto(fp: Any, fps: Sequence[Any] | Iterable[Any]) -> np.ndarray:
    """Tanimoto similarity of one bit vector to each of ``fps`` (RDKit ``BulkTanimotoSimilarity``)."""
    from rdkit import DataStructs

    return np.asarray(DataStructs.BulkTanimotoSimilarity(fp, list(fps)), dtype=np.float64)


def properties(smiles_list: Iterable[str]) -> list[dict[str, float] | None]:
    """QED, logP, SA score and weight of each SMILES: ``{"qed", "logp", "sa", "weight"}``, None if invalid."""
    out: list[dict[str, float] | None] = []
    for s in smiles_list:
        m = mol(s)
        out.append(None if m is None else {"qed": qed(m), "logp": logp(m), "sa": sa_score(m), "weight": weight(m)})
    return out


@lru_cache(maxsize=1)
def _filters() -> tuple[list[Any], np.ndarray]:
    """MOSES's MCF and PAINS SMARTS, and each one's RDKit pattern fingerprint (packed) as a screen: a molecule
    whose pattern fingerprint lacks a bit of a query's cannot match that query, so it is not tried."""
    from rdkit import Chem

    from .data.molecules import MOSES_INSTALL, moses_file

    with open(moses_file("mcf.csv"), newline="") as f:
        smarts = [row["smarts"].strip() for row in csv.DictReader(f)]
    with open(moses_file("wehi_pains.csv"), newline="") as f:
        smarts += [row[0].strip() for row in csv.reader(f) if row and row[0].strip()]
    queries = [Chem.MolFromSmarts(s) for s in smarts]
    if len(queries) < 400 or any(q is None for q in queries):
        raise DataError(f"the MOSES filter files mcf.csv and wehi_pains.csv are damaged: reinstall with "
                        f"`{MOSES_INSTALL}`")
    return queries, np.stack([_pattern_bits(q) for q in queries])


def _pattern_bits(m: Mol) -> np.ndarray:
    from rdkit import Chem, DataStructs

    bits = np.zeros(2048, dtype=np.uint8)
    DataStructs.ConvertToNumpyArray(Chem.PatternFingerprint(m, 2048), bits)
    return np.packbits(bits).view(np.uint64)


def passes_filters(m: Mol) -> bool:
    """MOSES's ``mol_passes_filters``: no ring of 8+ atoms, no charged atom, only C N S O F Cl Br H, no MCF or
    PAINS match on the molecule with explicit hydrogens, and its SMILES parses again."""
    from rdkit import Chem

    rings = m.GetRingInfo()
    if rings.NumRings() and any(len(r) >= 8 for r in rings.AtomRings()):
        return False
    if any(a.GetFormalCharge() != 0 or a.GetSymbol() not in MOSES_ATOMS for a in m.GetAtoms()):
        return False
    h = Chem.AddHs(m)
    queries, query_bits = _filters()
    maybe = np.flatnonzero(~(query_bits & ~_pattern_bits(h)).any(axis=1))
    if any(h.HasSubstructMatch(queries[i]) for i in maybe):
        return False
    smiles = Chem.MolToSmiles(m, isomericSmiles=False)
    return bool(smiles) and Chem.MolFromSmiles(smiles) is not None


def scaffold(m: Mol, min_rings: int = 2) -> str | None:
    """The Bemis-Murcko scaffold SMILES of a molecule; None without one of ``min_rings`` rings (as MOSES)."""
    from rdkit import Chem
    from rdkit.Chem.Scaffolds import MurckoScaffold

    try:
        scaf = MurckoScaffold.GetScaffoldForMol(m)
        smiles = Chem.MolToSmiles(scaf)
        rings = scaf.GetRingInfo().NumRings() if smiles else 0
    except (RuntimeError, ValueError):
        return None
    return smiles if smiles and rings >= min_rings else None


def fragments(m: Mol) -> list[str]:
    """The BRICS fragments of a molecule as SMILES, attachment points included (as MOSES)."""
    from rdkit import Chem

    return Chem.MolToSmiles(Chem.FragmentOnBRICSBonds(m)).split(".")
