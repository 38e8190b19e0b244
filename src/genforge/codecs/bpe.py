"""Byte-level BPE codec on top of Hugging Face ``tokenizers``.

Byte-level means the base alphabet is the 256 byte values, so any UTF-8 text (emoji, CJK, typos)
encodes and decodes exactly, with no unknown token. The price is that one character may span
several tokens; ``BPECodec.decoder()`` therefore buffers bytes and only releases whole characters,
which is what a streaming UI needs.

The codec travels inside checkpoints as the tokenizer's own JSON string (``to_dict``), so a model
file is self-contained.
"""
from __future__ import annotations

import codecs
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_text
from ..errors import CheckpointError, ConfigError, DataError

DEFAULT_SPECIALS: tuple[str, ...] = ("<|endoftext|>",)


def byte_alphabet() -> dict[str, int]:
    """Map each byte-level alphabet character back to the byte it stands for.

    Byte-level BPE represents every byte as a printable character: bytes that are already visible
    Latin-1 characters stand for themselves, the rest (controls, space, ...) are shifted to code
    points from 256 upward, in byte order. We rebuild that table to turn tokens into raw bytes.
    """
    visible = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    table = {chr(b): b for b in visible}
    hidden = [b for b in range(256) if b not in set(visible)]
    table.update({chr(256 + k): b for k, b in enumerate(hidden)})
    return table


class BPECodec:
    """A byte-level BPE tokenizer with exact round trips and a UTF-8-safe streaming decoder."""

    kind = "bpe"

    def __init__(self, tokenizer: Any) -> None:
        self._tok = tokenizer
        self._check_byte_level()
        self._bytes = self._token_bytes()

    # ----------------------------------------------------------------------------------- building
    @classmethod
    def from_corpus(cls, pieces: Iterable[str], cfg: Any) -> BPECodec:
        """The codec a recipe's ``[codec]`` (``cfg``) asks for, trained on the corpus text."""
        return cls.train(pieces, vocab_size=cfg.vocab_size)

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int,
              special_tokens: Sequence[str] = DEFAULT_SPECIALS, min_frequency: int = 2) -> BPECodec:
        """Learn merges from ``texts`` until the vocabulary (incl. 256 bytes + specials) reaches ``vocab_size``.

        Special tokens get the first ids, in the order given.
        """
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        specials = list(special_tokens)
        if isinstance(texts, str):
            texts = [texts]
        floor = 256 + len(specials)
        if not isinstance(vocab_size, int) or vocab_size < floor:
            raise ConfigError(f"BPE vocab_size={vocab_size!r} is too small: it must be at least {floor} "
                              f"(256 byte tokens + {len(specials)} special tokens)")
        if any(not isinstance(s, str) or not s for s in specials):
            raise ConfigError("special_tokens must be non-empty strings")
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
        tok.train_from_iterator(texts, trainer=trainer)
        return cls(tok)

    @classmethod
    def from_json(cls, text: str) -> BPECodec:
        """Build from a ``tokenizer.json`` string."""
        from tokenizers import Tokenizer

        try:
            tok = Tokenizer.from_str(text)
        except Exception as err:
            raise CheckpointError(f"malformed BPE tokenizer JSON: {str(err).splitlines()[0]}") from err
        return cls(tok)

    def _check_byte_level(self) -> None:
        """Refuse tokenizers that are not byte-level: our streaming decoder relies on byte tokens."""
        cfg = json.loads(self._tok.to_str())
        dec = cfg.get("decoder") or {}
        kinds = {dec.get("type")} | {d.get("type") for d in dec.get("decoders", []) or []}
        if "ByteLevel" not in kinds:
            raise CheckpointError("tokenizer is not byte-level BPE (its decoder is "
                                  f"{dec.get('type')!r}); genforge's BPE codec needs a ByteLevel decoder")

    def _token_bytes(self) -> list[bytes]:
        """Raw bytes of every id: byte-alphabet tokens map back to bytes, added tokens to their UTF-8."""
        alphabet = byte_alphabet()
        added = {i: t.content for i, t in self._tok.get_added_tokens_decoder().items()}
        n = self._tok.get_vocab_size(with_added_tokens=True)
        table: list[bytes] = []
        for i in range(n):
            if i in added:
                table.append(added[i].encode("utf-8"))
                continue
            tok = self._tok.id_to_token(i)
            if tok is None:
                table.append(b"")
                continue
            table.append(b"".join(bytes([alphabet[c]]) if c in alphabet else c.encode("utf-8") for c in tok))
        return table

    # ------------------------------------------------------------------------------- Codec protocol
    @property
    def vocab_size(self) -> int:
        """Number of token ids, special tokens included."""
        return len(self._bytes)

    @property
    def tokenizer(self) -> Any:
        """The wrapped ``tokenizers.Tokenizer`` (for callers that need batch encoding or offsets)."""
        return self._tok

    @property
    def special_tokens(self) -> tuple[str, ...]:
        """Special token strings, in id order."""
        dec = self._tok.get_added_tokens_decoder()
        return tuple(dec[i].content for i in sorted(dec) if dec[i].special)

    def token_to_id(self, token: str) -> int:
        """Id of a (special) token; a ``DataError`` if the codec does not have it."""
        i = self._tok.token_to_id(token)
        if i is None:
            raise DataError(f"the BPE codec has no token {token!r}; its special tokens are "
                            f"{list(self.special_tokens)}")
        return int(i)

    def encode(self, text: str) -> list[int]:
        """Text to ids. Adds no special tokens; special-token strings inside ``text`` become those tokens.

        Text that is not valid Unicode (a lone surrogate such as ``"\\ud800"``, which JSON and
        ``surrogateescape`` can produce) is a ``DataError`` naming the place, never a ``TypeError``.
        """
        if not isinstance(text, str):
            raise DataError(f"text to encode must be a string, got {type(text).__name__}")
        try:
            return list(self._tok.encode(text, add_special_tokens=False).ids)
        except TypeError:
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as err:
                raise DataError(f"text contains {text[err.start]!r} at position {err.start}, a lone surrogate "
                                "that is not a Unicode character; remove it (or fix the text's encoding)") from None
            raise

    def decode(self, ids: Iterable[int]) -> str:
        """Ids to text, byte-exact; invalid UTF-8 (e.g. a cut-off character) becomes U+FFFD."""
        return self._join(ids).decode("utf-8", errors="replace")

    def _join(self, ids: Iterable[int]) -> bytes:
        table = self._bytes
        n = len(table)
        parts = []
        for i in ids:
            i = int(i)
            if not 0 <= i < n:
                raise DataError(f"token id {i} is outside the BPE vocabulary (0..{n - 1}); the ids do "
                                "not belong to this model's codec")
            parts.append(table[i])
        return b"".join(parts)

    def decoder(self) -> BPEStreamDecoder:
        """A streaming decoder that never splits a multi-byte character."""
        return BPEStreamDecoder(self)

    # ---------------------------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable: the full tokenizer JSON travels inside the checkpoint."""
        return {"kind": self.kind, "tokenizer": self._tok.to_str()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BPECodec:
        """Inverse of ``to_dict``; malformed input is a ``CheckpointError``."""
        if not isinstance(d, dict) or d.get("kind") != cls.kind or not isinstance(d.get("tokenizer"), str):
            raise CheckpointError("malformed BPE codec: expected {'kind': 'bpe', 'tokenizer': <tokenizer JSON>}")
        return cls.from_json(d["tokenizer"])

    def save(self, path: str | Path) -> Path:
        """Write ``tokenizer.json`` atomically (a crash never leaves a half-written file)."""
        return atomic_write_text(path, self._tok.to_str(pretty=True))

    @classmethod
    def load(cls, path: str | Path) -> BPECodec:
        """Read a ``tokenizer.json`` written by ``save`` (or any byte-level BPE tokenizer file)."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise CheckpointError(f"tokenizer file {str(path)!r} does not exist; train a BPE codec first "
                                  "or give the right path") from None
        except (OSError, UnicodeDecodeError) as err:
            raise CheckpointError(f"cannot read tokenizer file {str(path)!r}: {err}") from err
        return cls.from_json(text)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BPECodec) and self._tok.to_str() == other._tok.to_str()

    def __hash__(self) -> int:
        return hash(self._tok.to_str())

    def __repr__(self) -> str:
        return f"BPECodec(vocab_size={self.vocab_size}, special_tokens={list(self.special_tokens)})"


class BPEStreamDecoder:
    """Push ids one at a time; get back only complete characters.

    Each token is turned into its raw bytes and fed to an incremental UTF-8 decoder, which holds
    back an incomplete multi-byte sequence until the rest arrives. The concatenation of every
    ``push`` plus ``flush`` equals ``codec.decode(all_ids)``.
    """

    def __init__(self, codec: BPECodec) -> None:
        self._codec = codec
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token_id: int) -> str:
        """Feed one id; returns the characters it completes (possibly "")."""
        return self._utf8.decode(self._codec._join((token_id,)))

    def flush(self) -> str:
        """End of stream: emit any incomplete tail as U+FFFD and reset for reuse."""
        out = self._utf8.decode(b"", final=True)
        self._utf8.reset()
        return out
