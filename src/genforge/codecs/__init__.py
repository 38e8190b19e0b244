"""Codecs turn text into token ids and back (see ``genforge.types.Codec``).

Checkpoints store a codec as a plain dict (``codec.to_dict()``); ``codec_from_dict`` rebuilds it.
The concrete codecs are imported lazily so that importing this package stays cheap (the BPE codec
pulls in the ``tokenizers`` extension module).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import CheckpointError

if TYPE_CHECKING:  # pragma: no cover
    from ..types import Codec
    from .bpe import BPECodec
    from .char import CharCodec

__all__ = ["BPECodec", "CharCodec", "codec_from_dict"]


def codec_from_dict(d: dict[str, Any]) -> Codec:
    """Rebuild a codec from ``to_dict()`` output, dispatching on ``d["kind"]`` (``registry.CODECS``).

    Any problem (not a dict, unknown kind, missing or malformed fields) becomes a one-line
    ``CheckpointError``, because the dict almost always comes from a checkpoint file.
    """
    from ..registry import CODECS

    if not isinstance(d, dict):
        raise CheckpointError(f"codec entry must be a dict with a 'kind' key, got {type(d).__name__}; "
                              "the checkpoint is corrupted or was not written by genforge")
    kind = d.get("kind")
    cls = CODECS.get(kind, "the checkpoint's codec.kind", CheckpointError)
    try:
        return cls.from_dict(d)
    except CheckpointError:
        raise
    except Exception as err:
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(f"malformed {kind!r} codec in checkpoint: {msg}") from err


def __getattr__(name: str) -> Any:
    """Lazy ``from genforge.codecs import CharCodec, BPECodec`` without importing them up front."""
    from ..registry import CODECS

    for kind in CODECS.names():
        cls = CODECS.get(kind)
        if cls.__name__ == name:
            return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
