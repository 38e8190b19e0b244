"""Reinforcement learning from a reward, for any token model (``[task] kind = "rl"``; ``genforge rl CONFIG``).

A trained prior is copied into an *agent*; each step the agent samples ``train.batch_size`` sequences
(the shared token loop, ``sampling.tokens.sample_sequences``), a reward function ``list[str] ->
list[float]`` in [0, 1] scores their decoded items (``train.rewards``), and one gradient step moves
the agent toward high reward while a frozen copy of the prior anchors it:

* ``method = "reinvent"``: REINVENT's augmented likelihood (Olivecrona et al. 2017, "Molecular de-novo
  design through deep reinforcement learning"): loss = (log P_prior(A) + sigma * S(A) - log P_agent(A))^2,
  averaged over the sequences A. sigma = 60 as in that paper's code (REINVENT 2-4 default to 128
  with a 5x smaller learning rate).
* ``method = "grpo"``: group-relative advantages (Shao et al. 2024, "DeepSeekMath", GRPO): A_i =
  (r_i - mean r) / std r over the step's samples (one prompt, one group), loss = -A_i * mean_t log
  pi(a_t) + kl_coef * mean_t k3(t), k3 = exp(d) - d - 1 with d = log P_prior - log P_agent per token
  (Schulman's unbiased KL estimator, as GRPO uses). One update per batch, so the PPO ratio is 1.
* ``method = "dpo"``: direct preference optimisation (Rafailov et al. 2023) on pairs built offline before
  the first step: the prior samples two rollouts per pair (``pairs`` pairs, so 2 x ``pairs`` reward
  calls), the higher reward is chosen (ties dropped), and the pairs are kept in pairs.jsonl beside the
  checkpoints. Each step takes ``train.batch_size`` pairs at random: loss = -log sigmoid(beta *
  (log-ratio chosen - log-ratio rejected)), log-ratio = log P_agent - log P_prior of the whole rollout.

A *diversity filter* (Blaschke et al. 2020, "Memory-assisted reinforcement learning for diverse
molecular de novo design") zeroes the reward of items already rewarded before (``identical``) and,
with ``scaffold``, of items whose bucket (Murcko scaffold) already holds ``bucket_size`` items scoring
>= ``min_score``. *Experience replay* (Olivecrona et al. 2017; REINVENT's "inception") keeps the
``replay_size`` best items and adds ``replay_batch`` of them, drawn in proportion to their score, to
each step's loss. The machinery is token-level: items, validity, buckets and diversity come from a
domain plug-in chosen by the prior's codec (``rewards.MoleculeDomain`` for SMILES, ``TextDomain`` else).

Every step logs reward (mean raw reward of the step's samples), score (after the filter), best reward,
validity, unique (unique valid / valid), IntDiv and KL (mean log P_agent - log P_prior per sequence, a
Monte Carlo estimate of KL(agent || prior) in nats) to metrics.jsonl every ``train.log_interval``
steps. The run stops with one line when the samples collapse (validity or uniqueness below the
task's thresholds for ``collapse_patience`` steps in a row). The sampler's generator, replay memory
and filter are checkpointed, so resume is exact. Each checkpoint carries reward.png and best.csv.
"""
from __future__ import annotations

import csv
import importlib
import io
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ...config import RunConfig, from_dict
from ...errors import ConfigError, GenforgeError
from .. import runtime as rtm
from ..rl_core import (
    DiversityFilter,
    Replay,
    TextDomain,
    augmented_likelihood_loss,
    collate,
    dpo_loss,
    group_advantages,
    grpo_loss,
    plot_rewards,
    preference_pairs,
    token_logps,
)
from . import Batch, Phase

METHODS, FILTERS, ON_ERROR = ("reinvent", "grpo", "dpo"), ("none", "identical", "scaffold"), ("skip", "stop")
DOMAINS = {"smiles": "genforge.train.rewards:MoleculeDomain"}  # codec kind -> plug-in; others: TextDomain


@dataclass(frozen=True)
class RLTaskConfig:
    """The ``[task]`` section of an RL recipe (besides ``kind``)."""

    prior: str = ""  # the model to start from and stay near: a bundled name ("moses-smiles") or a folder
    reward: str = ""  # "package.module:function" or "path/to/file.py:function", list[str] -> list[float] in [0, 1]
    reward_args: dict[str, Any] = field(default_factory=dict)  # given: ``reward`` is a factory called with these
    method: str = "reinvent"  # "reinvent" (augmented likelihood), "grpo" (group advantages + KL) or "dpo"
    sigma: float = 60.0  # reinvent: the reward's weight in the augmented likelihood
    kl_coef: float = 0.04  # grpo: the KL penalty's weight (DeepSeekMath's 0.04)
    beta: float = 0.1  # dpo: the preference loss's inverse temperature (the DPO paper's 0.1)
    pairs: int = 2048  # dpo: preference pairs sampled from the prior before training (2 reward calls each)
    temperature: float = 1.0  # sampling temperature of the rollouts
    max_tokens: int = 120  # tokens per rollout at most (and what fits the prior's context)
    prompt: str = ""  # what every rollout continues: a SMILES fragment ("" = from scratch) or text
    end: str = "\n"  # text codecs without an end token: the token that ends a rollout
    unique_sequences: bool = True  # a token sequence sampled twice in a step counts once (as REINVENT)
    replay_size: int = 100  # experience replay: the best items kept
    replay_batch: int = 10  # replayed items added to each step's loss (0 = off; reinvent only)
    diversity_filter: str = "scaffold"  # "none", "identical" (a rewarded item scores 0 after), "scaffold"
    bucket_size: int = 25  # scaffold filter: items per bucket before its later members score 0
    min_score: float = 0.4  # filter: items scoring at least this enter its memory
    reward_threshold: float = 0.8  # "hits": the share of unique valid items scoring at least this is logged
    reward_errors: str = "skip"  # a reward that raises / returns NaN or out of range: "skip" the item or "stop"
    eval_samples: int = 128  # items sampled (fixed seed) at each evaluation
    collapse_min_validity: float = 0.2  # mode collapse: validity below this ...
    collapse_min_unique: float = 0.2  # ... or uniqueness below this ...
    collapse_patience: int = 20  # ... for this many steps in a row
    stop_on_collapse: bool = True  # then stop with one line (the last checkpoint is kept); false: warn
    top_n: int = 100  # best items written to best.csv beside each checkpoint

    def __post_init__(self) -> None:
        if not self.prior.strip():
            raise ConfigError('task.prior is empty: name the trained model to start from, e.g. "moses-smiles"')
        if not self.reward.strip():
            raise ConfigError('task.reward is empty: e.g. "genforge.train.rewards:qed" or "my_rewards.py:score"')
        checks = (("method", self.method in METHODS, ", ".join(METHODS)),
                  ("diversity_filter", self.diversity_filter in FILTERS, ", ".join(FILTERS)),
                  ("reward_errors", self.reward_errors in ON_ERROR, ", ".join(ON_ERROR)),
                  ("sigma", 0 < self.sigma <= 1e4, "0 < sigma <= 10000"),
                  ("kl_coef", 0 <= self.kl_coef <= 100, "0 .. 100"), ("beta", 0 < self.beta <= 100, "0 < beta <= 100"),
                  ("pairs", 1 <= self.pairs <= 10_000_000, "1 .. 10000000"),
                  ("temperature", 0.05 <= self.temperature <= 10, "0.05 .. 10"),
                  ("max_tokens", self.max_tokens >= 1, "an integer >= 1"),
                  ("replay_size", self.replay_size >= 0, ">= 0"),
                  ("replay_batch", 0 <= self.replay_batch <= self.replay_size, "0 .. replay_size"),
                  ("bucket_size", self.bucket_size >= 1, ">= 1"), ("min_score", 0 <= self.min_score <= 1, "0 .. 1"),
                  ("reward_threshold", 0 <= self.reward_threshold <= 1, "0 .. 1"),
                  ("eval_samples", 2 <= self.eval_samples <= 100_000, "2 .. 100000"),
                  ("collapse_min_validity", 0 <= self.collapse_min_validity <= 1, "0 .. 1"),
                  ("collapse_min_unique", 0 <= self.collapse_min_unique <= 1, "0 .. 1"),
                  ("collapse_patience", self.collapse_patience >= 1, ">= 1"), ("top_n", self.top_n >= 1, ">= 1"))
        for name, ok, allowed in checks:
            v = getattr(self, name)
            if not ok or (isinstance(v, float) and not math.isfinite(v)):
                raise ConfigError(f"task.{name}={v!r} is invalid: allowed {allowed}")
        if self.method != "reinvent" and self.replay_batch:
            raise ConfigError(f"task.replay_batch > 0 works with method = 'reinvent' only ({self.method} has no "
                              "replay): set 0")


# --- the task ----------------------------------------------------------------------------------------------
class RLTask:
    kind = "rl"
    throughput_unit = "samples"

    def __init__(self, cfg: RunConfig, rt: rtm.Runtime) -> None:
        self.cfg, self.rt = cfg, rt
        self.t = from_dict(RLTaskConfig, {k: v for k, v in cfg.task.items() if k != "kind"}, "task")

    def setup(self, out: Path, resume_meta: dict[str, Any] | None) -> None:
        from ...checkpoint import check_weights_fit_config, read_meta
        from ...codecs import codec_from_dict
        from ...store import resolve_model
        from ..rewards import load_reward

        cfg, t = self.cfg, self.t
        if self.rt.world_size > 1:
            raise ConfigError(f"RL trains in one process so far ({self.rt.world_size} were started): run it without "
                              "torchrun")
        if cfg.train.init_from:
            raise ConfigError("train.init_from does not apply to RL: the agent starts from task.prior; remove it")
        if set(cfg.model) - {"kind"}:
            raise ConfigError(f"[model] {sorted(set(cfg.model) - {'kind'})} does not apply to RL: the model is "
                              "task.prior's; remove the [model] section")
        self.reward, self.reward_name = load_reward(t.reward, t.reward_args or None)
        self.prior_path = resolve_model(t.prior)
        self.prior_meta = read_meta(self.prior_path)
        check_weights_fit_config(self.prior_path, self.prior_meta)
        self.prior_sha = self.prior_meta.get("files", {}).get("model.safetensors", "")
        if resume_meta is not None and resume_meta.get("rl", {}).get("prior_sha256") != self.prior_sha:
            raise ConfigError(f"task.prior {t.prior!r} holds other weights than the run started from: resume with the "
                              "same prior")
        self.codec = codec_from_dict(self.prior_meta["codec"])
        module, _, attr = DOMAINS.get(self.codec.kind, "").partition(":")
        self.domain = (getattr(importlib.import_module(module), attr) if module else TextDomain)(self.codec)
        self.model_kind = self.prior_meta["model"]["kind"]
        self.fields = {k: v for k, v in self.prior_meta["model"].items() if k != "kind"}
        if "dropout" in self.fields:
            self.fields["dropout"] = 0.0  # likelihoods must not be noisy: the loss compares them
        self.prompt = self.codec.encode(t.prompt)
        if not self.prompt:
            raise ConfigError("task.prompt encodes to no tokens: a text prior needs at least one token to continue")
        self.eos_id = getattr(self.codec, "eos_id", None)
        if self.eos_id is None:
            end = self.codec.encode(t.end) if t.end else []
            self.eos_id = end[0] if len(end) == 1 else -1  # -1: rollouts run to max_tokens
        self.pad_id = getattr(self.codec, "pad_id", 0)
        self.prior = self._load_prior().to(self.rt.device).eval().requires_grad_(False)
        self.max_tokens = min(t.max_tokens, int(self.prior.max_len) - len(self.prompt))
        if self.max_tokens < 1:
            raise ConfigError(f"task.prompt has {len(self.prompt)} tokens and fills the prior's context")
        if t.replay_batch > self.cfg.train.batch_size:
            raise ConfigError(f"task.replay_batch={t.replay_batch} exceeds train.batch_size={cfg.train.batch_size}")
        self.out = out
        out.mkdir(parents=True, exist_ok=True)
        self.rng = torch.Generator().manual_seed(cfg.train.seed)
        self.filter = DiversityFilter(t.diversity_filter, t.bucket_size, t.min_score)
        self.replay = Replay(t.replay_size)
        self.s: dict[str, Any] = {"step": 0, "best": [], "acc": [], "low_run": 0, "skipped": 0, "warned": False,
                                  "evals": 0}
        self._agent_ll: list[Tensor] = []
        self.pairs = self._preference_pairs() if t.method == "dpo" else []

    def _load_prior(self) -> nn.Module:
        from ...checkpoint import load_tensors, load_weights
        from ...models import build_model

        model = build_model(self.model_kind, self.fields, init=False)
        load_weights(model, load_tensors(self.prior_path, "model.safetensors", self.prior_meta), self.prior_path)
        return model.float()

    def _preference_pairs(self) -> list[dict[str, Any]]:
        """DPO's pairs: read from pairs.jsonl when it holds this prior's and reward's, else sampled from the
        prior (a fixed seed), scored, and written there atomically."""
        from tqdm.auto import tqdm

        from ...atomic import atomic_write_text
        from ..rl_core import preference_pairs

        path, t = self.out / "pairs.jsonl", self.t
        head = {"prior_sha256": self.prior_sha, "reward": self.reward_name, "prompt": t.prompt, "pairs": t.pairs,
                "seed": self.cfg.train.seed, "temperature": t.temperature, "max_tokens": self.max_tokens}
        if path.is_file():
            lines = path.read_text().splitlines()
            if lines and json.loads(lines[0]) == head:
                return [json.loads(ln) for ln in lines[1:]]
        rng, out, chunk = torch.Generator().manual_seed(self.cfg.train.seed + 2), [], 2 * self.cfg.train.batch_size
        t0 = time.perf_counter()
        show = self.rt.is_main and self.cfg.train.progress
        bar = tqdm(total=2 * t.pairs, unit="sample", desc="pairs", disable=not show)
        for start in range(0, 2 * t.pairs, chunk):
            seqs = self._sample(self.prior, min(chunk, 2 * t.pairs - start), rng)
            items = [self.domain.decode(self.prompt + q) for q in seqs]
            raw, problems = self._score(items, self.domain.keys(items))
            self._report(problems)
            out += preference_pairs(seqs, raw)
            bar.update(len(seqs))
        bar.close()
        self.s["evals"] += 2 * t.pairs
        if not out:
            raise GenforgeError(f"the reward {self.reward_name} scored both samples of all {t.pairs} pairs alike: DPO "
                                "has nothing to prefer (check the reward, or raise task.temperature)")
        atomic_write_text(path, "\n".join(json.dumps(x) for x in [head, *out]) + "\n")
        self.s["pairs_built_s"] = round(time.perf_counter() - t0, 3)  # logged with every record
        return out

    def build_model(self) -> nn.Module:
        return self._load_prior()

    def optimizers(self, model: nn.Module, device: torch.device) -> list[torch.optim.Optimizer]:
        from ..optim import make_optimizers

        self.model = model
        return make_optimizers(model, self.cfg.train, device)

    def phases(self) -> list[Phase]:
        n = 2 if self.cfg.train.optimizer == "muon" else 1
        return [Phase(tuple(range(n)), self._loss)]

    # --- rollouts ----------------------------------------------------------------------------------
    def _sample(self, model: nn.Module, n: int, rng: torch.Generator) -> list[list[int]]:
        from ...sampling.tokens import sample_sequences
        from ...types import SamplingParams

        params = SamplingParams(max_tokens=self.max_tokens, temperature=self.t.temperature, top_k=0, top_p=1.0)
        was = model.training
        model.eval()
        try:
            return sample_sequences(model, self.prompt, n, params, self.eos_id, rng, batch_size=n)
        finally:
            model.train(was)

    def _score(self, items: list[str], keys: list[str | None]) -> tuple[list[float | None], list[str]]:
        """Rewards of the items (0 for invalid ones, which the reward never sees; None: skipped)."""
        from ..rewards import score_items

        live = [i for i, k in enumerate(keys) if k is not None]
        values, problems = score_items(self.reward, self.reward_name, [items[i] for i in live])
        out: list[float | None] = [0.0] * len(items)
        for i, v in zip(live, values):
            out[i] = v
        return out, problems

    def _report(self, problems: list[str]) -> None:
        if not problems:
            return
        if self.t.reward_errors == "stop":
            raise GenforgeError(f"{problems[0]} (step {self.s['step'] + 1}; set task.reward_errors = \"skip\" to skip "
                                "such items)")
        self.s["skipped"] += len(problems)
        if not self.s["warned"] and self.rt.is_main:
            print(f"genforge: warning: {problems[0]}; skipping such items (counted as reward_skipped)",
                  file=sys.stderr, flush=True)
            self.s["warned"] = True

    @torch.no_grad()
    def _prior_lp(self, ids: Tensor) -> Tensor:
        return token_logps(self.prior, ids.to(self.rt.device)).cpu()

    def next_batch(self, rank: int, world_size: int) -> Batch:
        """Sample, score, filter and replay: (ids, mask, prior log-probs, score, advantage, weight), each
        with a group dimension after the batch one: [fresh samples, replayed items (+ unused rows)]."""
        t, b = self.t, self.cfg.train.batch_size
        if t.method == "dpo":
            pick = [self.pairs[i] for i in torch.randint(len(self.pairs), (b,), generator=self.rng).tolist()]
            ids, mask = collate(self.prompt, [p["chosen"] for p in pick] + [p["rejected"] for p in pick], self.pad_id)
            sc = torch.tensor([p["rewards"][0] for p in pick] + [p["rewards"][1] for p in pick])
            self._pending = {}
            rows = (ids, mask, self._prior_lp(ids), sc, torch.zeros_like(sc), torch.full_like(sc, 1 / b))
            return tuple(x.view(2, b, *x.shape[1:]).transpose(0, 1).contiguous() for x in rows)
        seqs = self._sample(self.model, b, self.rng)
        self.s["evals"] += len(seqs)
        items = [self.domain.decode(self.prompt + s) for s in seqs]
        keys = self.domain.keys(items)
        raw, problems = self._score(items, keys)
        self._report(problems)
        buckets = (self.domain.buckets([k or "" for k in keys]) if t.diversity_filter == "scaffold"
                   else [None] * len(keys))
        score = self.filter.apply(keys, buckets, raw)
        weight = [0.0 if s is None else 1.0 for s in score]
        if t.unique_sequences:
            seen: set[tuple[int, ...]] = set()
            for i, s in enumerate(seqs):
                weight[i] = 0.0 if tuple(s) in seen else weight[i]
                seen.add(tuple(s))
        replayed = self.replay.sample(t.replay_batch, self.rng)
        self.replay.add([(s, k, q) for s, k, q in zip(score, keys, seqs) if s is not None and k is not None])
        self._record(items, keys, raw, score)
        groups = [(seqs, [s or 0.0 for s in score], weight)]
        if t.replay_batch:
            pad = b - len(replayed)
            groups.append(([e[2] for e in replayed] + [[self.pad_id]] * pad, [e[0] for e in replayed] + [0.0] * pad,
                           [1.0] * len(replayed) + [0.0] * pad))
        ids, mask = collate(self.prompt, [s for g in groups for s in g[0]], self.pad_id)
        sc = torch.tensor([v for g in groups for v in g[1]])
        w = torch.tensor([v for g in groups for v in g[2]])
        adv = group_advantages(sc, w) if t.method == "grpo" else torch.zeros_like(sc)
        w = w / w.sum().clamp(min=1)
        g = len(groups)
        return tuple(x.view(g, b, *x.shape[1:]).transpose(0, 1).contiguous()
                     for x in (ids, mask, self._prior_lp(ids), sc, adv, w))

    def _loss(self, model: nn.Module, batch: Batch) -> Tensor:
        g = batch[0].shape[1]  # groups: fresh samples, then replayed items (dpo: chosen, rejected)
        ids, mask, prior_lp, score, adv, w = (x.flatten(0, 1) for x in batch)
        if self.t.method == "dpo":
            seq = (token_logps(model, ids) * mask).sum(-1).view(-1, 2)
            per, margin = dpo_loss(seq, (prior_lp * mask).sum(-1).view(-1, 2), self.t.beta)
            self._agent_ll.append(margin.detach().cpu())
            return per.mean() * self.cfg.train.grad_accum
        live = w > 0
        if not bool(live.any()):
            return sum(p.sum() * 0.0 for p in model.parameters())
        fresh = (torch.arange(len(w), device=w.device) % g == 0)[live]
        ids, mask, prior_lp, score, adv, w = (x[live] for x in (ids, mask, prior_lp, score, adv, w))
        lp = token_logps(model, ids) * mask
        agent_ll = lp.sum(-1)
        if self.t.method == "reinvent":
            per = augmented_likelihood_loss(agent_ll, (prior_lp * mask).sum(-1), score, self.t.sigma)
        else:
            per = grpo_loss(lp, prior_lp, mask, adv, self.t.kl_coef)
        self._agent_ll.append((agent_ll.detach() - (prior_lp * mask).sum(-1))[fresh].cpu())  # on-policy rows
        return (per * w).sum() * self.cfg.train.grad_accum

    def items_per_step(self) -> int:
        return self.cfg.train.batch_size

    # --- monitoring ----------------------------------------------------------------------------------
    def _stats(self, items: list[str], keys: list[str | None], raw: list[float | None]) -> dict[str, float]:
        valid = [k for k in keys if k is not None]
        scored = [r for r in raw if r is not None]
        uniq = {k: r for k, r in zip(keys, raw) if k is not None and r is not None}
        out = {"reward": sum(scored) / max(1, len(scored)), "validity": len(valid) / max(1, len(items)),
               "unique": len(set(valid)) / max(1, len(valid)),
               "hits": sum(r >= self.t.reward_threshold for r in uniq.values()) / max(1, len(items))}
        div = self.domain.diversity(valid)
        if div is not None:
            out["intdiv"] = div
        return out

    def _record(self, items: list[str], keys: list[str | None], raw: list[float | None],
                score: list[float | None]) -> None:
        st = self._stats(items, keys, raw)
        st["score"] = sum(s or 0.0 for s in score) / len(score)
        best = {k: (r, s) for r, k, s in self.s["best"]}
        for k, r in zip(keys, raw):
            if k is not None and r is not None and (k not in best or r > best[k][0]):
                best[k] = (r, self.s["step"] + 1)
        self.s["best"] = sorted(([r, k, s] for k, (r, s) in best.items()), key=lambda e: (-e[0], e[1]))[:self.t.top_n]
        self._pending = st

    def after_step(self, model: nn.Module) -> None:
        tc, s = self.cfg.train, self.s
        s["step"] += 1
        st = dict(self._pending)
        if self._agent_ll and self.t.method == "dpo":  # margins of the step's pairs (off-policy: no KL here)
            m = torch.cat(self._agent_ll)
            st.update(margin=float(m.mean()), pref_acc=float((m > 0).float().mean()))
        elif self._agent_ll:
            st["kl"] = float(torch.cat(self._agent_ll).mean())
        self._agent_ll = []
        s["acc"].append(st)
        low = "validity" in st and (st["validity"] < self.t.collapse_min_validity
                                    or st["unique"] < self.t.collapse_min_unique)
        s["low_run"] = s["low_run"] + 1 if low else 0
        if s["step"] % tc.log_interval == 0 or s["step"] == tc.max_steps:
            names = dict.fromkeys(k for a in s["acc"] for k in a)  # intdiv needs 2 valid items: may be absent
            rec = {k: sum(a[k] for a in s["acc"] if k in a) / sum(k in a for a in s["acc"]) for k in names}
            rec.update(best_reward=s["best"][0][0] if s["best"] else 0.0, replay=len(self.replay.items),
                       reward_skipped=s["skipped"], reward_evals=s["evals"])
            if self.t.method == "dpo":
                rec.pop("best_reward")
                rec.update(pairs=len(self.pairs), pairs_built_s=s.get("pairs_built_s", 0.0))
            if self.rt.is_main:
                with open(self.out / "metrics.jsonl", "a") as f:  # fit's log: one line per record
                    f.write(json.dumps({"step": s["step"], **rec}) + "\n")
            s["acc"] = []
        if s["low_run"] >= self.t.collapse_patience:
            what = (f"mode collapse at step {s['step']}: validity {st['validity']:.2f} / unique {st['unique']:.2f} "
                    f"below task.collapse_min_validity={self.t.collapse_min_validity} / collapse_min_unique="
                    f"{self.t.collapse_min_unique} for {s['low_run']} steps")
            if self.t.stop_on_collapse:
                raise GenforgeError(f"stopped: {what}; the last checkpoint is kept (lower train.lr, raise task.sigma "
                                    "or use a diversity filter)")
            if s["low_run"] == self.t.collapse_patience and self.rt.is_main:
                print(f"genforge: warning: {what}", file=sys.stderr, flush=True)

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """``eval_samples`` items from a fixed seed: mean reward, validity, unique, IntDiv, hits, KL, and as
        ``val_loss`` the mean loss of the method on them (no filter, no replay). Changes no training state."""
        rng = torch.Generator().manual_seed(self.cfg.train.seed + 1)
        seqs = self._sample(model, self.t.eval_samples, rng)
        items = [self.domain.decode(self.prompt + s) for s in seqs]
        keys = self.domain.keys(items)
        raw, _ = self._score(items, keys)
        ids, mask = collate(self.prompt, seqs, self.pad_id)
        was = model.training
        model.eval()
        try:
            agent_lp = token_logps(model, ids.to(self.rt.device)).cpu() * mask
        finally:
            model.train(was)
        prior_lp = self._prior_lp(ids) * mask
        sc = torch.tensor([r or 0.0 for r in raw])
        if self.t.method == "reinvent":
            loss = augmented_likelihood_loss(agent_lp.sum(-1), prior_lp.sum(-1), sc, self.t.sigma)
        elif self.t.method == "dpo":  # the preference loss on the samples, paired as DPO's pairs are
            pairs = preference_pairs(seqs, raw)[: max(1, len(seqs) // 2)]
            loss = torch.zeros(1)
            if pairs:
                pid, pm = collate(self.prompt, [q for p in pairs for q in (p["chosen"], p["rejected"])], self.pad_id)
                a = (token_logps(model, pid.to(self.rt.device)).cpu() * pm).sum(-1).view(-1, 2)
                loss = dpo_loss(a, (self._prior_lp(pid) * pm).sum(-1).view(-1, 2), self.t.beta)[0]
        else:
            loss = grpo_loss(agent_lp, prior_lp, mask, group_advantages(sc, torch.ones_like(sc)), self.t.kl_coef)
        out = {"val_loss": float(loss.mean()), "val_kl": float((agent_lp.sum(-1) - prior_lp.sum(-1)).mean())}
        out.update({f"val_{k}": v for k, v in self._stats(items, keys, raw).items()})
        if self.rt.is_main and (self.out / "metrics.jsonl").is_file():
            from ...atomic import atomic_write_bytes

            lines = (self.out / "metrics.jsonl").read_text().splitlines()
            records = [json.loads(ln) for ln in lines if ln.startswith("{") and ln.endswith("}")]
            self._png = plot_rewards(records, f"{self.out.name}: {self.reward_name}")
            atomic_write_bytes(self.out / "reward.png", self._png)
        return out

    def checkpoint_files(self) -> dict[str, bytes]:
        """reward.png (reward over steps) and best.csv (the best items so far: reward, item, first step)."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["reward", "item", "step"])
        w.writerows([[f"{r:.6f}", k, s] for r, k, s in self.s["best"]])
        files = {"best.csv": buf.getvalue().encode()}
        if getattr(self, "_png", None):
            files["reward.png"] = self._png
        return files

    # --- resume and loading --------------------------------------------------------------------------
    def state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        return {"rng.rl": self.rng.get_state()}, {"rl_state": {**self.s, "filter": self.filter.state(),
                                                               "replay": self.replay.items}}

    def load_state(self, tensors: dict[str, Tensor], info: dict[str, Any]) -> None:
        self.rng.set_state(tensors["rng.rl"])
        s = dict(info["rl_state"])
        self.filter.load(s.pop("filter"))
        self.replay.items = s.pop("replay")
        self.s = s

    def meta(self) -> dict[str, Any]:
        return {"model": {"kind": self.model_kind, **self.fields}, "codec": self.codec.to_dict(), "task": self.kind,
                "pipeline": self.prior_meta.get("pipeline", "text"), "init_from": str(self.prior_path),
                "rl": {"prior": self.t.prior, "prior_sha256": self.prior_sha, "reward": self.reward_name,
                       "method": self.t.method}}
