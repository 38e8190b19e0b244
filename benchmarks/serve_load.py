"""Load on `genforge serve`: throughput and time-to-first-token under concurrent streams, and the
overhead of the HTTP server against the in-process pipeline.

What it measures (targets are recorded in the results, pass or fail, and printed):

* the server is ``python -m genforge serve --model shakespeare-char --max-batch 16`` started by this
  script as a subprocess on 127.0.0.1:<free port>, with ``OMP_NUM_THREADS=--threads`` (and this
  process uses ``torch.set_num_threads(--threads)``, so both sides run the same torch threads);
* load: at 1, 4 and 16 concurrent streams (``httpx.AsyncClient``, streaming ``/v1/completions``,
  ``max_tokens`` 128, temperature 0.8, a distinct seed per request, short prompts made of the model's
  vocabulary), ``--waves`` waves of N requests started together. Per level: aggregate tokens/s
  (completion tokens from the final usage chunk, checked against the SSE chunks / wall time of the
  wave), time-to-first-token p50/p95 (request sent -> first chunk with text). The waves of the
  levels alternate (1, 4, 16, 1, 4, 16 ...) and the scaling ratio is the median of the per-wave
  ratios (wave w at 16 / wave w at 1) with their spread. Target: 16 streams >= 4 x 1 stream;
* overhead: tokens/s of ONE stream through the server (request sent -> ``[DONE]``) versus the
  in-process ``genforge.load("shakespeare-char").stream(...)`` (call -> last piece, prefill included on
  both sides), same prompt, max_tokens, temperature and seed, alternating server / in-process for
  ``--rounds`` rounds after a warm-up of each; median of the per-round ratios. Target >= 0.9.

    python benchmarks/serve_load.py                 # full run, about a minute on 2 cores
    python benchmarks/serve_load.py --smoke         # CI smoke: seconds, writes results/smoke/

Every request has a timeout and every level a deadline; the server is terminated (SIGTERM, then
SIGKILL) on the way out whatever happens.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, median, paired_ratio, write_result  # noqa: E402

MODEL = "shakespeare-char"
TARGETS = {"ratio_16_vs_1": 4.0, "overhead_ratio": 0.9}
WORDS = ["ROMEO.\n", "JULIET.\n", "HAMLET.\n", "KING.\n", "QUEEN.\n", "First Citizen.\n", "O", "What", "My lord",
         "The", "Good", "I", "Thou", "Come", "Now", "Why", "Sweet", "Alas", "Speak", "Where"]


def prompts_for(codec, n: int, seed: int) -> list[str]:
    """``n`` short prompts (1-2 words), every character in the model's vocabulary."""
    vocab = set(codec.chars)
    words = [w for w in WORDS if set(w) <= vocab]
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        p = rng.choice(words)
        if not p.endswith("\n") and rng.random() < 0.5:
            p += " " + rng.choice([w for w in words if not w.endswith("\n")]).lower()
        out.append(p)
    return out


def percentile(xs: list[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100]) of a non-empty list."""
    s = sorted(xs)
    return float(s[max(0, min(len(s) - 1, math.ceil(q / 100 * len(s)) - 1))])


# --- the server -------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``genforge serve`` in a subprocess; a context manager that always stops it."""

    def __init__(self, threads: int, max_batch: int, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "genforge", "serve", "--model", MODEL, "--port", str(self.port),
                 "--max-batch", str(max_batch), "--max-concurrent", "64"],
                stdout=out, stderr=subprocess.STDOUT, env=env)

    def __enter__(self) -> Server:
        import httpx

        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(f"genforge serve did not come up:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.1)

    def __exit__(self, *exc: Any) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


# --- one streaming request ------------------------------------------------------------------------------
async def stream_one(client, prompt: str, max_tokens: int, seed: int, temperature: float) -> dict[str, Any]:
    """Stream one completion; return tokens (usage), chunks with text, ttft and total seconds."""
    body = {"model": MODEL, "prompt": prompt, "max_tokens": max_tokens, "temperature": temperature,
            "seed": seed, "stream": True, "stream_options": {"include_usage": True}}
    t0 = time.perf_counter()
    ttft, chunks, usage, done = None, 0, None, False
    async with client.stream("POST", "/v1/completions", json=body) as r:
        if r.status_code != 200:
            raise RuntimeError(f"HTTP {r.status_code}: {(await r.aread())[:300]!r}")
        async for line in r.aiter_lines():
            if not line.startswith("data: "):
                continue
            if line == "data: [DONE]":
                done = True
                break
            d = json.loads(line[6:])
            if d.get("usage"):
                usage = d["usage"]
            if any(c.get("text") for c in d["choices"]):
                chunks += 1
                if ttft is None:
                    ttft = time.perf_counter() - t0
    total = time.perf_counter() - t0
    if not done or usage is None:
        raise RuntimeError("stream ended without a usage chunk and [DONE]")
    return {"tokens": usage["completion_tokens"], "text_chunks": chunks, "ttft_s": ttft, "total_s": total}


def process_cpu_s(pid: int | None = None) -> float:
    """User + system CPU seconds of a process (this one by default), from /proc where it exists."""
    if pid is None:
        return time.process_time()
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


async def run_wave(url: str, prompts: list[str], seeds: list[int], max_tokens: int, temperature: float,
                   timeout: float, server_pid: int | None = None) -> dict[str, Any]:
    """N requests started together; tokens/s over the wave's wall time, and where the CPU went."""
    import httpx

    limits = httpx.Limits(max_connections=len(prompts) + 2, max_keepalive_connections=len(prompts) + 2)
    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as client:
        cpu0 = (process_cpu_s(), process_cpu_s(server_pid) if server_pid else float("nan"))
        t0 = time.perf_counter()
        results = await asyncio.wait_for(asyncio.gather(*[
            stream_one(client, p, max_tokens, s, temperature) for p, s in zip(prompts, seeds)]), timeout)
        wall = time.perf_counter() - t0
        cpu = (process_cpu_s() - cpu0[0], (process_cpu_s(server_pid) - cpu0[1]) if server_pid else float("nan"))
    tokens = sum(r["tokens"] for r in results)
    return {"n": len(prompts), "wall_s": wall, "tokens": tokens, "tokens_per_s": tokens / wall,
            "text_chunks": sum(r["text_chunks"] for r in results), "ttft_s": [r["ttft_s"] for r in results],
            "request_s": [r["total_s"] for r in results],
            "cpu_ms_per_token": {"client": cpu[0] / tokens * 1e3, "server": cpu[1] / tokens * 1e3}}


# --- the benchmark ---------------------------------------------------------------------------------------
def load_levels(url: str, codec, args: argparse.Namespace, server_pid: int | None = None) -> dict[str, Any]:
    """``--waves`` rounds; each round runs one wave at every level (1, 4, 16 streams ...), so wave w of
    every level ran minutes apart at most, under the same load: the scaling ratio pairs them."""
    waves: dict[int, list[dict[str, Any]]] = {n: [] for n in args.levels}
    seed = 1000
    for w in range(args.waves):
        for n in args.levels:
            prompts = prompts_for(codec, n, seed)
            seeds = list(range(seed, seed + n))
            seed += n
            waves[n].append(asyncio.run(run_wave(url, prompts, seeds, args.max_tokens, args.temperature,
                                                 args.request_timeout, server_pid)))
            wv = waves[n][-1]
            cpu = wv["cpu_ms_per_token"]
            print(f"  wave {w + 1}, {n:>2} streams: {wv['tokens']} tokens in {wv['wall_s']:.2f} s = "
                  f"{wv['tokens_per_s']:.0f} tokens/s, ttft p50 {median(wv['ttft_s']) * 1000:.0f} ms; CPU per token: "
                  f"server {cpu['server']:.2f} ms, client {cpu['client']:.2f} ms", flush=True)
    out: dict[str, Any] = {}
    for n, ws in waves.items():
        ttft = [t for wv in ws for t in wv["ttft_s"]]
        tokens, wall = sum(wv["tokens"] for wv in ws), sum(wv["wall_s"] for wv in ws)
        out[str(n)] = {"streams": n, "waves": ws, "tokens": tokens, "wall_s": wall,
                       "tokens_per_s": tokens / wall,
                       "median_wave_tokens_per_s": median([wv["tokens_per_s"] for wv in ws]),
                       "ttft_p50_s": percentile(ttft, 50), "ttft_p95_s": percentile(ttft, 95),
                       "cpu_ms_per_token": {side: median([wv["cpu_ms_per_token"][side] for wv in ws])
                                            for side in ("server", "client")},
                       "tokens_match_chunks": all(wv["tokens"] == wv["text_chunks"] for wv in ws)}
    return out


def overhead(url: str, tm, args: argparse.Namespace, server_pid: int | None = None) -> dict[str, Any]:
    """One stream through the server vs ``tm.stream`` in this process, alternating; tokens/s each."""
    prompt = "ROMEO.\n"

    cpu: dict[str, list[float]] = {"server": [], "client": [], "in_process": []}

    def in_process(seed: int) -> float:
        t0, c0 = time.perf_counter(), time.process_time()
        text = "".join(tm.stream(prompt, max_tokens=args.max_tokens, temperature=args.temperature, seed=seed))
        dt = time.perf_counter() - t0
        n = len(tm.codec.encode(text))
        cpu["in_process"].append((time.process_time() - c0) / max(n, 1) * 1e3)
        return n / dt if text else 0.0

    def served(seed: int) -> float:
        wv = asyncio.run(run_wave(url, [prompt], [seed], args.max_tokens, args.temperature, args.request_timeout,
                                  server_pid))
        cpu["server"].append(wv["cpu_ms_per_token"]["server"])
        cpu["client"].append(wv["cpu_ms_per_token"]["client"])
        return wv["tokens"] / wv["request_s"][0]

    served(1)  # warm-up both sides
    in_process(1)
    for v in cpu.values():
        v.clear()
    runs: dict[str, list[float]] = {"server": [], "in_process": []}
    ratios: list[float] = []
    load: list[float] = []
    for i in range(args.rounds):
        seed = 100 + i  # the same seed on both sides of a round: the same tokens
        a, b = (served, in_process) if i % 2 == 0 else (in_process, served)
        x, y = a(seed), b(seed)
        s, p = (x, y) if a is served else (y, x)
        runs["server"].append(s)
        runs["in_process"].append(p)
        ratios.append(s / p)
        load.append(os.getloadavg()[0])  # > threads: other work shared the cores
        print(f"  round {i + 1}: server {s:.0f} tokens/s, in-process {p:.0f} tokens/s, ratio {s / p:.3f}",
              flush=True)
    pr = paired_ratio(runs["server"], runs["in_process"])
    return {"prompt": prompt, "raw_tokens_per_s": runs, "ratios": ratios, "paired_ratio": pr,
            "loadavg_1min_per_round": load,
            "median_cpu_ms_per_token": {k: median(v) for k, v in cpu.items()},
            "median_tokens_per_s": {k: median(v) for k, v in runs.items()},
            "median_ratio": pr["median"],
            "ratio_of_medians": median(runs["server"]) / median(runs["in_process"])}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads on both sides: OMP_NUM_THREADS for the server, set_num_threads here")
    p.add_argument("--levels", default="1,4,16", help="concurrent streams per level, comma-separated")
    p.add_argument("--waves", type=int, default=3,
                   help="rounds of waves; each round runs one wave of N simultaneous requests per level")
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--max-batch", type=int, default=16)
    p.add_argument("--rounds", type=int, default=6, help="alternating rounds of the overhead comparison")
    p.add_argument("--request-timeout", type=float, default=180.0, help="seconds, per request and per wave")
    p.add_argument("--smoke", action="store_true",
                   help="CI smoke: levels 1,2, one wave, 8 tokens, 2 rounds; writes results/smoke/")
    p.add_argument("--out-dir", help="results folder (default benchmarks/results, or results/smoke)")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = p.parse_args(argv)
    if args.smoke:
        args.levels, args.waves, args.max_tokens, args.rounds = "1,2", 1, 8, 2
        args.request_timeout = min(args.request_timeout, 60.0)
    args.levels = [int(x) for x in str(args.levels).split(",") if x.strip()]
    if not args.levels or min(args.levels) < 1 or args.max_tokens < 1 or args.rounds < 1 or args.waves < 1:
        p.error("levels, waves, rounds and max-tokens must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    import tempfile

    import torch

    import genforge

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    out_dir = Path(args.out_dir) if args.out_dir else (RESULTS / "smoke" if args.smoke else RESULTS)
    tm = genforge.load(MODEL)
    print(f"serve_load: {MODEL}, levels {args.levels}, {args.waves} waves, max_tokens {args.max_tokens}, "
          f"temperature {args.temperature}, {args.threads} torch thread(s) on both sides", flush=True)
    with tempfile.TemporaryDirectory() as tmp, Server(args.threads, args.max_batch, Path(tmp) / "server.log") as srv:
        asyncio.run(run_wave(srv.url, ["ROMEO.\n"], [0], min(16, args.max_tokens), args.temperature,
                             args.request_timeout))  # warm-up
        print("load:", flush=True)
        levels = load_levels(srv.url, tm.codec, args, srv.proc.pid)
        print("overhead (one stream, server vs in-process):", flush=True)
        over = overhead(srv.url, tm, args, srv.proc.pid)
    lo, hi = str(min(args.levels)), str(max(args.levels))
    # paired by wave: wave w at the highest level over wave w at the lowest
    sc = paired_ratio([wv["tokens_per_s"] for wv in levels[hi]["waves"]],
                      [wv["tokens_per_s"] for wv in levels[lo]["waves"]])
    scaling = sc["median"]
    data = {
        "config": {"model": MODEL, "smoke": args.smoke, "levels": args.levels, "waves": args.waves,
                   "max_tokens": args.max_tokens, "temperature": args.temperature, "max_batch": args.max_batch,
                   "rounds": args.rounds, "threads": args.threads,
                   "server": "python -m genforge serve (subprocess), OMP_NUM_THREADS=threads",
                   "client": "httpx.AsyncClient, streaming /v1/completions, include_usage"},
        "levels": levels,
        "scaling": {"from": int(lo), "to": int(hi), "ratio": scaling, "paired_ratio": sc,
                    "ratio_of_aggregates": levels[hi]["tokens_per_s"] / levels[lo]["tokens_per_s"]},
        "overhead": over,
        "loadavg_1min_per_round": over["loadavg_1min_per_round"],
        "targets": {"ratio_16_vs_1": {"target": TARGETS["ratio_16_vs_1"], "value": scaling,
                                      "met": scaling >= TARGETS["ratio_16_vs_1"], "levels": [int(lo), int(hi)]},
                    "overhead_ratio": {"target": TARGETS["overhead_ratio"], "value": over["median_ratio"],
                                       "met": over["median_ratio"] >= TARGETS["overhead_ratio"]}},
    }
    path = write_result("serve_load", data, out_dir)
    print()
    for n, lv in levels.items():
        print(f"{n:>3} streams: {lv['tokens_per_s']:7.1f} tokens/s  ttft p50 {lv['ttft_p50_s'] * 1000:6.0f} ms  "
              f"p95 {lv['ttft_p95_s'] * 1000:6.0f} ms")
    print(f"{hi} vs {lo} streams: {scaling:.2f}x, paired by wave (min {sc['min']:.2f}, max {sc['max']:.2f}; "
          f"target >= {TARGETS['ratio_16_vs_1']})")
    c = over["median_cpu_ms_per_token"]
    print(f"overhead: server / in-process tokens/s, median ratio {over['median_ratio']:.3f} "
          f"(min {over['paired_ratio']['min']:.3f}, max {over['paired_ratio']['max']:.3f}) "
          f"(target >= {TARGETS['overhead_ratio']}); CPU per token: server {c['server']:.2f} ms + client "
          f"{c['client']:.2f} ms vs in-process {c['in_process']:.2f} ms")
    print(f"wrote {path}")
    missed = [k for k, v in data["targets"].items() if not v["met"]]
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
