"""Where a batch-16 decode step of the server's engine goes, against batch 1.

The server's scaling (16 streams vs 1) is bounded by what one engine step costs at 16 rows. This script
takes the step apart on the bundled ``shakespeare-char`` model (6 layers, width 384, context 256), all in
one process with ``--threads`` torch threads (the server benchmark's setting), alternating the variants
round by round and reporting medians:

* ``forward``: the model alone. Batch 1 (the lone-row path, ``step``), batch 16 with ragged lengths
  (``step_rows``: per-row cache writes and a length mask, what the engine runs), and batch 16 with equal
  lengths through the plain cached ``step`` (no mask), so the ragged overhead shows by difference;
* ``profile``: the batch-16 ragged forward under ``torch.profiler``, its self CPU time grouped by kind of
  op (matrix products, attention, cache writes, norms and activations, the rest);
* ``floor``: the same matrix products as one batch-16 forward, timed alone: what the arithmetic costs;
* ``sampling``: 16 rows sampled the engine's way (each row its own parameters, generator and penalty
  counts: 16 calls of ``sample_step`` on (1, V)) against one batched call on (16, V);
* ``engine``: the real ``BatchEngine`` (its thread, admission, retire, callbacks) with 1 and with 16
  requests: the median time between two tokens of one request while all rows are active.

    python benchmarks/engine_step.py            # about a minute
    python benchmarks/engine_step.py --smoke    # seconds, writes results/smoke/
"""
from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, median, write_result  # noqa: E402

import genforge  # noqa: E402
from genforge.models.inference import TransposedLinear  # noqa: E402
from genforge.sampling.tokens import penalty_counts, prefill, sample_step  # noqa: E402
from genforge.serve.engine import BatchEngine, EngineRequest  # noqa: E402
from genforge.types import SamplingParams  # noqa: E402

MODEL = "shakespeare-char"
BATCH = 16
PARAMS = SamplingParams(max_tokens=128, temperature=0.8)  # the server benchmark's requests
ENGINE_TOKENS = 128
MEAN_LEN = 3 + ENGINE_TOKENS // 2  # the mean row length while the engine measurement runs


def timed(fn, reps: int) -> float:
    """Median seconds of ``fn()`` over ``reps`` calls (after one warm-up call)."""
    fn()
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return median(out)


def filled_rows(model, n: int, lengths: list[int]):
    """A batch state of ``n`` rows, row b holding ``lengths[b]`` positions of random tokens."""
    g = torch.Generator().manual_seed(0)
    state = model.init_state(n, model.max_len)
    for row, length in enumerate(lengths):
        ids = torch.randint(0, model.vocab_size, (length,), generator=g).tolist()
        _, single = prefill(model, [ids], model.max_len)
        model.put_row(state, row, single)
    return state


def forward_variants(model) -> dict[str, Any]:
    """Callables for one decode step of each forward variant (state positions restored after each)."""
    g = torch.Generator().manual_seed(1)
    # rows at different places in their text, around the mean length of the engine measurement below
    # (3-token prompts and 128 new tokens: lengths 4..131)
    ragged = torch.randint(MEAN_LEN - 8, MEAN_LEN + 9, (BATCH,), generator=g)
    ragged_state = filled_rows(model, BATCH, ragged.tolist())
    mean_len = MEAN_LEN
    equal_state = filled_rows(model, BATCH, [mean_len] * BATCH)
    lone_state = filled_rows(model, 1, [mean_len])
    ids16 = torch.randint(0, model.vocab_size, (BATCH, 1), generator=g)

    def lone():
        lone_state.pos = mean_len
        model.step(ids16[:1], lone_state)

    def rows16():
        model.step_rows(ids16, ragged_state, ragged)

    def equal16():
        equal_state.pos = mean_len
        model.step(ids16, equal_state)

    cfg = model.config
    q = torch.randn(BATCH, cfg.n_head, 1, cfg.n_embd // cfg.n_head, generator=g)
    span = int(ragged.max()) + 1
    mask = (torch.arange(span)[None, :] <= ragged[:, None])[:, None, None, :]

    def attention16():  # the attention products alone, as step_rows runs them over every layer's cache
        for layer in range(cfg.n_layer):
            F.scaled_dot_product_attention(q, ragged_state.k[layer, :, :, :span], ragged_state.v[layer, :, :, :span],
                                           attn_mask=mask)

    return {"batch1": lone, "batch16_ragged": rows16, "batch16_equal_unmasked": equal16,
            "attention_only_16_ragged": attention16}


def matmul_floor(model, rows: int) -> float:
    """Seconds for the matrix products of one decode step of ``rows`` rows alone: every linear layer of
    the model (as loaded for decoding) applied once to a (rows, in_features) input."""
    layers = [m for m in model.modules() if isinstance(m, torch.nn.Linear | TransposedLinear)]
    inputs = [torch.randn(rows, m.in_features if isinstance(m, torch.nn.Linear) else m.weight_t.shape[0])
              for m in layers]

    def products():
        for m, x in zip(layers, inputs):
            m(x)

    return timed(products, 200)


OP_GROUPS = {  # profiler op name fragments -> group
    "matrix products": ("addmm", "aten::mm", "aten::linear", "aten::matmul", "aten::bmm"),
    "attention": ("scaled_dot_product", "_flash_attention", "aten::_softmax", "attention"),
    "cache writes (index_put)": ("index_put", "aten::index"),
    "norms and activations": ("layer_norm", "gelu", "aten::add", "aten::mul", "aten::tanh"),
}


def profile_groups(step, reps: int) -> dict[str, Any]:
    from torch.profiler import ProfilerActivity, profile

    step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(reps):
            step()
    groups: dict[str, float] = {g: 0.0 for g in OP_GROUPS} | {"other": 0.0}
    ops = []
    for ev in prof.key_averages():
        self_us = ev.self_cpu_time_total / reps
        if self_us <= 0:
            continue
        ops.append((ev.key, self_us, ev.count // reps))
        name = ev.key.lower()
        group = next((g for g, keys in OP_GROUPS.items() if any(k in name for k in keys)), "other")
        groups[group] += self_us
    total = sum(groups.values())
    top = sorted(ops, key=lambda o: -o[1])[:12]
    return {"self_cpu_ms_per_step": {g: v / 1000 for g, v in groups.items()}, "total_ms": total / 1000,
            "share": {g: v / total for g, v in groups.items()},
            "top_ops": [{"op": k, "self_ms": us / 1000, "calls_per_step": c} for k, us, c in top],
            "note": "profiler self CPU time, which includes the profiler's own per-op overhead"}


def sampling_variants(model) -> dict[str, Any]:
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(BATCH, model.vocab_size, generator=g) * 3
    rngs = [torch.Generator().manual_seed(i) for i in range(BATCH)]
    penalised = SamplingParams(max_tokens=128, temperature=0.8, presence_penalty=0.5)
    counts = [penalty_counts(penalised, [1, 2, 3], 1, model.vocab_size, logits.device) for _ in range(BATCH)]
    one_rng = torch.Generator().manual_seed(0)

    def per_row():
        for r in range(BATCH):
            sample_step(logits[r:r + 1], PARAMS, None, rngs[r])

    def per_row_penalties():
        for r in range(BATCH):
            sample_step(logits[r:r + 1], penalised, counts[r], rngs[r])

    def batched():
        sample_step(logits, PARAMS, None, one_rng)

    return {"per_row_16": per_row, "per_row_16_with_penalties": per_row_penalties, "batched_16": batched}


def engine_step_parts(model, n: int, max_tokens: int) -> dict[str, float]:
    """The real ``BatchEngine`` with ``n`` requests: median seconds of one step while all ``n`` rows are in
    the batch (between two tokens of request 0), and of its parts as the engine ran them: the model's
    ``step_rows`` and the ``n`` per-row ``_emit`` calls (sampling and the token callback)."""
    engine = BatchEngine(model, max_batch=BATCH)
    times: list[list[float]] = [[] for _ in range(n)]
    forward: list[tuple[float, float]] = []  # (end time, seconds) of each step_rows call with n rows
    emits: list[tuple[float, float]] = []
    step_rows, emit = model.step_rows, engine._emit

    def timed_step_rows(ids, state, lengths):
        t = time.perf_counter()
        out = step_rows(ids, state, lengths)
        if ids.shape[0] == n:
            forward.append((time.perf_counter(), time.perf_counter() - t))
        return out

    def timed_emit(req, logits):
        t = time.perf_counter()
        emit(req, logits)
        emits.append((time.perf_counter(), time.perf_counter() - t))

    done = threading.Semaphore(0)
    if n > 1:  # the lone row runs the plain cached step; time only the batched path's forward
        model.step_rows = timed_step_rows
    engine._emit = timed_emit
    engine.start()
    try:
        for i in range(n):
            p = SamplingParams(max_tokens=max_tokens, temperature=0.8, seed=i)
            engine.submit(EngineRequest([1 + i % 5, 2, 3], p,
                                        on_token=lambda t, lp, top, i=i: times[i].append(time.perf_counter()),
                                        on_done=lambda r, e: done.release()))
        for _ in range(n):
            assert done.acquire(timeout=300), "the engine did not finish"
    finally:
        engine.stop()
        if n > 1:
            del model.step_rows  # back to the class's method
    start, end = max(ts[0] for ts in times), min(ts[-1] for ts in times)  # every row admitted, none left
    ts = [t for t in times[0] if start <= t <= end]
    parts = {"step": median([b - a for a, b in zip(ts, ts[1:])])}
    if n > 1:
        parts["forward"] = median([s for t, s in forward if start < t <= end])
    # the emits of one step: all n rows' calls between two tokens of request 0
    per_step = [sum(s for t, s in emits if a < t <= b) for a, b in zip(ts, ts[1:])]
    parts["emit"] = median(per_step)
    return parts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--smoke", action="store_true", help="seconds: one round, few repetitions, results/smoke/")
    ap.add_argument("--out-dir", help="results folder (default benchmarks/results, or results/smoke with --smoke)")
    args = ap.parse_args()
    if args.smoke:
        args.rounds = 1
    torch.set_num_threads(args.threads)
    reps = 5 if args.smoke else 60
    tm = genforge.load(MODEL)
    model = tm.model
    torch.inference_mode().__enter__()

    fwd, smp = forward_variants(model), sampling_variants(model)
    engine_keys = ["engine_1", "engine_1_emit", "engine_16", "engine_16_forward", "engine_16_emit"]
    raw: dict[str, list[float]] = {k: [] for k in [*fwd, *smp, "matmul_floor_1", "matmul_floor_16", *engine_keys]}
    loads = []
    for _ in range(args.rounds):  # variants alternate within each round
        for name, fn in fwd.items():
            raw[name].append(timed(fn, reps))
        raw["matmul_floor_1"].append(matmul_floor(model, 1))
        raw["matmul_floor_16"].append(matmul_floor(model, BATCH))
        for name, fn in smp.items():
            raw[name].append(timed(fn, reps))
        for n in (1, BATCH):
            for part, seconds in engine_step_parts(model, n, ENGINE_TOKENS).items():
                raw[f"engine_{n}" if part == "step" else f"engine_{n}_{part}"].append(seconds)
        loads.append(os.getloadavg()[0])
    ms = {k: median(v) * 1000 for k, v in raw.items()}
    prof = profile_groups(fwd["batch16_ragged"], reps)

    e16, f16, alone = ms["engine_16"], ms["engine_16_forward"], ms["batch16_ragged"]
    floor, attn = ms["matmul_floor_16"], ms["attention_only_16_ragged"]
    breakdown = {  # one engine step at 16 rows: the forward and the emits as the engine ran them
        "forward (step_rows, in the engine)": f16,
        "sampling and token callbacks (16 _emit calls, in the engine)": ms["engine_16_emit"],
        "engine loop: retire, lengths, the next ids (the rest)": e16 - f16 - ms["engine_16_emit"],
    }
    forward_parts = {  # the same forward alone, taken apart (shares of it; the parts timed separately)
        "forward alone (step_rows, ragged rows)": alone,
        "matrix products (every linear layer once, alone)": floor,
        "attention over the rows' caches (every layer, alone)": attn,
        "norms, activations, adds, cache writes, masks, module calls (the rest)": alone - floor - attn,
    }
    result = {
        "config": {"model": MODEL, "threads": args.threads, "rounds": args.rounds, "reps_per_timing": reps,
                   "batch": BATCH, "params": {"temperature": PARAMS.temperature},
                   "parameters": sum(p.numel() for p in model.parameters()), "smoke": args.smoke},
        "median_ms": ms,
        "raw_s": raw,
        "loadavg_1min_per_round": loads,
        "step_16_vs_1": {"engine": e16 / ms["engine_1"], "forward": f16 / ms["batch1"],
                         "matrix_products": floor / ms["matmul_floor_1"]},
        "breakdown_ms_engine_step_16": breakdown,
        "breakdown_ms_forward_16": forward_parts,
        "sampling_per_row_vs_batched": ms["per_row_16"] / ms["batched_16"],
        "profile_batch16_ragged": prof,
    }
    out_dir = Path(args.out_dir) if args.out_dir else (RESULTS / "smoke" if args.smoke else RESULTS)
    out = write_result("engine_step", result, out_dir)
    print(f"engine step: batch 1 {ms['engine_1']:.2f} ms, batch 16 {e16:.2f} ms ({e16 / ms['engine_1']:.1f}x)")
    for k, v in [*breakdown.items(), *forward_parts.items()]:
        print(f"  {k:75s} {v:6.2f} ms")
    print(f"  forward: batch 1 {ms['batch1']:.2f} ms (matrix products {ms['matmul_floor_1']:.2f}); batch 16 "
          f"ragged {alone:.2f} ms, equal lengths without a mask {ms['batch16_equal_unmasked']:.2f} ms")
    print(f"  sampling 16 rows: per row {ms['per_row_16']:.2f} ms (with penalties "
          f"{ms['per_row_16_with_penalties']:.2f}), batched {ms['batched_16']:.2f} ms")
    print("  profile (self CPU ms):", {k: round(v, 2) for k, v in prof["self_cpu_ms_per_step"].items()})
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
