"""RL fine-tuning (``[task] kind = "rl"``): the core's math, the rewards, and the task run by fit().

Properties: a padded forward pass gives the same sequence log-likelihoods as the token loop that sampled
the sequences; REINVENT's loss has zero gradient at the prior with zero reward and raises the likelihood
of a rewarded sequence; RL from a tiny prior trained here raises the mean reward; resume equals the
uninterrupted run bit for bit (weights, optimizer, sampler, replay memory, diversity filter, metrics);
a reward that raises or returns NaN is one line naming the function and the molecule (or a counted
skip); an unimportable reward is a ConfigError naming it; ``genforge rl`` refuses a non-RL recipe.
DPO: its loss is log 2 at the prior and a gradient step widens the chosen-over-rejected margin; pairs
drop ties; a DPO run builds its pairs once (reread on resume, which equals the uninterrupted run) and
moves the agent's likelihood toward the chosen samples.
"""
from __future__ import annotations

import copy
import csv
import io
import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from genforge.checkpoint import list_checkpoints, read_meta
from genforge.config import RunConfig
from genforge.errors import ConfigError, GenforgeError
from genforge.models import build_model
from genforge.train import rewards as R
from genforge.train.fit import fit
from genforge.train.rl_core import (
    DiversityFilter,
    Replay,
    augmented_likelihood_loss,
    collate,
    dpo_loss,
    group_advantages,
    grpo_loss,
    preference_pairs,
    token_logps,
)

TINY = {"rnn": {"vocab_size": 12, "n_layer": 1, "n_embd": 8, "hidden": 16},
        "transformer": {"vocab_size": 12, "n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 32}}


@pytest.fixture(scope="module")
def prior(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SMILES LSTM trained for a few seconds on 2,000 MOSES test molecules (~10% valid samples)."""
    from genforge.data.molecules import moses_smiles

    root = tmp_path_factory.mktemp("prior")
    src = root / "mols.smi"
    src.write_text("\n".join(moses_smiles("test")[:2000]) + "\n")
    cfg = RunConfig.from_dict({
        "model": {"kind": "rnn", "cell": "lstm", "n_layer": 1, "n_embd": 32, "hidden": 96, "block_size": 64},
        "codec": {"kind": "smiles"}, "data": {"corpus": str(src), "val_fraction": 0.05},
        "train": {"out_dir": str(root / "run"), "max_steps": 200, "batch_size": 16, "lr": 1e-2, "min_lr": 1e-3,
                  "warmup_steps": 5, "eval_interval": 200, "eval_steps": 1, "log_interval": 100, "progress": False,
                  "precision": "fp32", "device": "cpu", "seed": 1, "weight_decay": 0.0}})
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GENFORGE_HOME", str(root / "home"))
        fit(cfg)
    return root / "run"


def rl_recipe(out: Path, prior: Path, steps: int, **task) -> RunConfig:
    return RunConfig.from_dict({
        "task": {"kind": "rl", "prior": str(prior), "reward": "genforge.train.rewards:qed", **task},
        "train": {"out_dir": str(out), "max_steps": steps, "batch_size": 16, "lr": 1e-3, "min_lr": 1e-3,
                  "warmup_steps": 0, "weight_decay": 0.0, "eval_interval": 100, "log_interval": 1, "progress": False,
                  "precision": "fp32", "device": "cpu", "seed": 7, "keep_checkpoints": 5}})


def logged(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


# --- the core -------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["rnn", "transformer"])
def test_padded_sequence_logp_equals_the_token_loop(kind: str):
    from genforge.sampling.tokens import sample_tokens
    from genforge.types import SamplingParams

    torch.manual_seed(0)
    model = build_model(kind, TINY[kind]).eval()
    prompt, eos, rows = [1, 5], 2, 6
    seqs, sums = [[] for _ in range(rows)], [0.0] * rows
    done = [False] * rows
    for tokens, logprobs in sample_tokens(model, prompt, SamplingParams(max_tokens=20, temperature=1.0),
                                          torch.Generator().manual_seed(3), rows):
        for r in range(rows):
            if not done[r]:
                seqs[r].append(int(tokens[r]))
                sums[r] += float(logprobs[r])
                done[r] = int(tokens[r]) == eos
    assert len({len(s) for s in seqs}) > 1 and any(done)  # rows of different lengths: real padding
    ids, mask = collate(prompt, seqs, pad_id=0)
    with torch.no_grad():
        got = (token_logps(model, ids) * mask).sum(-1)
        short = torch.tensor([len(s) < max(map(len, seqs)) for s in seqs])
        ids[short, -1] = 7  # other padding: the masked sum must not change
        again = (token_logps(model, ids) * mask).sum(-1)
    assert got.tolist() == pytest.approx(sums, abs=1e-4)
    assert torch.equal(got, again)


def test_augmented_likelihood_is_flat_at_the_prior_and_pulls_rewarded_sequences_up():
    torch.manual_seed(0)
    agent = build_model("rnn", TINY["rnn"])
    prior = copy.deepcopy(agent).requires_grad_(False)
    ids, mask = collate([1], [[3, 4, 2], [5, 2], [6, 7, 8, 9]], pad_id=0)

    def loss(score: float) -> torch.Tensor:
        agent_ll = (token_logps(agent, ids) * mask).sum(-1)
        with torch.no_grad():
            prior_ll = (token_logps(prior, ids) * mask).sum(-1)
        return augmented_likelihood_loss(agent_ll, prior_ll, torch.full((3,), score), sigma=60.0).mean()

    zero = loss(0.0)
    zero.backward()
    assert float(zero.detach()) == 0.0 and all(float(p.grad.abs().max()) == 0.0 for p in agent.parameters())
    agent.zero_grad()
    before = (token_logps(agent, ids) * mask).sum(-1).detach()
    loss(1.0).backward()
    with torch.no_grad():
        for p in agent.parameters():
            p -= 1e-3 * p.grad
    after = (token_logps(agent, ids) * mask).sum(-1).detach()
    assert bool((after > before).all())
    # GRPO: equal rewards give zero advantages, and the KL penalty is flat at the prior
    adv = group_advantages(torch.full((3,), 0.5), torch.ones(3))
    assert adv.abs().max() == 0
    lp = token_logps(agent, ids)
    g = grpo_loss(lp, lp.detach(), mask, adv, kl_coef=0.04).sum()
    grads = torch.autograd.grad(g, list(agent.parameters()))
    assert float(g.detach()) == 0.0 and all(x.abs().max() == 0 for x in grads)


def test_dpo_loss_is_log2_at_the_prior_and_a_step_widens_the_margin():
    torch.manual_seed(0)
    agent = build_model("transformer", TINY["transformer"])
    prior = copy.deepcopy(agent).requires_grad_(False)
    pairs = preference_pairs([[3, 4, 2], [5, 2], [6, 7], [6, 7], [8, 9, 2], [10]], [0.9, 0.1, 0.5, 0.5, 0.2, 0.7])
    assert [p["chosen"] for p in pairs] == [[3, 4, 2], [10]] and [p["rejected"] for p in pairs] == [[5, 2], [8, 9, 2]]
    ids, mask = collate([1], [q for p in pairs for q in (p["chosen"], p["rejected"])], pad_id=0)
    with torch.no_grad():
        prior_ll = (token_logps(prior, ids) * mask).sum(-1).view(-1, 2)

    def margin() -> torch.Tensor:
        return dpo_loss((token_logps(agent, ids) * mask).sum(-1).view(-1, 2), prior_ll, beta=0.1)

    loss, m = margin()
    assert loss.detach().tolist() == pytest.approx([math.log(2)] * 2, abs=1e-6) and m.abs().max() < 1e-6
    loss.mean().backward()
    with torch.no_grad():
        for p in agent.parameters():
            p -= 0.05 * p.grad
    assert bool((margin()[1] > 0).all())


def test_diversity_filter_and_replay():
    f = DiversityFilter("scaffold", bucket_size=2, min_score=0.4)
    got = f.apply(["a", "b", "a", "c", "d", None], ["s", "s", "s", "s", "t", None], [0.9, 0.5, 0.9, 0.8, 0.3, 0.0])
    assert got == [0.9, 0.5, 0.0, 0.0, 0.3, 0.0]  # repeat -> 0; the third of bucket s -> 0; below min_score kept
    ident = DiversityFilter("identical", 2, 0.4)
    assert ident.apply(["a", "a", "b"], [None] * 3, [0.5, 0.5, 0.1]) == [0.5, 0.0, 0.1]
    mem = Replay(2)
    mem.add([(0.2, "x", [3]), (0.9, "y", [4]), (0.0, "z", [5]), (0.5, "w", [6]), (0.95, "y", [7])])
    assert [e[1] for e in mem.items] == ["y", "w"]  # best two distinct, score > 0, the first copy kept
    pick = mem.sample(5, torch.Generator().manual_seed(0))
    assert sorted(e[1] for e in pick) == ["w", "y"]


# --- rewards ----------------------------------------------------------------------------------------
def test_builtin_rewards_are_in_range_and_compose():
    mols = [R.CELECOXIB, "CCO", "c1ccccc1O", "not a smiles", ""]
    for fn in (R.qed, R.sa, R.celecoxib_similarity, R.qed_logp, R.logp_window(2, 3), R.substructure(["c1ccccc1"])):
        vals = fn(mols)
        assert len(vals) == 5 and all(0.0 <= v <= 1.0 for v in vals) and vals[3] == vals[4] == 0.0
    assert R.celecoxib_similarity([R.CELECOXIB])[0] == pytest.approx(1.0)
    assert R.substructure(required=["[OX2H]"], forbidden=["c1ccccc1"])(["CCO", "c1ccccc1O"]) == [1.0, 0.0]
    assert R.logp_window(-10, 10)(["CCO"]) == [1.0]
    prod = R.weighted_product([(R.qed, 1.0), (R.substructure(["N"]), 1.0)])
    assert prod(["CCO"]) == [0.0]  # any goal at 0 zeroes a product
    mean = R.combine([{"reward": "genforge.train.rewards:qed"},
                      {"reward": "genforge.train.rewards:substructure", "args": {"required": ["N"]}, "weight": 3}],
                     mode="mean")
    assert mean(["CCO"]) == pytest.approx([R.qed(["CCO"])[0] / 4])
    with pytest.raises(ConfigError, match="not a valid SMARTS"):
        R.substructure(required=["C(("])


def test_reward_problems_name_the_function_and_the_molecule(tmp_path: Path):
    f = tmp_path / "bad_rewards.py"
    f.write_text("def picky(smiles):\n"
                 "    if any('N' in s for s in smiles):\n"
                 "        raise ValueError('no nitrogen please')\n"
                 "    return [float('nan') if 'O' in s else 0.5 for s in smiles]\n")
    fn, name = R.load_reward(f"{f}:picky")
    values, problems = R.score_items(fn, name, ["CCC", "CCN", "CCO"])
    assert values == [0.5, None, None]
    assert "picky" in problems[0] and "ValueError: no nitrogen please" in problems[0] and "'CCN'" in problems[0]
    assert "returned nan for 'CCO'" in problems[1] and all("\n" not in p for p in problems)
    with pytest.raises(GenforgeError, match="returned 1 values for 2 items"):
        R.score_items(lambda s: [0.5], "short", ["C", "CC"])
    for spec, match in (("no_such_module_xyz:score", "cannot import 'no_such_module_xyz'"),
                        (f"{tmp_path}/missing.py:fn", "does not exist"),
                        ("genforge.train.rewards:nope", "has no attribute 'nope'"),
                        ("qed", "must look like")):
        with pytest.raises(ConfigError, match=match):
            R.load_reward(spec)


# --- the task, run by fit() -------------------------------------------------------------------------
def test_rl_raises_the_mean_reward(tmp_path: Path, prior: Path):
    import genforge

    run = fit(rl_recipe(tmp_path / "rl", prior, 30, diversity_filter="none", replay_batch=4)).out_dir
    rec = [r for r in logged(run) if "reward" in r]
    assert len(rec) == 30 and {"validity", "unique", "kl", "best_reward", "hits", "score"} <= set(rec[0])
    assert sum("intdiv" in r for r in rec) > 20  # where a step has two valid molecules
    first, last = (sum(r["reward"] for r in part) / 10 for part in (rec[:10], rec[-10:]))
    assert last > first + 0.05, (first, last)
    assert abs(rec[0]["kl"]) < 1e-4 < rec[-1]["kl"]  # step 1 samples the prior itself; then the agent moves away
    ckpt = list_checkpoints(run)[-1]
    assert (ckpt / "reward.png").is_file() and (ckpt / "best.csv").read_text().startswith("reward,item,step")
    assert read_meta(ckpt)["task"] == "rl" and read_meta(ckpt)["pipeline"] == "molecule"
    assert len(genforge.load(str(run)).sample(4, seed=0)) == 4  # an RL run is a molecule model


def test_resume_equals_the_uninterrupted_run(tmp_path: Path, prior: Path):
    task = {"diversity_filter": "scaffold", "bucket_size": 2, "min_score": 0.1, "replay_batch": 4}
    whole = fit(rl_recipe(tmp_path / "a", prior, 6, **task))
    fit(rl_recipe(tmp_path / "b", prior, 6, **task), stop_after=3)
    resumed = fit(rl_recipe(tmp_path / "b", prior, 6, **task), resume=True)
    for name in ("model.safetensors", "trainer.safetensors"):
        a, b = load_file(str(whole.checkpoint / name)), load_file(str(resumed.checkpoint / name))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    sa, sb = (read_meta(c.checkpoint)["trainer"]["rl_state"] for c in (whole, resumed))
    assert sa == sb and sa["replay"] and sa["filter"]["seen"]  # the memories were in use
    keep = [r for r in logged(tmp_path / "b") if not ("val_loss" in r and r["step"] == 3)]
    assert [{k: v for k, v in r.items() if k != "elapsed_s" and not k.endswith("_per_s")} for r in keep] == \
        [{k: v for k, v in r.items() if k != "elapsed_s" and not k.endswith("_per_s")} for r in logged(tmp_path / "a")]


def test_a_bad_reward_stops_in_one_line_or_is_a_counted_skip(tmp_path: Path, prior: Path):
    f = tmp_path / "nan_reward.py"
    f.write_text("def score(smiles):\n    return [float('nan') if len(s) % 2 else 0.5 for s in smiles]\n")
    with pytest.raises(GenforgeError, match=r"reward .*nan_reward.py:score returned nan for '[^']+'.*step \d") as e:
        fit(rl_recipe(tmp_path / "stop", prior, 10, reward=f"{f}:score", reward_errors="stop"))
    assert "\n" not in str(e.value)
    run = fit(rl_recipe(tmp_path / "skip", prior, 4, reward=f"{f}:score", method="grpo", replay_batch=0)).out_dir
    rec = [r for r in logged(run) if "reward" in r]
    assert rec[-1]["reward_skipped"] > 0 and all(math.isfinite(r["kl"]) for r in rec)
    with pytest.raises(ConfigError, match="cannot import 'no_such_rewards'"):
        fit(rl_recipe(tmp_path / "imp", prior, 2, reward="no_such_rewards:score"))
    with pytest.raises(ConfigError, match="replay_batch > 0 works with method = 'reinvent'"):
        fit(rl_recipe(tmp_path / "x", prior, 2, method="grpo"))  # replay_batch defaults to 10


def test_dpo_builds_pairs_once_resumes_exactly_and_prefers_the_chosen(tmp_path: Path, prior: Path):
    task = {"method": "dpo", "pairs": 24, "replay_batch": 0, "diversity_filter": "none", "eval_samples": 8}
    whole = fit(rl_recipe(tmp_path / "a", prior, 6, **task))
    pairs = [json.loads(x) for x in (tmp_path / "a" / "pairs.jsonl").read_text().splitlines()]
    assert pairs[0]["pairs"] == 24 and 0 < len(pairs) - 1 <= 24
    assert all(p["rewards"][0] > p["rewards"][1] for p in pairs[1:])
    fit(rl_recipe(tmp_path / "b", prior, 6, **task), stop_after=3)
    stamp = (tmp_path / "b" / "pairs.jsonl").stat().st_mtime_ns
    resumed = fit(rl_recipe(tmp_path / "b", prior, 6, **task), resume=True)
    assert (tmp_path / "b" / "pairs.jsonl").stat().st_mtime_ns == stamp  # reread, not rebuilt
    for name in ("model.safetensors", "trainer.safetensors"):
        a, b = load_file(str(whole.checkpoint / name)), load_file(str(resumed.checkpoint / name))
        assert all(torch.equal(a[k], b[k]) for k in a), name
    rec = [r for r in logged(tmp_path / "a") if "margin" in r]
    assert len(rec) == 6 and rec[0]["reward_evals"] == 48 and "kl" not in rec[0]
    assert rec[-1]["margin"] > rec[0]["margin"] and rec[-1]["pref_acc"] > 0.5  # the chosen pulled up
    assert read_meta(whole.checkpoint)["rl"]["method"] == "dpo"
    with pytest.raises(ConfigError, match="task.beta=0.0 is invalid"):
        fit(rl_recipe(tmp_path / "c", prior, 2, method="dpo", replay_batch=0, beta=0.0))
    with pytest.raises(ConfigError, match="replay_batch > 0 works with method = 'reinvent' only"):
        fit(rl_recipe(tmp_path / "c", prior, 2, method="dpo"))


def test_cli_rl_refuses_a_non_rl_recipe(tmp_path: Path, capsys: pytest.CaptureFixture):
    from genforge.cli import main

    recipe = tmp_path / "lm.toml"
    recipe.write_text('[train]\nout_dir = "runs/x"\n')
    assert main(["rl", str(recipe)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("genforge: error:") and "kind = 'lm'" in err and "genforge train" in err
    assert len(err.splitlines()) == 1


def test_rl_on_a_char_text_model(tmp_path: Path, make_config):
    """The same task on a char Transformer: items are text lines (prompt + continuation up to "\\n")."""
    prior = fit(make_config(max_steps=30, eval_interval=30)).out_dir
    f = tmp_path / "text_rewards.py"
    f.write_text("def vowels(texts):\n    return [sum(c in 'aeiou' for c in t) / max(1, len(t)) for t in texts]\n")
    run = fit(RunConfig.from_dict({
        "task": {"kind": "rl", "prior": str(prior), "reward": f"{f}:vowels", "prompt": "ROMEO:\n", "max_tokens": 20,
                 "replay_batch": 2, "diversity_filter": "identical"},
        "train": {"out_dir": str(tmp_path / "rl"), "max_steps": 3, "batch_size": 8, "lr": 1e-3, "min_lr": 1e-3,
                  "warmup_steps": 0, "log_interval": 1, "eval_interval": 3, "progress": False, "device": "cpu",
                  "precision": "fp32"}})).out_dir
    rec = [r for r in logged(run) if "reward" in r]
    assert len(rec) == 3 and all(r["validity"] == 1.0 and "intdiv" not in r for r in rec)
    best = list(csv.DictReader(io.StringIO((list_checkpoints(run)[-1] / "best.csv").read_text())))
    assert best and all(row["item"].startswith("ROMEO:\n") for row in best)
    assert [float(r["reward"]) for r in best] == sorted((float(r["reward"]) for r in best), reverse=True)
    assert read_meta(list_checkpoints(run)[-1])["pipeline"] == "text"
