"""genforge: train, generate with and serve your own generative models.

    >>> import genforge
    >>> genforge.load("shakespeare-char").generate("ROMEO:", max_tokens=100, seed=0)

Importing genforge is cheap: heavy modules load when first used.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .pipelines.text import TextModel


def load(name_or_dir: str, **kwargs: Any) -> TextModel:
    """Load a model by bundled name or folder as the pipeline its genforge.json names (text today);
    see ``genforge.pipelines.load``."""
    from .pipelines import load as _load

    return _load(name_or_dir, **kwargs)


def models() -> list:
    """Bundled and local models (name, path, kind, parameters, val loss)."""
    from .store import list_models

    return list_models()
