"""The dependency direction of ../design: nothing imports upward, and the sampling modules form no cycle.

core (errors, paths, atomic, types, config, registry, checkpoint, device, store) <- leaf packages
(codecs, models, sampling, retrieval) <- data (and chem) <- train, eval, safety; pipelines sit above the leaves,
data and safety but never import train (inference reads checkpoints without the training code); serve above
pipelines; the CLI and
the package's front door may import anything. Every import counts, also those inside functions.
"""
from __future__ import annotations

import ast
from pathlib import Path

import genforge

SRC = Path(genforge.__file__).resolve().parent
CORE = {"errors", "paths", "atomic", "types", "config", "registry", "checkpoint", "device", "store"}
LEAVES = {"codecs", "models", "diffusion", "sampling", "retrieval"}
ALLOWED = {
    "core": {"core"},
    "codecs": {"core", "codecs"},
    "models": {"core", "models"},
    "diffusion": {"core", "diffusion"},
    "sampling": {"core", "sampling"},
    "retrieval": {"core", "codecs", "retrieval"},  # codecs: the MiniLM sentence embedder
    "chem": {"core", "data", "chem"},  # RDKit properties, fingerprints, filters (beside data: reads MOSES files)
    "music": {"core", "codecs", "data", "music"},  # MIDI, WAV and piano rolls of pieces (beside data, as chem)
    "data": {"core", "codecs", "data"},
    # sampling: sample grids and RL rollouts; safety: the model card of each checkpoint
    "train": {"core", *LEAVES, "data", "chem", "safety", "train"},
    "eval": {"core", "codecs", "models", "chem", "data", "eval"},
    "safety": {"core", *LEAVES, "data", "safety"},  # watermark, filters, bias probes, model cards
    "pipelines": {"core", *LEAVES, "data", "chem", "music", "safety", "pipelines"},
    "serve": {"core", *LEAVES, "data", "chem", "music", "safety", "pipelines", "serve"},
}


def group(module: str) -> str:
    """'genforge.train.tasks.lm' -> 'train'; core modules -> 'core'; the CLI and front door -> 'top'."""
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in ("cli", "__main__") or parts[1].startswith("cli_"):
        return "top"
    return "core" if parts[1] in CORE else parts[1]


def imports(path: Path) -> list[tuple[str, int]]:
    """Every genforge module ``path`` imports (absolute or relative, at any depth), with its line."""
    rel = path.relative_to(SRC.parent).with_suffix("")
    package = list(rel.parts[:-1]) if rel.name != "__init__" else list(rel.parts[:-1])
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names if a.name.split(".")[0] == "genforge"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.split(".")[0] != "genforge":
                continue
            names = [f"{mod}.{a.name}" for a in node.names]
            # "from . import runtime" names a module; "from ..x import y" names x (y may be a function)
            out += [(n, node.lineno) for n in names if (SRC.parent / Path(*n.split("."))).with_suffix(".py").exists()
                    or (SRC.parent / Path(*n.split("."))).is_dir()] or [(mod, node.lineno)]
    return out


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_nothing_imports_upward() -> None:
    bad = []
    for path in sorted(SRC.rglob("*.py")):
        me = group(module_name(path))
        if me == "top":
            continue
        for target, line in imports(path):
            there = group(target)
            if there not in ALLOWED[me]:
                bad.append(f"{path.relative_to(SRC)}:{line} ({me}) imports {target} ({there})")
    assert not bad, "\n".join(bad)


def test_the_sampling_modules_form_no_cycle() -> None:
    graph = {module_name(p): {t for t, _ in imports(p) if t.startswith("genforge.sampling.")}
             for p in (SRC / "sampling").glob("*.py")}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        if state.get(node) == 1:
            raise AssertionError("import cycle: " + " -> ".join(trail + [node]))
        if state.get(node) == 2:
            return
        state[node] = 1
        for nxt in graph.get(node, ()):
            visit(nxt, trail + [node])
        state[node] = 2

    for node in graph:
        visit(node, [])


def test_the_checker_sees_an_upward_import(tmp_path: Path) -> None:
    """The parser really resolves relative imports: a models file importing train is flagged."""
    fake = SRC / "models" / "transformer.py"
    found = {t for t, _ in imports(fake)}
    assert found and all(group(t) in ALLOWED["models"] for t in found)
    assert group("genforge.train.fit") not in ALLOWED["models"]
    assert group("genforge.pipelines.text") not in ALLOWED["train"]
