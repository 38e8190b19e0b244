"""Shared helpers for genforge benchmarks: machine info, medians, results files, memory bandwidth.

Benchmarks run on shared machines, so every benchmark alternates its variants (A B A B ...) and
reports medians and ratios of medians, never a single timing. Results go to
``benchmarks/results/NAME.json`` with the machine description and every raw run.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
    """Platform, Python, torch version and threads, CPU model and core count."""
    import torch

    return {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
    }


def median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def write_result(name: str, data: dict[str, Any], results_dir: Path | None = None) -> Path:
    """Write ``data`` plus machine info to ``results_dir/NAME.json`` atomically; return the path.

    ``data`` should hold every raw run, the medians and the ratios (the caller's choice of keys).
    """
    out_dir = Path(results_dir) if results_dir is not None else RESULTS
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    payload = {"benchmark": name, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine_info(), **data}
    fd, tmp = tempfile.mkstemp(prefix=f"{name}.", suffix=".tmp", dir=out_dir)  # *.tmp is git-ignored
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f, indent=2, sort_keys=False)
            f.write("\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def read_bandwidth_gbs(threads: int, gib: float = 1.0, repeats: int = 7) -> dict[str, Any]:
    """Memory read bandwidth (GB/s, 1e9 bytes) of ``torch.sum`` over a ``gib`` GiB float32 tensor.

    Measured in-process with ``threads`` torch threads (restored afterwards): median over ``repeats``
    timed sums after one warm-up. Returns ``{"gbs": median, "runs_gbs": [...], "bytes": n}``.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        n = int(gib * (1 << 30)) // 4
        x = torch.ones(n, dtype=torch.float32)  # touched, so every page is resident
        nbytes = x.numel() * x.element_size()
        torch.sum(x)
        runs = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            torch.sum(x)
            runs.append(nbytes / (time.perf_counter() - t0) / 1e9)
        del x
    finally:
        torch.set_num_threads(before)
    return {"gbs": median(runs), "runs_gbs": runs, "bytes": nbytes, "threads": threads}
