"""Molecule data: the MOSES splits, the user's SMILES files, RDKit canonicalization and SMILES augmentation.

MOSES (Polykovskiy et al. 2020, "Molecular Sets (MOSES): a benchmarking platform for molecular generation
models", Front. Pharmacol. 11:565644) ships in the PyPI package ``molsets``: 1,584,663 training, 176,074
test and 176,226 scaffold-test SMILES plus the reference statistics of its metrics. ``import moses`` no
longer works with current RDKit and pandas, so the files are read by path and the package is never
imported (``pip install --no-deps molsets==0.3.1``).

A training corpus of molecules is written once as a cached ``.smi`` file (canonical SMILES, one per line,
invalid ones counted and skipped, optional randomized copies) that the token pipeline then reads like
any text corpus; the cache key covers the sources (path, size, modification time) and the options.
"""
from __future__ import annotations

import csv
import gzip
import hashlib
import importlib.util
import io
import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from ..atomic import atomic_write_text
from ..errors import DataError

MOSES_SPLITS = {"train": "train.csv.gz", "test": "test.csv.gz", "test_scaffolds": "test_scaffolds.csv.gz"}
MOSES_INSTALL = "pip install --no-deps molsets==0.3.1"
BUILTIN = {"moses": "train", "moses-test": "test", "moses-test-scaffolds": "test_scaffolds"}
SMILES_SUFFIXES = (".smi", ".smiles", ".csv", ".csv.gz", ".smi.gz", ".txt")
DEFAULT_COLUMN = "smiles"  # .csv files: the column read (case-insensitive) unless told otherwise


def quiet_rdkit() -> None:
    """RDKit prints a parse error per invalid SMILES to stderr; we count and report them instead. Without
    RDKit: a one-line error that says how to install it."""
    try:
        from rdkit import RDLogger
    except ImportError:
        raise DataError("molecules need RDKit: pip install 'genforge[molecules]' (or pip install rdkit)") from None

    RDLogger.DisableLog("rdApp.*")


def moses_dir() -> Path:
    """The folder of the MOSES data files inside the installed ``molsets`` package."""
    spec = importlib.util.find_spec("moses")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"the MOSES data is not installed: run `{MOSES_INSTALL}` (it only ships data files here)")
    folder = Path(list(spec.submodule_search_locations)[0]) / "dataset" / "data"
    if not (folder / "train.csv.gz").is_file():
        raise DataError(f"{folder} has no MOSES train.csv.gz: reinstall with `{MOSES_INSTALL}`")
    return folder


def moses_file(name: str) -> Path:
    """A file of the ``molsets`` package by name: ``test_stats.npz``, or a metric file under ``metrics/``."""
    folder = moses_dir()
    for path in (folder / name, folder.parent.parent / "metrics" / name):
        if path.is_file():
            return path
    raise DataError(f"the MOSES file {name!r} is missing from {folder.parent.parent}: reinstall with `{MOSES_INSTALL}`")


@lru_cache(maxsize=4)
def _moses_split(split: str) -> tuple[str, ...]:
    with gzip.open(moses_dir() / MOSES_SPLITS[split], "rt") as f:
        rows = f.read().splitlines()
    if not rows or rows[0].strip().upper() != "SMILES":
        raise DataError(f"MOSES {split} split has an unexpected header {rows[:1]}: reinstall with `{MOSES_INSTALL}`")
    return tuple(r.strip() for r in rows[1:] if r.strip())


def moses_smiles(split: str = "train") -> list[str]:
    """The SMILES of one MOSES split: ``train``, ``test`` or ``test_scaffolds``."""
    if split not in MOSES_SPLITS:
        raise DataError(f"MOSES split {split!r} is unknown: allowed {', '.join(MOSES_SPLITS)}")
    return list(_moses_split(split))


def _open_text(path: Path) -> io.TextIOBase:
    try:
        if path.name.endswith(".gz"):
            return gzip.open(path, "rt", encoding="utf-8")  # type: ignore[return-value]  # noqa: SIM115
        return open(path, encoding="utf-8", newline="")  # noqa: SIM115 (the caller's with-block closes it)
    except OSError as err:
        raise DataError(f"cannot read SMILES file {str(path)!r}: {err.strerror or err}") from err


def read_smiles_file(path: str | Path, column: str = DEFAULT_COLUMN) -> list[str]:
    """The SMILES in a file: ``.smi`` (first field of each line; a ``smiles`` header line is skipped) or
    ``.csv`` (the named column, matched case-insensitively). Raises a one-line DataError if unreadable,
    empty or missing the column."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"SMILES file {str(path)!r} does not exist")
    try:
        with _open_text(path) as f:
            if ".csv" in path.suffixes:
                reader = csv.reader(f)
                header = next(reader, None)
                if not header:
                    raise DataError(f"SMILES file {str(path)!r} is empty: it needs a header row and one row per "
                                    "molecule")
                names = [h.strip().lower() for h in header]
                if column.lower() not in names:
                    raise DataError(f"{str(path)!r} has no column {column!r} (its columns: {', '.join(header)}); "
                                    "name the SMILES column with data.column")
                k = names.index(column.lower())
                out = [row[k].strip() for row in reader if len(row) > k and row[k].strip()]
            else:
                out = [line.split()[0] for line in f if line.strip()]
                if out and out[0].lower() in ("smiles", "smi"):
                    out = out[1:]
    except UnicodeDecodeError:
        raise DataError(f"SMILES file {str(path)!r} is not UTF-8 text; save it as UTF-8") from None
    if not out:
        raise DataError(f"SMILES file {str(path)!r} has no SMILES: put one per line (or a {column!r} column in a .csv)")
    return out


def canonical(smiles: str) -> str | None:
    """RDKit's canonical SMILES, or None when RDKit cannot parse it (or it is empty)."""
    from rdkit import Chem

    mol = Chem.MolFromSmiles(smiles) if smiles else None
    return Chem.MolToSmiles(mol) if mol is not None and mol.GetNumAtoms() else None


def _canonical_chunk(chunk: list[str]) -> list[str | None]:
    quiet_rdkit()
    return [canonical(s) for s in chunk]


def _canonical_all(smiles: list[str], chunk: int = 20000) -> list[str | None]:
    """``canonical`` of each, over the machine's cores when there are many (1.58M MOSES SMILES: ~5 min on one)."""
    import os

    workers = min(os.cpu_count() or 1, 8)
    if len(smiles) <= chunk or workers == 1:
        return _canonical_chunk(smiles)
    from concurrent.futures import ProcessPoolExecutor

    parts = [smiles[i:i + chunk] for i in range(0, len(smiles), chunk)]
    with ProcessPoolExecutor(workers) as pool:
        return [c for part in pool.map(_canonical_chunk, parts) for c in part]


def randomized(smiles: str, n: int, rng: random.Random) -> list[str]:
    """``n`` random (non-canonical) SMILES of the same molecule: a different atom order each (Bjerrum 2017,
    "SMILES enumeration as data augmentation"; Arus-Pous et al. 2019 on randomized SMILES)."""
    if n <= 0:
        return []
    from rdkit import Chem

    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        return []
    out = []
    for _ in range(n):
        order = list(range(mol.GetNumAtoms()))
        rng.shuffle(order)
        out.append(Chem.MolToSmiles(Chem.RenumberAtoms(mol, order), canonical=False))
    return out


@dataclass
class MoleculeSet:
    """Canonical SMILES read from some sources, with what was skipped and why."""

    smiles: list[str] = field(default_factory=list)
    read: int = 0  # SMILES read from the sources
    invalid: list[str] = field(default_factory=list)  # ones RDKit could not parse (kept for the report)

    def report(self) -> str:
        shown = ", ".join(repr(s[:40]) for s in self.invalid[:3])
        bad = f"; {len(self.invalid):,} invalid skipped (e.g. {shown})" if self.invalid else ""
        return f"{len(self.smiles):,} molecules from {self.read:,} SMILES{bad}"


def resolve_sources(spec: str | Sequence[str]) -> list[str]:
    """A spec (``moses``, a SMILES file, a list of them) as a list of built-in names and file paths."""
    if isinstance(spec, (list, tuple)):
        return [s for item in spec for s in resolve_sources(item)]
    text = str(spec)
    if text in BUILTIN:
        return [text]
    path = Path(text).expanduser()
    if path.is_file():
        return [str(path)]
    raise DataError(f"molecule corpus {text!r} is neither a file nor a built-in set: give a .smi or .csv file, "
                    f"or one of {', '.join(BUILTIN)}")


def read_molecules(spec: str | Sequence[str], column: str = DEFAULT_COLUMN, canonicalize: bool = True) -> MoleculeSet:
    """All SMILES of the sources, canonicalized by RDKit; invalid ones counted and skipped."""
    quiet_rdkit()
    out = MoleculeSet()
    for src in resolve_sources(spec):
        raw = moses_smiles(BUILTIN[src]) if src in BUILTIN else read_smiles_file(src, column)
        out.read += len(raw)
        for s, c in zip(raw, _canonical_all(raw)):
            if c is None:
                out.invalid.append(s)
            else:
                out.smiles.append(c if canonicalize else s)
    if not out.smiles:
        raise DataError(f"no valid SMILES in {spec!r} ({out.read:,} read, all invalid): check the file's column "
                        "and format")
    return out


def _cache_key(sources: Iterable[str], column: str, canonicalize: bool, augment: int, seed: int) -> str:
    parts = []
    for src in sources:
        if src in BUILTIN:
            parts.append([src, str(moses_dir() / MOSES_SPLITS[BUILTIN[src]])])
        else:
            st = Path(src).stat()
            parts.append([str(Path(src).resolve()), st.st_size, st.st_mtime_ns])
    blob = json.dumps([parts, column, canonicalize, augment, seed, 1], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def prepare_smiles_corpus(spec: str | Sequence[str], cache_root: Path, column: str = DEFAULT_COLUMN,
                          canonicalize: bool = True, augment: int = 0, seed: int = 0) -> tuple[Path, str]:
    """Write (once) the training text of a molecule corpus: one SMILES per line, canonical unless told
    otherwise, each molecule followed by ``augment`` randomized SMILES of it. Returns the cached file and
    a one-line report (molecules kept, invalid skipped)."""
    sources = resolve_sources(spec)
    key = _cache_key(sources, column, canonicalize, augment, seed)
    path, info = cache_root / f"{key}.smi", cache_root / f"{key}.json"
    if path.is_file() and info.is_file():
        return path, json.loads(info.read_text())["report"]
    mols = read_molecules(sources, column, canonicalize)
    rng = random.Random(seed)
    lines = []
    for s in mols.smiles:
        lines.append(s)
        if augment:
            lines.extend(randomized(s, augment, rng))
    cache_root.mkdir(parents=True, exist_ok=True)
    report = mols.report() + (f"; {augment} randomized SMILES added per molecule" if augment else "")
    atomic_write_text(path, "\n".join(lines) + "\n")
    atomic_write_text(info, json.dumps({"report": report, "molecules": len(mols.smiles)}))
    return path, report


def prepare_recipe_corpus(cfg) -> tuple[Path, None, str]:
    """What the ``lm`` task trains on for a SMILES recipe: the cached canonical SMILES file of ``data.corpus``
    (the recipe's validation share applies) and a report (``registry.CORPORA``)."""
    from ..paths import data_home

    path, report = prepare_smiles_corpus(cfg.data.corpus, data_home() / "molecules", cfg.data.column,
                                         augment=cfg.data.augment, seed=cfg.train.seed)
    return path, None, report
