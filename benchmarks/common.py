"""Shared helpers for genforge benchmarks: machine info, medians, results files, memory bandwidth.

Benchmarks run on shared machines, so every benchmark alternates its variants (A B A B ...) and
reports medians, and ratios as the median of the paired per-round ratios (round i: ours_i / peer_i,
two runs seconds apart under the same load) with their spread, never a ratio of medians nor a single
timing. Results go to ``benchmarks/results/NAME.json`` through ``write_result``, which records the
machine (CPU model and flags, threads, torch, UTC time, and the GPU when CUDA was used) beside every
raw run.
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


# CPU features that decide which kernels torch can use (fp32 FMA width, native bf16/fp16, AMX tiles)
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16", "amx_tile",
             "amx_bf16", "amx_int8")


def _cpu_flags() -> dict[str, bool] | None:
    """Which of ``CPU_FLAGS`` the CPU reports (/proc/cpuinfo's first ``flags`` line); None off Linux."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                return {f: f in have for f in CPU_FLAGS}
    except OSError:
        pass
    return None


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def gpu_info() -> dict[str, Any] | None:
    """The CUDA card this process used (name, capability, memory), CUDA version, and whether fp32
    matmuls and convolutions may use TF32 at the time of the call; None when CUDA was not used."""
    import torch

    if not (torch.cuda.is_available() and torch.cuda.is_initialized()):
        return None
    i = torch.cuda.current_device()
    props = torch.cuda.get_device_properties(i)
    return {
        "name": torch.cuda.get_device_name(i),
        "count": torch.cuda.device_count(),
        "capability": ".".join(map(str, torch.cuda.get_device_capability(i))),
        "memory_gib": round(props.total_memory / (1 << 30), 1),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
        "tf32_cudnn": bool(torch.backends.cudnn.allow_tf32),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
    }


def machine_info() -> dict[str, Any]:
    """Platform, Python, torch version and threads, CPU model, flags and core count, UTC time, and
    the GPU (``gpu_info``) when this process used CUDA."""
    import torch

    info = {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "cpu_model": _cpu_model(),
        "cpu_flags": _cpu_flags(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "time_utc": utc_now(),
    }
    gpu = gpu_info()
    if gpu is not None:
        info["gpu"] = gpu
    return info


def median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def paired_ratio(ours: list[float], peer: list[float]) -> dict[str, Any]:
    """Median of the per-round ratios ``ours[i] / peer[i]`` (rates: higher is better), with their
    spread: min, max and the quartiles (inclusive method). Round i of both ran back to back, under
    the same load, so the pairs cancel the load drift that a ratio of medians mixes in."""
    if len(ours) != len(peer) or not ours:
        raise ValueError(f"paired_ratio needs two equally long, non-empty lists ({len(ours)} vs {len(peer)})")
    ratios = [a / b for a, b in zip(ours, peer)]
    q1, _, q3 = statistics.quantiles(ratios, n=4, method="inclusive") if len(ratios) > 1 else (ratios[0],) * 3
    return {"median": median(ratios), "min": min(ratios), "max": max(ratios), "q1": float(q1), "q3": float(q3),
            "n": len(ratios), "ratios": ratios}


def write_result(name: str, data: dict[str, Any], results_dir: Path | None = None) -> Path:
    """Write ``data`` plus machine info to ``results_dir/NAME.json`` atomically; return the path.

    ``data`` should hold every raw run, the medians and the ratios (the caller's choice of keys).
    """
    out_dir = Path(results_dir) if results_dir is not None else RESULTS
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    payload = {"benchmark": name, "time": utc_now(), "machine": machine_info(), **data}
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
