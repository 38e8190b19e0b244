"""The music pipeline: conditions (style, key, meter) and an optional melody -> event tokens -> sample -> a
piece, written as MIDI, WAV (FluidSynth) and a piano-roll PNG.

A music model is a token model over the event codec (``codecs.music``), trained by the ``lm`` task on one
piece per line. Generation starts after the conditions, and after the melody's own events when one is
given (its continuation), runs past the model's context by sliding its window, and ends at ``<eos>`` or
at the requested length.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..codecs.music import key_token, piece_to_text, text_to_piece
from ..data.music import Piece
from ..errors import DataError, GenforgeError
from .text import TextModel

MAX_N = 256  # pieces one call may ask for
MAX_SECONDS = 600.0
TOKENS_PER_QUARTER = 24  # a generous budget: the chorales average ~16 event tokens a quarter note


class MusicModel(TextModel):
    """A loaded music model: ``compose`` pieces, ``save`` them (``genforge.music``)."""

    modality = "music"

    def known(self, kind: str) -> list[str]:
        """The values of a condition (``style``, ``key``, ``meter``) this model's vocabulary has."""
        return [t.split(":", 1)[1].replace("_", " ") for t in self.codec.tokens if t.startswith(kind + ":")]

    def _condition(self, kind: str, value: str) -> str:
        known = self.known(kind)
        try:
            token = key_token(value) if kind == "key" else f"{kind}:{value}"
        except DataError as err:
            raise GenforgeError(str(err)) from None
        if token not in self.codec.tokens:
            raise GenforgeError(f"{kind} {value!r} is unknown to this model: it knows {', '.join(known)}")
        return token

    def prompt_text(self, style: str | None = None, key: str | None = None, meter: str | None = None,
                    melody: Piece | None = None) -> str:
        """The token line a piece starts from. Conditions left out are the model's to choose, except that a
        later one given needs the earlier ones: a meter without a key takes the melody's key or C major."""
        styles = self.known("style")
        style = style or (styles[0] if styles else "user")
        if melody is not None:
            key, meter = key or melody.key, meter or melody.meter
        if meter and not key:
            key = "C major"
        given = [style, key, meter]
        tokens = []
        for kind, value in zip(("style", "key", "meter"), given):
            if value is None:
                break
            tokens.append(self._condition(kind, value))
        if melody is not None:
            events = self._known_shifts(piece_to_text(melody).split()[3:])  # without the melody's own header
            unknown = sorted({t for t in events if t not in self.codec.tokens})
            if unknown:
                raise GenforgeError(f"the melody has events this model has no tokens for ({', '.join(unknown[:5])}): "
                                    "transpose it nearer the middle of the keyboard or simplify its rhythm")
            tokens += events
        return " ".join(tokens)

    def _known_shifts(self, events: list[str]) -> list[str]:
        """Time shifts the vocabulary lacks, written as sums of ones it has (largest first)."""
        have = sorted((int(v) for v in self.known("t")), reverse=True)
        out = []
        for tok in events:
            if not tok.startswith("t:") or tok in self.codec.tokens:
                out.append(tok)
                continue
            left = int(tok[2:])
            for v in have:
                while v <= left:
                    out.append(f"t:{v}")
                    left -= v
            if left:
                out.append(tok)  # cannot be written: reported as unknown
        return out

    def compose(self, n: int = 1, style: str | None = None, key: str | None = None, meter: str | None = None,
                melody: Piece | None = None, seconds: float = 30.0, temperature: float = 1.0, top_k: int = 0,
                top_p: float = 1.0, seed: int | None = None, batch_size: int = 64,
                callback: Callable[[int, int], None] | None = None, watermark: Any = None) -> list[Any]:
        """``n`` pieces of at most ``seconds`` each (``codecs.music.Decoded``: the piece and its count of
        malformed tokens, which were skipped)."""
        from ..music import TEMPO, trim
        from ..sampling.tokens import sample_sequences

        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_N:
            raise GenforgeError(f"n={n!r} is invalid: allowed an integer from 1 to {MAX_N}")
        if not 1.0 <= float(seconds) <= MAX_SECONDS:
            raise GenforgeError(f"seconds={seconds!r} is out of range: allowed 1 .. {MAX_SECONDS:g}")
        head = self.prompt_text(style, key, meter, melody)
        ids = self.codec.encode(head)
        if len(ids) >= self.context_length:
            raise GenforgeError(f"the melody is {len(ids)} tokens, more than the model's {self.context_length}-token "
                                "context: give a shorter one")
        tempo = TEMPO.get((style or (self.known("style") or ["user"])[0]), 100.0)
        budget = int(seconds * tempo / 60 * TOKENS_PER_QUARTER) + 16
        params = self.params(temperature=temperature, top_k=top_k, top_p=top_p, seed=seed, max_tokens=budget,
                             watermark=watermark)
        seqs = sample_sequences(self.model, ids, n, params, self.codec.eos_id, batch_size=batch_size,
                                callback=callback, slide=True)
        out = []
        for i, s in enumerate(seqs):
            d = text_to_piece(head + " " + self.codec.decode(s), name=f"piece-{i:03d}")
            d.piece, d.tokens = trim(d.piece, seconds), len(s)
            out.append(d)
        return out
