"""Helpers for run_mutation.sh (run with mutmut's venv python, cwd = the clone).

  generate                                    mutmut 3's mutant generation step only (writes mutants/)
  stats                                       full test run with coverage per mutated function + estimates
  select  <estimates.txt> <n_per_folder> <seed>   print the mutant names to run, in run order (all if n == 0)
  run     <selected.txt> <budget_s>             mutmut run of those mutants in that order, stopped at budget_s
  report  <selected.txt> <out-dir> <n_total>   summary.txt/.json + survivors.txt from mutants/**.meta
"""
from __future__ import annotations

import ast
import json
import math
import os
import random
import sys
from collections import Counter, defaultdict
from pathlib import Path

FOLDERS = ("sampling", "train", "serve")


def folder_of(name: str) -> str:
    parts = name.split(".")
    assert parts[0] == "genforge", name
    return parts[1]


def generate() -> None:
    from mutmut.__main__ import copy_also_copy_files, copy_src_dir, create_mutants, setup_source_paths

    os.makedirs("mutants", exist_ok=True)
    copy_src_dir()
    copy_also_copy_files()
    setup_source_paths()
    print(create_mutants(1))


def stats() -> None:
    """mutmut print-time-estimates, but with mutants/src first on sys.path (the CLI command forgets to,
    so the tests would import the installed package and no test would be linked to any mutant)."""
    from mutmut.__main__ import cli
    from mutmut.utils.file_utils import setup_source_paths

    setup_source_paths()
    cli(["print-time-estimates"], standalone_mode=False)


def select(estimates: str, n: int, seed: int) -> None:
    """Every mutant (or n per folder), in a seeded random order that interleaves the folders round-robin.

    The mutants are run in exactly this order, so whatever prefix fits in the time budget is a uniform
    random sample of each folder (and the same seed gives the same order in a later before/after run).
    """
    names_by_folder: dict[str, list[str]] = defaultdict(list)
    for line in Path(estimates).read_text().splitlines():
        name = line.rsplit(" ", 1)[1]
        names_by_folder[folder_of(name)].append(name)
    perms = []
    for folder in FOLDERS:
        names = sorted(names_by_folder[folder])
        random.Random(f"{seed}-{folder}").shuffle(names)
        perms.append(names[:n] if n else names)
    for i in range(max(len(p) for p in perms)):
        for p in perms:
            if i < len(p):
                print(p[i])


def run(selected_file: str, budget_s: float) -> None:
    """``mutmut run --max-children 1 <names>`` with two changes made from outside mutmut:
    the mutants run in the order of selected_file (mutmut sorts them fastest-first, which would make a
    time-boxed prefix a biased sample), and once budget_s has passed the run stops before the next mutant
    the way Ctrl-C does (finished mutants keep their results; the rest stay 'not checked')."""
    import time

    import mutmut.__main__ as mm
    from mutmut.mutation.data import SourceFileMutationData
    from mutmut.utils.file_utils import walk_mutatable_files

    selected = Path(selected_file).read_text().split()
    order = {name: i for i, name in enumerate(selected)}
    # forget earlier results of the selected mutants, so a mutant the budget does not reach reads 'not checked'
    if Path("mutants").is_dir():
        for path in walk_mutatable_files():
            m = SourceFileMutationData(path=path)
            try:
                m.load()
            except FileNotFoundError:
                continue
            hit = [k for k in m.exit_code_by_key if k in order]
            for k in hit:
                m.exit_code_by_key[k] = None
                m.durations_by_key.pop(k, None)
            if hit:
                m.save()
    mm.estimated_worst_case_time = lambda name: order.get(name, len(order))
    # Stop at a loop boundary, not by a signal at an arbitrary point (that could cut a .meta file mid-write):
    # mutmut calls print_stats before each mutant; once the budget is spent it raises KeyboardInterrupt
    # there, which mutmut handles like Ctrl-C (stops the worker in flight, keeps every finished result).
    orig_print_stats = mm.print_stats
    deadline = time.monotonic() + budget_s
    fired = False

    def print_stats(*args, **kwargs):
        nonlocal fired
        if budget_s > 0 and not fired and not kwargs.get("force_output") and time.monotonic() > deadline:
            fired = True
            print(f"\n*** time budget of {budget_s:.0f} s reached: stopping ***", flush=True)
            raise KeyboardInterrupt
        return orig_print_stats(*args, **kwargs)

    mm.print_stats = print_stats
    mm.cli(["run", "--max-children", "1", *selected], standalone_mode=False)


def wilson(k: int, n: int, population: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson interval for k/n, with the finite-population correction when n is a sample of population."""
    if n == 0:
        return (math.nan, math.nan)
    if population > n:
        n_eff = n * (population - 1) / (population - n)  # n / fpc^2
    else:
        return (k / n, k / n)  # the whole population was measured: no sampling error
    p = k / n
    denom = 1 + z * z / n_eff
    centre = (p + z * z / (2 * n_eff)) / denom
    half = z * math.sqrt(p * (1 - p) / n_eff + z * z / (4 * n_eff * n_eff)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def load_results() -> tuple[dict[str, int | None], dict[str, str], dict[str, float]]:
    from mutmut.stats import status_by_exit_code

    exit_codes: dict[str, int | None] = {}
    paths: dict[str, str] = {}
    durations: dict[str, float] = {}
    for meta in sorted(Path("mutants/src/genforge").rglob("*.py.meta")):
        data = json.loads(meta.read_text())
        src = str(meta.relative_to("mutants"))[: -len(".meta")]
        for k, v in data["exit_code_by_key"].items():
            exit_codes[k] = v
            paths[k] = src
        durations.update(data.get("durations_by_key", {}))
    return {k: status_by_exit_code[v] for k, v in exit_codes.items()}, paths, durations


def line_of_mutation(path: str, mutant: str, diff: str) -> int | None:
    from mutmut.utils.format_utils import orig_function_and_class_names_from_key

    func, cls = orig_function_and_class_names_from_key(mutant)
    src = Path(path).read_text()
    tree = ast.parse(src)
    lines = src.splitlines()
    start = end = None
    scope = tree.body
    if cls:
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and node.name == cls:
                scope = node.body
    for node in scope:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == func:
            start = min([node.lineno] + [d.lineno for d in node.decorator_list])
            end = node.end_lineno
    if start is None:
        return None
    removed = [ln[1:].strip() for ln in diff.splitlines() if ln.startswith("-") and not ln.startswith("---")]
    for text in removed:
        for i in range(start - 1, end):
            if lines[i].strip() == text:
                return i + 1
    return start


def report(selected_file: str, out: str, n_total: int) -> None:
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    selected = Path(selected_file).read_text().split()
    status, paths, durations = load_results()
    population = Counter(folder_of(k) for k in status)
    by_folder: dict[str, Counter] = {f: Counter() for f in FOLDERS}
    not_checked = Counter()
    for name in selected:
        st = status.get(name, "not checked")
        if st == "not checked":
            not_checked[folder_of(name)] += 1
        else:
            by_folder[folder_of(name)][st] += 1

    out_dir = Path(out)
    summary = {}
    rows = []
    header = (f"{'folder':9} {'mutants':>7} {'run':>5} {'killed':>6} {'survived':>8} {'timeout':>7} {'no-tests':>8} "
              f"{'suspic.':>7} {'other':>5}  survived/tested [95% CI]       not-killed/run")
    total = Counter()
    for folder in FOLDERS + ("overall",):
        if folder == "overall":
            c, pop = total, sum(population.values())
        else:
            c, pop = by_folder[folder], population[folder]
            total.update(c)
        run = sum(c.values())
        tested = c["killed"] + c["survived"] + c["timeout"] + c["suspicious"] + c["segfault"]
        other = run - tested - c["no tests"] - c["skipped"]
        share = c["survived"] / tested if tested else math.nan
        lo, hi = wilson(c["survived"], tested, round(pop * tested / run) if run else 0)
        not_killed = (c["survived"] + c["no tests"]) / run if run else math.nan
        nk_lo, nk_hi = wilson(c["survived"] + c["no tests"], run, pop)
        summary[folder] = dict(population=pop, run=run, killed=c["killed"], survived=c["survived"],
                               timeout=c["timeout"], no_tests=c["no tests"], suspicious=c["suspicious"],
                               skipped=c["skipped"], segfault=c["segfault"], other=other,
                               survived_share_of_tested=share, ci95=[lo, hi],
                               not_killed_share=not_killed, not_killed_ci95=[nk_lo, nk_hi])
        rows.append(f"{folder:9} {pop:7} {run:5} {c['killed']:6} {c['survived']:8} {c['timeout']:7} "
                    f"{c['no tests']:8} {c['suspicious']:7} {other:5}  {share:6.1%} [{lo:5.1%}, {hi:5.1%}]"
                    f"         {not_killed:6.1%} [{nk_lo:5.1%}, {nk_hi:5.1%}]")
    text = [header, *rows, "",
            "tested = killed + survived + timeout + suspicious; the CI is 95% Wilson with finite-population",
            "correction (zero width when every mutant of the folder was run).",
            "not-killed = (survived + no-tests) / run: 'no tests' = no test calls the mutated function in-process.",
            f"mutants generated: {n_total}; selected: {len(selected)}; not reached within the time budget: "
            f"{sum(not_checked.values())} {dict(not_checked)}"]
    (out_dir / "summary.txt").write_text("\n".join(text) + "\n")
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))

    # survivors list (and, separately, the no-tests mutants)
    chunks = {"survived": [], "no tests": [], "timeout": [], "suspicious": []}
    def natural(n: str) -> tuple:
        head, _, num = n.rpartition("__mutmut_")
        return (paths.get(n, ""), head, int(num) if num.isdigit() else 0)

    for name in sorted(selected, key=natural):
        st = status.get(name)
        if st not in chunks:
            continue
        path = paths[name]
        try:
            diff = get_diff_for_mutant(name, path=path)
        except Exception as e:  # noqa: BLE001
            diff = f"(no diff: {e!r})"
        line = line_of_mutation(path, name, diff)
        body = "\n".join(ln for ln in diff.splitlines()[2:])  # drop the ---/+++ header
        chunks[st].append(f"## {path}:{line}  {name}  [{st}]\n{body}\n")
    for st, fname in (("survived", "survivors.txt"), ("no tests", "no_tests.txt"),
                      ("timeout", "timeouts.txt"), ("suspicious", "suspicious.txt")):
        (out_dir / fname).write_text(f"# {len(chunks[st])} mutants with status '{st}'\n\n" + "\n".join(chunks[st]))


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "generate":
        generate()
    elif cmd == "stats":
        stats()
    elif cmd == "select":
        select(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif cmd == "run":
        run(sys.argv[2], float(sys.argv[3]))
    elif cmd == "report":
        report(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        raise SystemExit(__doc__)
