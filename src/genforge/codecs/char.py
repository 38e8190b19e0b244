"""Character-level codec: one token per Unicode character.

The smallest possible codec: no training, a tiny vocabulary, and every id decodes to exactly one
character, so streaming needs no buffering. It cannot encode characters it has never seen, so
``encode`` either maps them to a chosen ``unknown`` character or fails with a message that says
which character, where, and what to do.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..errors import CheckpointError, DataError

_SHOW_MAX = 80  # characters of the vocabulary quoted in error messages


class CharCodec:
    """Maps each character of ``chars`` to its index; ``unknown`` (if given) absorbs unseen characters."""

    kind = "char"

    def __init__(self, chars: str, unknown: str | None = None) -> None:
        if not isinstance(chars, str) or not chars:
            raise DataError("a character codec needs a non-empty vocabulary string; build it with "
                            "CharCodec.from_text(corpus)")
        if len(set(chars)) != len(chars):
            dup = next(c for i, c in enumerate(chars) if c in chars[:i])
            raise DataError(f"character vocabulary lists {dup!r} more than once; each character may "
                            "appear once (CharCodec.from_text builds a valid one)")
        if unknown is not None and (not isinstance(unknown, str) or len(unknown) != 1 or unknown not in chars):
            raise DataError(f"unknown={unknown!r} must be a single character that is in the vocabulary")
        self._chars = chars
        self._unknown = unknown
        self._stoi = {c: i for i, c in enumerate(chars)}

    @classmethod
    def from_text(cls, text: str, unknown: str | None = None) -> CharCodec:
        """Build the vocabulary from a corpus: its distinct characters, sorted (deterministic ids).

        If ``unknown`` is not in the text it is added, so the fallback always has an id.
        """
        if not text:
            raise DataError("cannot build a character vocabulary from empty text; give a non-empty corpus")
        vocab = set(text)
        if unknown is not None:
            vocab.add(unknown)
        return cls("".join(sorted(vocab)), unknown=unknown)

    @classmethod
    def from_corpus(cls, pieces: Iterable[str], cfg: Any) -> CharCodec:
        """The codec a recipe's ``[codec]`` (``cfg``) asks for, built from the corpus text."""
        return cls.from_text("".join(pieces), unknown=cfg.unknown or None)

    @property
    def vocab_size(self) -> int:
        """Number of distinct token ids (= characters in the vocabulary)."""
        return len(self._chars)

    @property
    def chars(self) -> str:
        """The vocabulary, in id order."""
        return self._chars

    @property
    def unknown(self) -> str | None:
        """Replacement for characters outside the vocabulary, or None to raise instead."""
        return self._unknown

    def encode(self, text: str) -> list[int]:
        """Text to ids. Unseen characters become ``unknown``, or raise a ``DataError`` naming them."""
        stoi = self._stoi
        try:
            return [stoi[c] for c in text]
        except KeyError:
            pass
        if self._unknown is not None:
            unk = stoi[self._unknown]
            return [stoi.get(c, unk) for c in text]
        pos, bad = next((i, c) for i, c in enumerate(text) if c not in stoi)
        shown = self._chars if len(self._chars) <= _SHOW_MAX else self._chars[:_SHOW_MAX] + "..."
        raise DataError(
            f"text contains {bad!r} at position {pos}, which the model's {self.vocab_size}-character "
            f"vocabulary does not have (allowed: {shown!r}); remove or replace it, or retrain on a corpus "
            "that contains it (or with an unknown= fallback character)")

    def decode(self, ids: Iterable[int]) -> str:
        """Ids to text; an id outside the vocabulary is a ``DataError`` (never silently wrapped)."""
        chars = self._chars
        n = len(chars)
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < n:
                raise DataError(f"token id {i} is outside the character vocabulary (0..{n - 1}); the ids "
                                "do not belong to this model's codec")
            out.append(chars[i])
        return "".join(out)

    def decoder(self) -> CharStreamDecoder:
        """A streaming decoder; trivial here because every id is one whole character."""
        return CharStreamDecoder(self)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable description, stored inside checkpoints."""
        return {"kind": self.kind, "chars": self._chars, "unknown": self._unknown}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CharCodec:
        """Inverse of ``to_dict``; malformed input is a ``CheckpointError``."""
        if not isinstance(d, dict) or d.get("kind") != cls.kind or not isinstance(d.get("chars"), str):
            raise CheckpointError("malformed character codec: expected {'kind': 'char', 'chars': str, "
                                  "'unknown': str | None}")
        try:
            return cls(d["chars"], unknown=d.get("unknown"))
        except DataError as err:
            raise CheckpointError(f"malformed character codec: {err}") from err

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CharCodec) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash((self._chars, self._unknown))

    def __repr__(self) -> str:
        return f"CharCodec(vocab_size={self.vocab_size}, unknown={self._unknown!r})"


class CharStreamDecoder:
    """Streaming decode for ``CharCodec``: each push returns its character immediately."""

    def __init__(self, codec: CharCodec) -> None:
        self._codec = codec

    def push(self, token_id: int) -> str:
        """Decode one id."""
        return self._codec.decode((token_id,))

    def flush(self) -> str:
        """Nothing is ever held back, so there is nothing to flush."""
        return ""
