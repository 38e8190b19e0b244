"""Random-window batches from a token array, reproducible and resumable.

Like nanoGPT's ``get_batch``: each batch is ``batch_size`` random contiguous windows of
``block_size + 1`` tokens; ``x`` is the window without its last token, ``y`` without its first.
The sampler owns a seeded ``torch.Generator`` whose state is checkpointed, so a resumed run sees
exactly the batches the uninterrupted run would have seen. In data-parallel training every rank
draws the same *global* batch and keeps its own slice, so N processes together train on exactly
the batches one process would.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, DataError


class WindowSampler:
    """Draws (x, y) int64 batches of shape (batch_size // world_size, block_size) from ``tokens``."""

    def __init__(self, tokens: np.ndarray, block_size: int, batch_size: int, seed: int,
                 split: str = "train") -> None:
        for name, value in (("block_size", block_size), ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}={value!r} is invalid: allowed an integer >= 1")
        if isinstance(tokens, torch.Tensor):
            tokens = tokens.detach().cpu().numpy()
        if not isinstance(tokens, np.ndarray):  # memmaps are ndarrays and are kept as they are
            tokens = np.asarray(tokens)
        if tokens.ndim != 1:
            raise DataError(f"{split} tokens must be a 1-D array, got shape {tuple(tokens.shape)}")
        n = int(tokens.shape[0])
        if n < block_size + 1:
            name = "validation" if split == "val" else split
            raise DataError(f"{name} split has {n} tokens but block_size is {block_size}: lower block_size "
                            "or give more text")
        self.tokens = tokens
        self.block_size = block_size
        self.batch_size = batch_size
        self.seed = seed
        self.split = split
        self.batches = 0  # global batches drawn so far
        self._gen = torch.Generator(device="cpu")
        self._gen.manual_seed(seed)

    def _offsets(self) -> torch.Tensor:
        """The global batch's window starts, drawn from [0, len - block_size - 1]."""
        high = int(self.tokens.shape[0]) - self.block_size
        return torch.randint(high, (self.batch_size,), generator=self._gen)

    def next_batch(self, rank: int = 0, world_size: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw the next global batch (same on every rank) and return this rank's contiguous slice."""
        if not isinstance(world_size, int) or world_size < 1 or not 0 <= rank < world_size:
            raise ConfigError(f"rank={rank!r}, world_size={world_size!r} is invalid: need 0 <= rank < world_size")
        if self.batch_size % world_size:
            raise DataError(f"batch_size {self.batch_size} is not divisible by world_size {world_size}; "
                            "choose a batch_size that is a multiple of the number of processes")
        offsets = self._offsets()
        self.batches += 1
        per = self.batch_size // world_size
        mine = offsets[rank * per:(rank + 1) * per].tolist()
        t = self.block_size
        windows = np.stack([np.asarray(self.tokens[i:i + t + 1]) for i in mine]).astype(np.int64)
        data = torch.from_numpy(windows)
        return data[:, :-1].contiguous(), data[:, 1:].contiguous()

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue with the same batches: RNG state and batch count."""
        return {"rng": self._gen.get_state(), "batches": self.batches}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict()`` output; the next batch equals the one the saved run drew next."""
        try:
            rng = state["rng"]
            if not isinstance(rng, torch.Tensor):
                rng = torch.as_tensor(np.asarray(rng, dtype=np.uint8))
            self._gen.set_state(rng.to(dtype=torch.uint8, device="cpu"))
            self.batches = int(state["batches"])
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise DataError(f"cannot restore the {self.split} sampler state ({err}); the checkpoint's "
                            "sampler state is missing or corrupted") from err

    def __repr__(self) -> str:
        return (f"WindowSampler(split={self.split!r}, tokens={self.tokens.shape[0]}, block_size={self.block_size}, "
                f"batch_size={self.batch_size}, seed={self.seed}, batches={self.batches})")
