"""The serve-load and engine-step benchmarks run end to end in their smoke modes and write well-formed results.

Speed is not asserted (shared CI machines); only that the script starts and stops its server, drives
it, and that its JSON has the fields the full benchmark reports.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_benchmark_smoke


def test_serve_load_smoke(tmp_path: Path) -> None:
    data = run_benchmark_smoke("serve_load", tmp_path, timeout=240)

    for key in ("benchmark", "time", "machine", "config", "levels", "scaling", "overhead", "targets"):
        assert key in data, key
    for key in ("platform", "python", "torch", "torch_threads", "cpu_model", "cpu_count"):
        assert key in data["machine"], key
    cfg = data["config"]
    assert cfg["smoke"] is True and cfg["levels"] == [1, 2] and cfg["max_tokens"] == 8 and cfg["threads"] >= 1
    for n in ("1", "2"):
        lv = data["levels"][n]
        assert lv["streams"] == int(n) and len(lv["waves"]) == cfg["waves"]
        assert lv["tokens"] == int(n) * cfg["waves"] * 8  # every stream ran to max_tokens
        assert lv["tokens_match_chunks"] is True  # usage agrees with the SSE chunks (char-level model)
        assert lv["tokens_per_s"] > 0 and 0 < lv["ttft_p50_s"] <= lv["ttft_p95_s"]
        assert len(lv["waves"][0]["ttft_s"]) == int(n)
    assert data["scaling"]["from"] == 1 and data["scaling"]["to"] == 2 and data["scaling"]["ratio"] > 0
    over = data["overhead"]
    assert len(over["ratios"]) == cfg["rounds"] == 2
    assert all(x > 0 for side in ("server", "in_process") for x in over["raw_tokens_per_s"][side])
    assert over["median_ratio"] > 0
    assert set(data["targets"]) == {"ratio_16_vs_1", "overhead_ratio"}
    assert all(isinstance(t["met"], bool) and t["target"] > 0 for t in data["targets"].values())


def test_engine_step_smoke(tmp_path: Path) -> None:
    data = run_benchmark_smoke("engine_step", tmp_path, timeout=240)
    assert data["config"]["smoke"] is True and data["config"]["batch"] == 16
    ms = data["median_ms"]
    assert all(v > 0 for v in ms.values()), ms
    # the parts were timed inside the real engine's 16-row steps: each is part of the step it was in
    assert ms["engine_16_forward"] < ms["engine_16"] and ms["engine_16_emit"] < ms["engine_16"]
    step = data["breakdown_ms_engine_step_16"]
    assert sum(step.values()) == pytest.approx(ms["engine_16"])
    fwd = data["breakdown_ms_forward_16"]
    assert fwd["forward alone (step_rows, ragged rows)"] == pytest.approx(ms["batch16_ragged"])
    assert data["step_16_vs_1"]["engine"] == pytest.approx(ms["engine_16"] / ms["engine_1"])
    prof = data["profile_batch16_ragged"]
    assert prof["self_cpu_ms_per_step"]["matrix products"] > 0 and prof["top_ops"]
