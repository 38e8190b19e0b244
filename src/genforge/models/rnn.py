"""A recurrent language model (LSTM or GRU) behind the same ``StepModel`` interface.

Char-RNN style (Karpathy 2015; Graves 2013): embedding -> stacked LSTM/GRU -> linear head.
The decode state is the hidden state, so memory per step is constant in sequence length.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
from torch import Tensor


@dataclass(frozen=True)
class RNNConfig:
    vocab_size: int = 65  # tokens in the codec's vocabulary
    cell: str = "lstm"  # "lstm" or "gru"
    n_layer: int = 2  # stacked recurrent layers
    n_embd: int = 128  # embedding width
    hidden: int = 256  # recurrent state width
    dropout: float = 0.0  # between layers and before the head (training only)
    block_size: int = 128  # training window (truncated backprop through time)
    max_len: int = 1_000_000  # longest sequence to generate: an RNN has no context window

    def __post_init__(self) -> None:
        from ..errors import ConfigError

        if self.cell not in ("lstm", "gru"):
            raise ConfigError(f"model.cell={self.cell!r} is unknown: allowed 'lstm' or 'gru'")
        for name in ("vocab_size", "n_layer", "n_embd", "hidden", "block_size", "max_len"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ConfigError(f"model.{name}={v!r} is invalid: allowed an integer >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"model.dropout={self.dropout!r} is invalid: allowed 0 <= dropout < 1")


    def num_parameters(self) -> int:
        """Parameters an RNNLM of this config has, computed without building it."""
        gates, h = (4 if self.cell == "lstm" else 3), self.hidden
        layers = sum(gates * h * ((self.n_embd if i == 0 else h) + h) + 2 * gates * h for i in range(self.n_layer))
        return self.vocab_size * self.n_embd + layers + h * self.vocab_size + self.vocab_size


@dataclass
class RNNState:
    hidden: Tensor | tuple[Tensor, Tensor]  # GRU: h (L, B, H); LSTM: (h, c)
    pos: int = 0


class RNNLM(nn.Module):
    kind = "rnn"
    config_class = RNNConfig

    def __init__(self, cfg: RNNConfig, init: bool = True) -> None:  # init: PyTorch's defaults, always
        super().__init__()
        self.config = cfg
        self.vocab_size = cfg.vocab_size
        self.max_len = cfg.max_len
        self.block_size = cfg.block_size
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        rnn_cls = nn.LSTM if cfg.cell == "lstm" else nn.GRU
        self.rnn = rnn_cls(cfg.n_embd, cfg.hidden, cfg.n_layer, batch_first=True,
                           dropout=cfg.dropout if cfg.n_layer > 1 else 0.0)
        self.drop = nn.Dropout(cfg.dropout)
        self.lm_head = nn.Linear(cfg.hidden, cfg.vocab_size)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, idx: Tensor) -> Tensor:
        """Logits (B, T, V) from a zero initial state."""
        out, _ = self.rnn(self.wte(idx))  # (B, T, H)
        return self.lm_head(self.drop(out))

    def init_state(self, batch_size: int, max_len: int) -> RNNState:
        cfg = self.config
        p = next(self.rnn.parameters())  # never converted by prepare_for_inference
        h = torch.zeros(cfg.n_layer, batch_size, cfg.hidden, dtype=p.dtype, device=p.device)
        return RNNState((h, h.clone()) if cfg.cell == "lstm" else h)

    def step(self, ids: Tensor, state: RNNState) -> tuple[Tensor, RNNState]:
        out, hidden = self.rnn(self.wte(ids), state.hidden)
        return self.lm_head(out[:, -1:]), RNNState(hidden, state.pos + ids.shape[1])

    def reorder_state(self, state: RNNState, index: Tensor) -> RNNState:
        h = state.hidden
        h = tuple(t.index_select(1, index) for t in h) if isinstance(h, tuple) else h.index_select(1, index)
        return RNNState(h, state.pos)

    # --- BatchedStepModel: each row is its own sequence; a hidden state has no length to track ---
    def put_row(self, state: RNNState, row: int, single: RNNState) -> None:
        for dst, src in zip(_parts(state), _parts(single)):
            dst[:, row] = src[:, 0]

    def move_row(self, state: RNNState, src: int, dst: int, length: int) -> None:
        for t in _parts(state):
            t[:, dst] = t[:, src]

    def step_rows(self, ids: Tensor, state: RNNState, lengths: Tensor) -> Tensor:
        """One new token per row, ``ids`` (n, 1), through rows 0..n-1 of ``state`` (updated in place);
        returns logits (n, 1, V). ``lengths`` does not matter to a recurrent state."""
        n = ids.shape[0]
        rows = tuple(t[:, :n].contiguous() for t in _parts(state))
        out, hidden = self.rnn(self.wte(ids), rows if isinstance(state.hidden, tuple) else rows[0])
        for dst, src in zip(_parts(state), hidden if isinstance(hidden, tuple) else (hidden,)):
            dst[:, :n] = src
        return self.lm_head(out[:, -1:])


def _parts(state: RNNState) -> tuple[Tensor, ...]:
    """The tensors of a hidden state, each (L, B, H): (h, c) for an LSTM, (h,) for a GRU."""
    return state.hidden if isinstance(state.hidden, tuple) else (state.hidden,)
