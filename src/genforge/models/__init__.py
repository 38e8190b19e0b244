"""PREDICT: nn.Modules only, tensors in and out. No sampling, no losses, no file I/O.

``build_model(config_dict)`` makes any genforge model from the ``model`` section of a config.
"""
from __future__ import annotations

import sys
import types
from typing import Any


class _ModelsModule(types.ModuleType):
    """``genforge.models()`` lists the available models. Importing this subpackage rebinds the package
    attribute ``genforge.models`` from that function to this module, so the module answers the call."""

    def __call__(self) -> list:
        from ..store import list_models

        return list_models()


sys.modules[__name__].__class__ = _ModelsModule


def build_model(kind: str, fields: dict[str, Any], init: bool = True):
    """Construct a model from its kind (a name in ``genforge.registry.MODELS``) and its config fields.

    ``init=False`` skips weight initialisation (for weights loaded right after).
    """
    from ..config import from_dict
    from ..registry import MODELS

    cls = MODELS.get(kind, "model.kind")
    return cls(from_dict(cls.config_class, fields, "model"), init=init)
