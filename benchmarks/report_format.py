"""Reading results and formatting figures for benchmarks/report.py (the README and model-card tables)."""
from __future__ import annotations

import json
import statistics
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def load(name: str) -> dict | None:
    p = RESULTS / f"{name}.json"
    return json.loads(p.read_text()) if p.is_file() else None


def meta(name: str) -> dict:
    return json.loads((ROOT / "src" / "genforge" / "bundled" / name / "genforge.json").read_text())


def spread(st: dict) -> str:
    """A paired ratio: median (min-max over n rounds)."""
    return f"{st['median']:.2f}x ({st['min']:.2f}-{st['max']:.2f} over {st['n']} rounds)"


def paired(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def flags(m: dict) -> str:
    f = m.get("cpu_flags") or {}
    have = [k for k in ("avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16") if f.get(k)]
    if not f:
        return "CPU flags not recorded"
    return ("AVX2, " if f.get("avx2") else "") + (", ".join(have) if have else "no AVX-512 / AMX (no native bf16)")


def machine(m: dict | None, when: str | None = None) -> str:
    if not m:
        return "no machine record"
    gpu = m.get("gpu")
    dev = (f"{gpu['name']} (CUDA {gpu['cuda']}), " if gpu else "")
    date = (when or m.get("time_utc") or "")[:10]
    n = m.get("torch_threads")
    return (f"{dev}{m.get('cpu_model', '?')} ({flags(m)}), {m.get('cpu_count')} cores, torch {m.get('torch')}, "
            f"{n} thread{'' if n == 1 else 's'}{', ' + date if date else ''}")


def wrap(text: str, width: int = 100) -> str:
    """Prose wrapped like the hand-written parts of the README; bullets get a hanging indent."""
    out = []
    for line in text.split("\n"):
        indent = "  " if line.startswith("- ") else ""
        out.append(textwrap.fill(line, width, subsequent_indent=indent, break_long_words=False,
                                 break_on_hyphens=False) if line else "")
    return "\n".join(out)


def num(x: float) -> str:
    """1e-3 -> '0.001', 3e-05 -> '3e-5'."""
    return f"{x:g}".replace("e-0", "e-")


def commit(c: str | None) -> str:
    return c[:7] if c else "unknown commit"


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def render(text: str, sections: dict[str, str], where: str = "file") -> str:
    """``text`` with each section's markers' content replaced (every section must have its markers)."""
    for name, body in sections.items():
        start, end = markers(name)
        if text.count(start) != 1 or text.count(end) != 1 or text.index(start) > text.index(end):
            raise SystemExit(f"{where} needs exactly one {start} ... {end} pair")
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        text = f"{head}{start}\n{body}\n{end}{tail}"
    return text
