"""SMILES codec: a regex tokenizer with begin, end and padding tokens.

Tokens follow the regular expression of Schwaller et al. 2019 ("Molecular Transformer", ACS Cent.
Sci. 5, 1572): a bracket atom (``[nH]``, ``[C@@H]``, ``[N+]``) is one token, two-letter organic atoms
(``Br``, ``Cl``) are one token, ring closures above 9 are written ``%nn`` and are one token, and every
bond, branch, stereo mark (``/``, ``\\``, ``@``) and digit is its own token.

One molecule per line, as every line-token codec (``codecs.lines``): a newline ends a molecule, so the
text machinery (shards, the ``lm`` task, the token loop, the server) carries SMILES unchanged.
"""
from __future__ import annotations

import re

from ..errors import DataError
from .lines import SPECIALS, LineTokenCodec

SMILES_TOKEN = re.compile(
    r"(\[[^\[\]]+\]|Br|Cl|N|O|S|P|F|I|B|C|b|c|n|o|s|p|\(|\)|\.|=|#|-|\+|\\|/|:|~|@|\?|>|\*|\$|%[0-9]{2}|[0-9])")


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


class SmilesCodec(LineTokenCodec):
    """Token <-> id over a vocabulary learned from a corpus of SMILES (specials first, then sorted)."""

    kind = "smiles"
    what = "SMILES"
    pipeline = "molecule"
    tokenize = staticmethod(tokenize)


__all__ = ["SPECIALS", "SmilesCodec", "tokenize"]
