"""Codecs of token streams written as text, one sequence per line: SMILES (``codecs.smiles``) and music
events (``codecs.music``).

A subclass says how one line splits into tokens (``tokenize``); the rest is shared: a vocabulary learned
from a corpus (``<pad> <bos> <eos>`` first, then the tokens sorted), and **a newline ends a sequence**.
``encode`` turns each line into ``<bos> tokens`` and adds ``<eos>`` where the line ends with a newline,
so a file of one sequence per line encodes to ``<bos> s1 <eos> <bos> s2 <eos> ...`` (what training reads),
a prompt to ``<bos> tokens`` (continued by sampling) and the empty prompt to ``<bos>`` (a sequence from
scratch). ``decode`` writes ``<eos>`` back as a newline and drops ``<bos>`` and ``<pad>``; tokens are
joined by ``separator``.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from ..errors import CheckpointError, DataError

PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"
SPECIALS = (PAD, BOS, EOS)


class LineTokenCodec:
    """Token <-> id over a vocabulary learned from a corpus of one sequence per line."""

    kind: ClassVar[str] = ""
    what: ClassVar[str] = ""  # what a line is, in messages ("SMILES")
    separator: ClassVar[str] = ""  # between tokens when decoding

    @staticmethod
    def tokenize(line: str) -> list[str]:  # pragma: no cover - every subclass has its own
        raise NotImplementedError

    def __init__(self, tokens: list[str]) -> None:
        if not isinstance(tokens, list) or tokens[:3] != list(SPECIALS) or len(set(tokens)) != len(tokens):
            raise DataError(f"a {self.what} vocabulary is a list of distinct tokens starting with <pad>, <bos>, "
                            f"<eos>; build it with {type(self).__name__}.from_text(corpus)")
        self._tokens = tokens
        self._stoi = {t: i for i, t in enumerate(tokens)}
        self.pad_id, self.bos_id, self.eos_id = 0, 1, 2

    @classmethod
    def from_text(cls, text: str) -> LineTokenCodec:
        """The vocabulary of every token in ``text`` (one sequence per line), sorted for deterministic ids."""
        seen: set[str] = set()
        for line in text.splitlines():
            if line.strip():
                seen.update(cls.tokenize(line.strip()))
        if not seen:
            raise DataError(f"cannot build a {cls.what} vocabulary from an empty corpus; give one per line")
        return cls([*SPECIALS, *sorted(seen)])

    @classmethod
    def from_corpus(cls, pieces: Iterable[str], cfg: Any) -> LineTokenCodec:
        """The codec a recipe's ``[codec]`` (``cfg``) asks for, built from the corpus text."""
        return cls.from_text("".join(pieces))

    @property
    def vocab_size(self) -> int:
        return len(self._tokens)

    @property
    def tokens(self) -> list[str]:
        return list(self._tokens)

    def token_ids(self, line: str) -> list[int]:
        """The ids of one line's tokens, without specials; a token outside the vocabulary is a DataError."""
        out = []
        for tok in self.tokenize(line):
            i = self._stoi.get(tok)
            if i is None or i < len(SPECIALS):
                raise DataError(f"{self.what} {line[:80]!r} has the token {tok!r}, which this model's "
                                f"{self.vocab_size - len(SPECIALS)}-token vocabulary does not have; remove it or "
                                "train on a corpus that contains it")
            out.append(i)
        return out

    def encode(self, text: str) -> list[int]:
        """Each line -> ``<bos> tokens``, plus ``<eos>`` if a newline ends it; blank lines are skipped and
        the empty text is ``[<bos>]`` (the start of a new sequence)."""
        if not text:
            return [self.bos_id]
        out: list[int] = []
        for line in text.splitlines(keepends=True):
            body = line.rstrip("\r\n")
            if body.strip():
                out.append(self.bos_id)
                out.extend(self.token_ids(body.strip()))
                if body != line:
                    out.append(self.eos_id)
        return out or [self.bos_id]

    def decode(self, ids: Iterable[int]) -> str:
        """Ids -> text: ``<eos>`` becomes a newline, ``<bos>``/``<pad>`` vanish; an unknown id is a DataError."""
        toks, n, sep = self._tokens, len(self._tokens), self.separator
        out: list[str] = []
        for i in ids:
            i = int(i)
            if not 0 <= i < n:
                raise DataError(f"token id {i} is outside the {self.what} vocabulary (0..{n - 1}); the ids do not "
                                "belong to this model's codec")
            if i == self.eos_id:
                out.append("\n")
            elif i >= len(SPECIALS):
                out.append(toks[i] if not sep or not out or out[-1] == "\n" else sep + toks[i])
        return "".join(out)

    def decoder(self) -> LineStreamDecoder:
        return LineStreamDecoder(self)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "tokens": list(self._tokens)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LineTokenCodec:
        if not isinstance(d, dict) or d.get("kind") != cls.kind or not isinstance(d.get("tokens"), list) \
                or not all(isinstance(t, str) for t in d["tokens"]):
            raise CheckpointError(f"malformed {cls.what} codec: expected {{'kind': '{cls.kind}', "
                                  "'tokens': [str, ...]}")
        try:
            return cls(list(d["tokens"]))
        except DataError as err:
            raise CheckpointError(f"malformed {cls.what} codec: {err}") from err

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self._tokens == other._tokens  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((self.kind, tuple(self._tokens)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size})"


class LineStreamDecoder:
    """Every id is a whole token, so each push returns its text at once (with the separator before it
    when it follows another token on the same line)."""

    def __init__(self, codec: LineTokenCodec) -> None:
        self._codec = codec
        self._mid_line = False

    def push(self, token_id: int) -> str:
        text = self._codec.decode((token_id,))
        if not text:
            return ""
        out = (self._codec.separator if self._mid_line and text != "\n" else "") + text
        self._mid_line = text != "\n"
        return out

    def flush(self) -> str:
        return ""
