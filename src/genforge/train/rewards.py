"""Rewards for RL fine-tuning (``[task] kind = "rl"``): plain functions ``list[str] -> list[float]`` in [0, 1].

A recipe names one as ``reward = "package.module:function"`` or ``reward = "path/to/file.py:function"``
(``load_reward``); with ``reward_args`` the named object is a factory called with those keyword
arguments (``reward = "genforge.train.rewards:similarity"``, ``reward_args = {target = "CCO"}``).
Rewards compose in Python (``weighted_product``, ``weighted_mean``) or in a recipe (``combine``).

Built in, for molecules (RDKit through ``genforge.chem``; an invalid SMILES scores 0 in each, though the RL task only
ever passes valid ones): ``qed`` (Bickerton et al. 2012), ``logp_window(lo, hi)`` (Crippen logP),
``sa`` (Ertl & Schuffenhauer 2009 synthetic accessibility, 1 .. 10 mapped to 1 .. 0),
``similarity(target)`` (ECFP4 Tanimoto; Rogers & Hahn 2010), ``substructure(required, forbidden)``
(SMARTS), and the two benchmark objectives ``celecoxib_similarity`` (Olivecrona et al. 2017, "Molecular
de-novo design through deep reinforcement learning") and ``qed_logp``.

``score_items`` calls a reward and checks what it returns: a reward that raises, or returns NaN or a
value outside [0, 1], is reported in one line naming the function and the molecule (the task then
stops or skips the molecule, per ``task.reward_errors``). ``MoleculeDomain`` is the SMILES plug-in of
the RL task: validity, canonical keys, Murcko scaffolds for the diversity filter, internal diversity.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError, GenforgeError

Reward = Callable[[list[str]], list[float]]
CELECOXIB = "Cc1ccc(-c2cc(C(F)(F)F)nn2-c2ccc(S(N)(=O)=O)cc2)cc1"
FP_BITS = 2048  # ECFP4: Morgan fingerprint of radius 2, folded to 2048 bits


# --- RDKit helpers (genforge.chem, shared with the molecule metrics) -------------------------
def _mol(smiles: str):
    from ..chem import mol

    return mol(smiles)


def ecfp4(m):
    from ..chem import ecfp4 as fp

    return fp(m, FP_BITS)


def _per_molecule(fn: Callable[[Any], float]) -> Reward:
    """Lift ``fn(mol) -> float`` to a reward over SMILES, 0 for an invalid one."""
    def reward(smiles: list[str]) -> list[float]:
        return [fn(m) if (m := _mol(s)) is not None else 0.0 for s in smiles]
    return reward


# --- built-in rewards ------------------------------------------------------------------------------
def qed(smiles: list[str]) -> list[float]:
    """Quantitative estimate of drug-likeness (Bickerton et al. 2012), already in [0, 1]."""
    from ..chem import qed as q

    return _per_molecule(q)(smiles)


def sa(smiles: list[str]) -> list[float]:
    """Synthetic accessibility (Ertl & Schuffenhauer 2009; 1 = easy .. 10 = hard) mapped to (10 - SA) / 9."""
    from ..chem import sa_score

    return _per_molecule(lambda m: min(1.0, max(0.0, (10.0 - sa_score(m)) / 9.0)))(smiles)


def logp_window(lo: float, hi: float, width: float = 1.0) -> Reward:
    """1 when Crippen logP lies in [lo, hi], decaying as exp(-d^2 / (2 width^2)) at distance d outside."""
    if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi and width > 0):
        raise ConfigError(f"logp_window(lo={lo}, hi={hi}, width={width}): need lo <= hi and width > 0")
    from ..chem import logp

    def score(m) -> float:
        v = logp(m)
        d = lo - v if v < lo else v - hi if v > hi else 0.0
        return math.exp(-d * d / (2 * width * width))
    return _named(_per_molecule(score), f"logp_window({lo}, {hi})")


def similarity(target: str) -> Reward:
    """ECFP4 Tanimoto similarity to ``target`` (a SMILES)."""
    from ..chem import tanimoto

    t = _mol(target)
    if t is None:
        raise ConfigError(f"similarity target {target!r} is not a valid SMILES")
    fp = ecfp4(t)
    return _named(_per_molecule(lambda m: float(tanimoto(fp, [ecfp4(m)])[0])),
                  f"similarity({target!r})")


def substructure(required: Sequence[str] = (), forbidden: Sequence[str] = ()) -> Reward:
    """1 when the molecule has every ``required`` SMARTS pattern and none of the ``forbidden`` ones, else 0."""
    from rdkit import Chem

    def compile_all(patterns: Sequence[str], what: str) -> list:
        if isinstance(patterns, str):
            patterns = [patterns]
        out = []
        for p in patterns:
            q = Chem.MolFromSmarts(p) if isinstance(p, str) and p else None
            if q is None:
                raise ConfigError(f"substructure({what}=...): {p!r} is not a valid SMARTS pattern")
            out.append(q)
        return out

    req, forb = compile_all(required, "required"), compile_all(forbidden, "forbidden")
    if not req and not forb:
        raise ConfigError("substructure() needs at least one required or forbidden SMARTS pattern")
    return _named(_per_molecule(lambda m: float(all(m.HasSubstructMatch(q) for q in req)
                                                and not any(m.HasSubstructMatch(q) for q in forb))),
                  f"substructure({list(required)}, {list(forbidden)})")


def _parts(parts: Sequence[tuple[Reward, float]]) -> tuple[list[Reward], list[float]]:
    fns, ws = [p[0] for p in parts], [float(p[1]) for p in parts]
    if not fns or any(not callable(f) for f in fns) or any(not (w >= 0 and math.isfinite(w)) for w in ws) \
            or sum(ws) <= 0:
        raise ConfigError("a composite reward needs (reward, weight) pairs with weights >= 0 and a positive sum")
    return fns, ws


def weighted_product(parts: Sequence[tuple[Reward, float]]) -> Reward:
    """Weighted geometric mean prod s_i^(w_i / sum w): 0 when any component with weight > 0 is 0 (all
    goals must hold), as REINVENT's custom product."""
    fns, ws = _parts(parts)
    total = sum(ws)

    def reward(items: list[str]) -> list[float]:
        cols = [fn(items) for fn in fns]
        return [math.prod(max(float(c[i]), 0.0) ** (w / total) for c, w in zip(cols, ws)) for i in range(len(items))]
    return reward


def weighted_mean(parts: Sequence[tuple[Reward, float]]) -> Reward:
    """Weighted arithmetic mean sum w_i s_i / sum w (goals trade off against each other)."""
    fns, ws = _parts(parts)
    total = sum(ws)

    def reward(items: list[str]) -> list[float]:
        cols = [fn(items) for fn in fns]
        return [sum(float(c[i]) * w for c, w in zip(cols, ws)) / total for i in range(len(items))]
    return reward


def combine(parts: Sequence[dict[str, Any]], mode: str = "product") -> Reward:
    """A composite from a recipe: ``reward_args = {mode = "product", parts = [{reward = "m:f", weight = 1,
    args = {...}}, ...]}``; each part is loaded like ``task.reward`` (``args`` for a factory)."""
    if mode not in ("product", "mean"):
        raise ConfigError(f"combine(mode={mode!r}): allowed 'product' or 'mean'")
    if not isinstance(parts, (list, tuple)) or not parts or not all(isinstance(p, dict) and "reward" in p
                                                                    for p in parts):
        raise ConfigError("combine(parts=...) needs a list of tables, each with a 'reward' key")
    loaded = [(load_reward(p["reward"], p.get("args"), f"combine part {i}")[0], p.get("weight", 1.0))
              for i, p in enumerate(parts)]
    return (weighted_product if mode == "product" else weighted_mean)(loaded)


def _named(fn: Reward, name: str) -> Reward:
    fn.__qualname__ = name  # what error messages show
    return fn


celecoxib_similarity = _named(similarity(CELECOXIB), "celecoxib_similarity")
celecoxib_similarity.__doc__ = "ECFP4 Tanimoto similarity to celecoxib (Olivecrona et al. 2017's rediscovery task)."
qed_logp = _named(weighted_product([(qed, 1.0), (logp_window(2.0, 3.0), 1.0)]), "qed_logp")
qed_logp.__doc__ = "sqrt(QED x logp_window(2, 3)): drug-like molecules with logP between 2 and 3."


# --- loading and checking --------------------------------------------------------------------------
def load_reward(spec: Any, args: dict[str, Any] | None = None, where: str = "task.reward") -> tuple[Reward, str]:
    """The reward ``spec`` names, ``"module:function"`` or ``"path/file.py:function"`` (with ``args``, the
    named factory's result); any failure is a one-line ConfigError naming the spec."""
    if not isinstance(spec, str) or ":" not in spec.strip(":"):
        raise ConfigError(f"{where}={spec!r} must look like 'package.module:function' or 'path/to/file.py:function'")
    target, _, attr = spec.rpartition(":")
    is_file = target.endswith(".py") or "/" in target or "\\" in target
    try:
        if is_file:
            path = Path(target).expanduser().resolve()
            if not path.is_file():
                raise ConfigError(f"{where}={spec!r}: the file {target} does not exist")
            name = "genforge_reward_" + hashlib.sha1(str(path).encode()).hexdigest()[:12]
            mspec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(mspec)
            sys.modules[name] = module
            mspec.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
    except ConfigError:
        raise
    except Exception as e:  # the user's module: anything can go wrong importing it
        raise ConfigError(f"{where}={spec!r}: cannot import {target!r} ({type(e).__name__}: {_line(e)})") from None
    obj = getattr(module, attr, None)
    if obj is None:
        raise ConfigError(f"{where}={spec!r}: {target!r} has no attribute {attr!r}")
    if args:
        if not isinstance(args, dict):
            raise ConfigError(f"{where} args must be a table of keyword arguments, got {type(args).__name__}")
        try:
            obj = obj(**args)
        except ConfigError:
            raise
        except Exception as e:
            raise ConfigError(f"{where}={spec!r} with args {args}: {type(e).__name__}: {_line(e)}") from None
    if not callable(obj):
        raise ConfigError(f"{where}={spec!r} is a {type(obj).__name__}, not a function list[str] -> list[float]")
    return obj, spec


def _line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else "no message"


def _check_value(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) and 0.0 <= f <= 1.0 else None


def score_items(fn: Reward, name: str, items: list[str]) -> tuple[list[float | None], list[str]]:
    """``fn(items)``, checked: a value per item (None where the item could not be scored) and one line per
    problem, naming the function and the item. A reward that raises on the batch is retried item by item to
    find the culprits; one that returns the wrong number of values is a GenforgeError (nothing to skip)."""
    if not items:
        return [], []
    try:
        out = fn(list(items))
        batch_error = None
    except Exception as e:
        out, batch_error = None, e
    if batch_error is not None and len(items) == 1:
        return [None], [f"reward {name} raised {type(batch_error).__name__}: {_line(batch_error)} on {items[0]!r}"]
    if batch_error is not None:
        values: list[float | None] = []
        problems: list[str] = []
        for it in items:
            try:
                v, p = score_items(fn, name, [it])
            except GenforgeError as e:
                v, p = [None], [str(e)]
            values += v
            problems += p
        if not problems:  # fails on the batch, never alone
            problems = [f"reward {name} raised {type(batch_error).__name__}: {_line(batch_error)} on a batch of "
                        f"{len(items)} (but not on any one of them)"]
            values = [None] * len(items)
        return values, problems
    try:
        out = list(out)
    except TypeError:
        raise GenforgeError(f"reward {name} returned a {type(out).__name__}, not a list of floats") from None
    if len(out) != len(items):
        raise GenforgeError(f"reward {name} returned {len(out)} values for {len(items)} items: it must return "
                            "one per item")
    values, problems = [], []
    for it, v in zip(items, out):
        f = _check_value(v)
        if f is None:
            problems.append(f"reward {name} returned {v!r} for {it!r}: rewards must be finite numbers in [0, 1]")
        values.append(f)
    return values, problems


# --- the molecule plug-in of the RL task -----------------------------------------------------------
class MoleculeDomain:
    """SMILES items: valid = RDKit parses it; key = canonical SMILES; bucket = Bemis-Murcko scaffold
    (Bemis & Murcko 1996; "" for acyclic molecules, as in REINVENT's IdenticalMurckoScaffold filter);
    ``diversity`` = internal diversity IntDiv1 (MOSES; Benhenda 2017): 1 - mean ECFP4 Tanimoto similarity
    over the distinct pairs of the unique valid molecules."""

    name = "molecule"

    def __init__(self, codec: Any) -> None:
        self.codec = codec

    def decode(self, ids: Sequence[int]) -> str:
        return self.codec.decode(ids).strip("\n")

    def keys(self, items: Sequence[str]) -> list[str | None]:
        from rdkit import Chem

        return [Chem.MolToSmiles(m) if (m := _mol(s)) is not None else None for s in items]

    def buckets(self, keys: Sequence[str]) -> list[str]:
        from rdkit.Chem.Scaffolds import MurckoScaffold

        out = []
        for k in keys:
            try:
                out.append(MurckoScaffold.MurckoScaffoldSmiles(k))
            except Exception:  # RDKit refuses a few exotic valences when stripping side chains
                out.append(k)
        return out

    def diversity(self, keys: Sequence[str]) -> float | None:
        from ..chem import tanimoto

        fps = [ecfp4(m) for k in sorted(set(keys)) if (m := _mol(k)) is not None]
        if len(fps) < 2:
            return None
        total = sum(float(tanimoto(fps[i], fps[i + 1:]).sum()) for i in range(len(fps) - 1))
        return 1.0 - total / (len(fps) * (len(fps) - 1) / 2)
