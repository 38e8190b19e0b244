"""The modality-free core of RL fine-tuning for token models (used by ``train.tasks.rl``).

Rollouts are token lists sampled after a prompt; ``collate`` pads them and masks what follows the end
token; ``token_logps`` gives per-token log-likelihoods from one padded forward pass; the losses are
REINVENT's augmented likelihood (Olivecrona et al. 2017), GRPO's group-relative policy gradient with
a per-token KL penalty (Shao et al. 2024) and DPO's preference loss (Rafailov et al. 2023), whose pairs
``preference_pairs`` builds from the prior's own samples. ``DiversityFilter`` (Blaschke et al. 2020) and ``Replay``
(Olivecrona et al. 2017's experience replay) keep JSON-serialisable state for exact resume. Nothing
here knows what the tokens mean: items, validity and buckets come from a domain (``TextDomain`` here,
``train.rewards.MoleculeDomain`` for SMILES).
"""
from __future__ import annotations

import io
from typing import Any

import torch
from torch import Tensor, nn


def collate(prompt: list[int], seqs: list[list[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    """Rollouts (the tokens sampled after ``prompt``, each ending at its end token or not) as ids (B, T) =
    prompt + tokens + padding, and a mask (B, T - 1) over the predicted positions that are sampled tokens."""
    n, T = len(prompt), len(prompt) + max(len(s) for s in seqs)
    ids = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    mask = torch.zeros(len(seqs), T - 1)
    for i, s in enumerate(seqs):
        ids[i, :n + len(s)] = torch.tensor(prompt + list(s), dtype=torch.long)
        mask[i, n - 1:n - 1 + len(s)] = 1.0
    return ids, mask


def token_logps(model: nn.Module, ids: Tensor) -> Tensor:
    """log P(ids[:, t + 1] | ids[:, :t + 1]) for every position (B, T - 1), from one padded forward pass;
    multiply by ``collate``'s mask so padding after the end token counts nothing."""
    logits = model(ids[:, :-1]).float()
    return logits.log_softmax(-1).gather(-1, ids[:, 1:, None]).squeeze(-1)


def augmented_likelihood_loss(agent_ll: Tensor, prior_ll: Tensor, score: Tensor, sigma: float) -> Tensor:
    """REINVENT's per-sequence loss (log P_prior + sigma * S - log P_agent)^2 (Olivecrona et al. 2017)."""
    return (prior_ll + sigma * score - agent_ll).pow(2)


def group_advantages(rewards: Tensor, weight: Tensor) -> Tensor:
    """GRPO's advantages (r - mean) / std over the rows with weight > 0; 0 where every reward is equal."""
    live = weight > 0
    r = rewards[live]
    if r.numel() < 2:
        return torch.zeros_like(rewards)
    std = r.std()
    adv = (rewards - r.mean()) / std if std > 1e-8 else torch.zeros_like(rewards)
    return torch.where(live, adv, torch.zeros_like(adv))


def grpo_loss(agent_lp: Tensor, prior_lp: Tensor, mask: Tensor, adv: Tensor, kl_coef: float) -> Tensor:
    """Per-sequence GRPO loss from per-token log-probs (B, T - 1) (Shao et al. 2024, on-policy)."""
    n = mask.sum(-1).clamp(min=1)
    d = (prior_lp - agent_lp) * mask
    k3 = (d.exp() - d - 1) * mask
    return -adv * (agent_lp * mask).sum(-1) / n + kl_coef * k3.sum(-1) / n


def dpo_loss(agent_ll: Tensor, prior_ll: Tensor, beta: float) -> tuple[Tensor, Tensor]:
    """DPO's per-pair loss -log sigmoid(beta * (log-ratio chosen - log-ratio rejected)) (Rafailov et al. 2023)
    from sequence log-likelihoods (B, 2): column 0 chosen, column 1 rejected; also the margins (B,)."""
    ratio = agent_ll - prior_ll
    margin = beta * (ratio[:, 0] - ratio[:, 1])
    return -torch.nn.functional.logsigmoid(margin), margin


def preference_pairs(seqs: list[list[int]], rewards: list[float | None]) -> list[dict[str, Any]]:
    """Samples 2i and 2i + 1 (two of one prompt) as a pair, the higher reward chosen; ties and unscored
    samples make no pair. Each pair: {"chosen", "rejected"} token lists and their rewards."""
    out = []
    for i in range(0, len(seqs) - 1, 2):
        a, b = rewards[i], rewards[i + 1]
        if a is None or b is None or a == b:
            continue
        c, r = (i, i + 1) if a > b else (i + 1, i)
        out.append({"chosen": list(seqs[c]), "rejected": list(seqs[r]), "rewards": [rewards[c], rewards[r]]})
    return out


class TextDomain:
    """Items of any text codec: all valid, the text is its own key and bucket, no diversity measure."""

    name = "text"

    def __init__(self, codec: Any) -> None:
        self.codec = codec

    def decode(self, ids: list[int]) -> str:
        return self.codec.decode(ids)

    def keys(self, items: list[str]) -> list[str | None]:
        return list(items)

    def buckets(self, keys: list[str]) -> list[str]:
        return list(keys)

    def diversity(self, keys: list[str]) -> float | None:
        return None


class DiversityFilter:
    """Blaschke et al. 2020: a memory of rewarded items (score >= min_score) by key and bucket."""

    def __init__(self, mode: str, bucket_size: int, min_score: float) -> None:
        self.mode, self.bucket_size, self.min_score = mode, bucket_size, min_score
        self.seen: set[str] = set()
        self.counts: dict[str, int] = {}

    def apply(self, keys: list[str | None], buckets: list[str | None],
              scores: list[float | None]) -> list[float | None]:
        """The scores after the filter (in order, so a repeat within one batch scores 0 too)."""
        out = []
        for k, b, s in zip(keys, buckets, scores):
            if self.mode != "none" and k is not None and s is not None:
                if k in self.seen:
                    s = 0.0
                elif s >= self.min_score:
                    self.seen.add(k)
                    if self.mode == "scaffold":
                        n = self.counts.get(b, 0)
                        self.counts[b] = n + 1
                        s = 0.0 if n >= self.bucket_size else s
            out.append(s)
        return out

    def state(self) -> dict[str, Any]:
        return {"seen": sorted(self.seen), "counts": self.counts}

    def load(self, s: dict[str, Any]) -> None:
        self.seen, self.counts = set(s["seen"]), dict(s["counts"])


class Replay:
    """The ``size`` best distinct items (score > 0) seen, as [score, key, ids]; ``sample`` draws without
    replacement in proportion to score (Olivecrona et al. 2017's experience replay)."""

    def __init__(self, size: int) -> None:
        self.size, self.items = size, []

    def add(self, entries: list[tuple[float, str, list[int]]]) -> None:
        have = {e[1] for e in self.items}
        for s, k, ids in entries:
            if s > 0 and k not in have:
                self.items.append([float(s), k, list(ids)])
                have.add(k)
        self.items = sorted(self.items, key=lambda e: -e[0])[:self.size]

    def sample(self, k: int, rng: torch.Generator) -> list[list]:
        if k <= 0 or not self.items:
            return []
        w = torch.tensor([e[0] for e in self.items], dtype=torch.float64)
        pick = torch.multinomial(w, min(k, len(self.items)), replacement=False, generator=rng)
        return [self.items[i] for i in pick.tolist()]


def plot_rewards(records: list[dict[str, Any]], title: str = "") -> bytes:
    """A PNG of mean and best reward (hits, validity, uniqueness, evaluation reward) and KL against step,
    from metrics records."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in records if "reward" in r]
    evals = [r for r in records if "val_reward" in r]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    steps = [r["step"] for r in rows]
    for key, style, label in (("reward", "-", "mean reward"), ("best_reward", "-", "best reward"),
                              ("hits", "-", "hits"), ("validity", ":", "validity"), ("unique", ":", "unique")):
        if any(key in r for r in rows):
            ax.plot(steps, [r.get(key, float("nan")) for r in rows], style, label=label, linewidth=1.2)
    if evals:
        ax.plot([r["step"] for r in evals], [r["val_reward"] for r in evals], "o--", label="eval reward", ms=4)
    kl = [(r["step"], r["kl"]) for r in rows if "kl" in r] or [(r["step"], r["val_kl"]) for r in evals]
    if kl:  # KL from the prior, nats per sequence, on its own axis
        ax2 = ax.twinx()
        ax2.plot(*zip(*kl), color="0.4", linewidth=1.0, alpha=0.7, label="KL (right)")
        ax2.set_ylabel("KL(agent || prior), nats / sequence")
        ax2.set_ylim(bottom=0)
        ax2.legend(loc="upper left")
    ax.set_xlabel("step")
    ax.set_ylabel("reward / fraction")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right")
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png")
    plt.close(fig)
    return png.getvalue()
