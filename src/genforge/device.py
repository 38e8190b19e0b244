"""Which torch device a user's ``device`` setting means, checked before anything is allocated."""
from __future__ import annotations

import torch

from .errors import ConfigError


def resolve_device(choice: str, local_rank: int = 0, field: str = "train.device") -> torch.device:
    """``auto`` -> the local CUDA device when there is one, else the CPU; ``cpu``, ``cuda`` or ``cuda:N``
    as given. A name torch does not know, or CUDA where none is available, is one ConfigError line."""
    if choice == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        dev = torch.device(choice)
    except (RuntimeError, TypeError):
        raise ConfigError(f"{field}={choice!r} is not a device: allowed auto, cpu, cuda, cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"{field}={choice!r} is not supported: allowed auto, cpu, cuda, cuda:N")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{field}={choice!r} but no CUDA device is available: use 'cpu' or 'auto'")
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device(f"cuda:{local_rank}")
    elif dev.type == "cuda" and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"{field}={choice!r} but this machine has {torch.cuda.device_count()} CUDA device(s)")
    return dev
