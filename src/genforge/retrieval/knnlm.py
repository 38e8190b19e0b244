"""kNN-LM: a language model's next-token distribution interpolated with one read off its nearest
neighbours in a datastore of (context vector -> next token) pairs.

Khandelwal et al. 2020, "Generalization through Memorization: Nearest Neighbor Language Models" (ICLR):
the keys are the model's final hidden states (the input of its output layer) at every position of a
corpus, the values the tokens that followed. For a query context, the k nearest keys by squared L2
distance vote for their next tokens with weights ``softmax(-d / temperature)`` (eq. 2); the result is
mixed with the model's own distribution, ``p = lambda * p_knn + (1 - lambda) * p_lm`` (eq. 3).

The datastore is a faiss index: exact (``IndexFlatL2``) for small stores, an inverted file over fp16
vectors (``IndexIVFScalarQuantizer``) for large ones, as the paper's IVF index. Functions here take
tensors and arrays only; how hidden states are read out of a model is the caller's business.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

EXACT_BELOW = 200_000  # keys; above this the store is an inverted file (nlist ~ 4 sqrt(N), nprobe 32)


@dataclass
class Datastore:
    index: Any  # faiss index over the keys
    values: np.ndarray  # (N,) the token that followed each key
    vocab_size: int

    def __len__(self) -> int:
        return len(self.values)


def build_datastore(keys: np.ndarray, values: np.ndarray, vocab_size: int, nprobe: int = 32,
                    seed: int = 0) -> Datastore:
    """A faiss index over ``keys`` (N, d) float, with ``values`` (N,) the next tokens."""
    import faiss

    keys = np.ascontiguousarray(keys, dtype=np.float32) if len(keys) < EXACT_BELOW else keys
    n, d = keys.shape
    if n < EXACT_BELOW:
        index = faiss.IndexFlatL2(d)
        index.add(keys)
    else:
        nlist = int(4 * math.sqrt(n))
        quantizer = faiss.IndexFlatL2(d)
        index = faiss.IndexIVFScalarQuantizer(quantizer, d, nlist, faiss.ScalarQuantizer.QT_fp16,
                                              faiss.METRIC_L2)
        rng = np.random.default_rng(seed)
        sample = keys[rng.choice(n, size=min(n, 64 * nlist), replace=False)]
        index.train(np.ascontiguousarray(sample, dtype=np.float32))
        for start in range(0, n, 262_144):  # add in slices: float32 copies of fp16 keys stay small
            index.add(np.ascontiguousarray(keys[start:start + 262_144], dtype=np.float32))
        index.nprobe = nprobe
    return Datastore(index, np.asarray(values, dtype=np.int64), vocab_size)


def search(store: Datastore, queries: torch.Tensor, k: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest keys of each (M, d) query: squared L2 distances and key rows (-1: none found)."""
    q = np.ascontiguousarray(queries.detach().float().cpu().numpy())
    return store.index.search(q, k)


def knn_logprobs(store: Datastore, neighbours: tuple[np.ndarray, np.ndarray], temperature: float = 1.0) -> torch.Tensor:
    """(M, V) log p_knn from ``search``'s neighbours: each votes for its next token with ``exp(-d / T)``."""
    dist, idx = neighbours
    dist_t = torch.from_numpy(dist).float()
    idx_t = torch.from_numpy(idx)
    found = idx_t >= 0
    weights = torch.where(found, -dist_t / temperature, torch.full_like(dist_t, -math.inf))
    weights = torch.log_softmax(weights, dim=-1)  # (M, k) log weights of the neighbours
    tokens = torch.from_numpy(store.values[np.where(idx >= 0, idx, 0)])
    out = torch.full((len(dist), store.vocab_size), -math.inf)
    # log-sum-exp of the neighbours' weights per token: scatter the probabilities, then take the log
    probs = torch.zeros(len(dist), store.vocab_size).scatter_add_(1, tokens, weights.exp() * found)
    mask = probs > 0
    out[mask] = probs[mask].log()
    return out


def interpolate(lm_logprobs: torch.Tensor, knn: torch.Tensor, lam: float) -> torch.Tensor:
    """log(lambda * p_knn + (1 - lambda) * p_lm), stably (eq. 3)."""
    if lam <= 0.0:
        return lm_logprobs
    return torch.logaddexp(lm_logprobs + math.log1p(-lam), knn + math.log(lam))
