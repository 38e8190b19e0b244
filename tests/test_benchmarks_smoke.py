"""The generate-speed and train-quality benchmarks run end to end in their smoke modes and write
well-formed results.

Speed is not asserted (shared CI machines); only that the scripts work and their JSON has the
fields the full benchmarks report, plus one property: trained on the nanoGPT reference's exact
batches from the same seed, our trainer ends where the reference does.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_benchmark_smoke

pytest.importorskip("transformers")



def test_generate_speed_smoke(tmp_path: Path) -> None:
    data = run_benchmark_smoke("generate_speed", tmp_path)

    for key in ("benchmark", "machine", "config", "raw_tokens_per_s", "median_tokens_per_s", "ratio_to_hf",
                "paired_ratios", "bandwidth", "weight_bytes", "bound_tokens_per_s", "fraction_of_bound",
                "fp32_vs_hf", "int8_vs_hf", "memory", "int8_perplexity", "targets"):
        assert key in data, key
    for key in ("platform", "python", "torch", "torch_threads", "cpu_model", "cpu_count"):
        assert key in data["machine"], key
    assert data["config"]["smoke"] is True
    assert data["config"]["n_layer"] == 2 and data["config"]["new_tokens"] == 8
    for variant in ("hf", "fp32", "int8"):
        runs = data["raw_tokens_per_s"][variant]
        assert len(runs) == data["config"]["rounds"] and all(r > 0 for r in runs)
        assert data["median_tokens_per_s"][variant] > 0
        assert data["bound_tokens_per_s"][variant] > 0
        assert data["weight_bytes"][variant]["per_token"] > 0
    assert set(data["ratio_to_hf"]) == {"fp32", "int8"}
    assert data["bandwidth"]["gbs"] > 0
    # int8 stores about a quarter of fp32's bytes; fp32 matches HF's parameter bytes exactly
    assert data["weight_bytes"]["fp32"]["per_token"] == data["weight_bytes"]["hf"]["per_token"]
    assert data["weight_bytes"]["int8"]["per_token"] < 0.4 * data["weight_bytes"]["fp32"]["per_token"]
    assert isinstance(data["fp32_vs_hf"]["identical_tokens"], bool)
    assert 0 <= data["int8_vs_hf"]["agree_positions"] <= 8
    assert "fp32_ratio" in data["targets"] and "int8_ratio" in data["targets"]


def test_train_quality_smoke_and_our_trainer_matches_nanogpt_on_its_batches(tmp_path: Path, corpus: Path) -> None:
    big = tmp_path / "corpus-big.txt"  # 20 eval batches of 12 x 64 need a val split of a few KB
    big.write_text(corpus.read_text() * 3)
    data = run_benchmark_smoke("train_quality", tmp_path / "out", "--corpus", str(big))
    sp = data["train_speed"]
    assert min(sp["tokens_per_s"][k] for k in ("ours", "ours_rope_relu2", "hf", "hf_exact_gelu")) > 0
    q = data["quality"]
    assert q["steps"] == 30 and q["seeds"] == [1]
    for k in ("nanogpt", "ours", "ours_learned", "best"):
        (run,) = q[k]
        assert 0 < run["full_val_loss"] < 5 and run["wall_s"] > 0
        assert q[f"{k}_summary"]["val_loss"]["n"] == 1
    ref, replay, own = q["nanogpt"][0], q["ours_on_nanogpt_batches"], q["ours_learned"][0]
    assert ref["full_val_loss"] < ref["val_curve"]["0"] - 0.5  # 30 steps of real learning happened
    # same seed -> same initial weights; same batches -> the same model, up to float rounding
    assert abs(q["replay_full_val_diff"]) < 2e-3, q["replay_full_val_diff"]
    assert replay["full_val_loss"] != own["full_val_loss"]  # the replay really used other batches
    assert [r["steps"] for r in q["best"]] == [30] and 0 < q["best"][0]["full_val_loss"] < 5
