"""PREDICT: nn.Modules only, tensors in and out. No sampling, no losses, no file I/O.

``build_model(config_dict)`` makes any genforge model from the ``model`` section of a config.
"""
from __future__ import annotations

from typing import Any


def build_model(kind: str, fields: dict[str, Any], init: bool = True):
    """Construct a model from its kind ("transformer" | "rnn") and its config fields.

    ``init=False`` skips the Transformer's weight initialisation (for weights loaded right after).
    """
    from ..config import ConfigError, from_dict

    if kind == "transformer":
        from .transformer import GPT, GPTConfig

        return GPT(from_dict(GPTConfig, fields, "model"), init=init)
    if kind == "rnn":
        from .rnn import RNNLM, RNNConfig

        return RNNLM(from_dict(RNNConfig, fields, "model"))
    raise ConfigError(f"model.kind={kind!r} is unknown: allowed 'transformer' or 'rnn'")
