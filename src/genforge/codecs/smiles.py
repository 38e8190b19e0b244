"""SMILES codec: a regex tokenizer with begin, end and padding tokens.

Tokens follow the regular expression of Schwaller et al. 2019 ("Molecular Transformer", ACS Cent.
Sci. 5, 1572): a bracket atom (``[nH]``, ``[C@@H]``, ``[N+]``) is one token, two-letter organic atoms
(``Br``, ``Cl``) are one token, ring closures above 9 are written ``%nn`` and are one token, and every
bond, branch, stereo mark (``/``, ``\\``, ``@``) and digit is its own token.

Text in and out, like the text codecs, with one rule that makes SMILES a token stream: **a newline ends
a molecule**. ``encode`` turns each line into ``<bos> tokens`` and adds ``<eos>`` where the line ends
with a newline; so a file of one SMILES per line encodes to ``<bos> m1 <eos> <bos> m2 <eos> ...`` (what
training reads), a fragment prompt ``"c1ccccc1"`` to ``<bos> c 1 c c c c c 1`` (continued by sampling)
and the empty prompt to ``<bos>`` (a molecule from scratch). ``decode`` writes ``<eos>`` back as a
newline and drops ``<bos>`` and ``<pad>``.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from ..errors import CheckpointError, DataError

SMILES_TOKEN = re.compile(
    r"(\[[^\[\]]+\]|Br|Cl|N|O|S|P|F|I|B|C|b|c|n|o|s|p|\(|\)|\.|=|#|-|\+|\\|/|:|~|@|\?|>|\*|\$|%[0-9]{2}|[0-9])")
PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"
SPECIALS = (PAD, BOS, EOS)


def tokenize(smiles: str) -> list[str]:
    """Split one SMILES string (no newline) into tokens; text the grammar does not cover is a DataError."""
    tokens = SMILES_TOKEN.findall(smiles)
    if sum(map(len, tokens)) != len(smiles):
        pos = 0
        for tok in tokens:  # findall skips what it cannot match: find the first skipped character
            at = smiles.find(tok, pos)
            if at != pos:
                break
            pos += len(tok)
        raise DataError(f"SMILES {smiles[:80]!r} has {smiles[pos]!r} at position {pos}, which is not SMILES "
                        "syntax (atoms, [bracket atoms], bonds, branches, ring digits, %nn)")
    return tokens


class SmilesCodec:
    """Token <-> id over a vocabulary learned from a corpus of SMILES (specials first, then sorted)."""

    kind = "smiles"

    def __init__(self, tokens: list[str]) -> None:
        if not isinstance(tokens, list) or tokens[:3] != list(SPECIALS) or len(set(tokens)) != len(tokens):
            raise DataError("a SMILES vocabulary is a list of distinct tokens starting with <pad>, <bos>, <eos>; "
                            "build it with SmilesCodec.from_text(corpus)")
        self._tokens = tokens
        self._stoi = {t: i for i, t in enumerate(tokens)}
        self.pad_id, self.bos_id, self.eos_id = 0, 1, 2

    @classmethod
    def from_text(cls, text: str) -> SmilesCodec:
        """The vocabulary of every token in ``text`` (one SMILES per line), sorted for deterministic ids."""
        seen: set[str] = set()
        for line in text.splitlines():
            if line.strip():
                seen.update(tokenize(line.strip()))
        if not seen:
            raise DataError("cannot build a SMILES vocabulary from an empty corpus; give one SMILES per line")
        return cls([*SPECIALS, *sorted(seen)])

    @classmethod
    def from_corpus(cls, pieces: Iterable[str], cfg: Any) -> SmilesCodec:
        """The codec a recipe's ``[codec]`` (``cfg``) asks for, built from the corpus text."""
        return cls.from_text("".join(pieces))

    @property
    def vocab_size(self) -> int:
        return len(self._tokens)

    @property
    def tokens(self) -> list[str]:
        return list(self._tokens)

    def token_ids(self, smiles: str) -> list[int]:
        """The ids of one SMILES's tokens, without specials; a token outside the vocabulary is a DataError."""
        out = []
        for tok in tokenize(smiles):
            i = self._stoi.get(tok)
            if i is None or i < len(SPECIALS):
                raise DataError(f"SMILES {smiles[:80]!r} has the token {tok!r}, which this model's "
                                f"{self.vocab_size - len(SPECIALS)}-token vocabulary does not have; remove it or "
                                "train on a corpus that contains it")
            out.append(i)
        return out

    def encode(self, text: str) -> list[int]:
        """Each line -> ``<bos> tokens``, plus ``<eos>`` if a newline ends it; blank lines are skipped and
        the empty text is ``[<bos>]`` (the start of a new molecule)."""
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
        toks, n = self._tokens, len(self._tokens)
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < n:
                raise DataError(f"token id {i} is outside the SMILES vocabulary (0..{n - 1}); the ids do not "
                                "belong to this model's codec")
            out.append("\n" if i == self.eos_id else "" if i < len(SPECIALS) else toks[i])
        return "".join(out)

    def decoder(self) -> SmilesStreamDecoder:
        return SmilesStreamDecoder(self)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "tokens": list(self._tokens)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SmilesCodec:
        if not isinstance(d, dict) or d.get("kind") != cls.kind or not isinstance(d.get("tokens"), list) \
                or not all(isinstance(t, str) for t in d["tokens"]):
            raise CheckpointError("malformed SMILES codec: expected {'kind': 'smiles', 'tokens': [str, ...]}")
        try:
            return cls(list(d["tokens"]))
        except DataError as err:
            raise CheckpointError(f"malformed SMILES codec: {err}") from err

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SmilesCodec) and self._tokens == other._tokens

    def __hash__(self) -> int:
        return hash(tuple(self._tokens))

    def __repr__(self) -> str:
        return f"SmilesCodec(vocab_size={self.vocab_size})"


class SmilesStreamDecoder:
    """Every id is a whole token, so each push returns its text at once."""

    def __init__(self, codec: SmilesCodec) -> None:
        self._codec = codec

    def push(self, token_id: int) -> str:
        return self._codec.decode((token_id,))

    def flush(self) -> str:
        return ""
