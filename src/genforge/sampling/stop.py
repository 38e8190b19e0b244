"""Stop strings: incremental matching for streams, and cutting a finished token sequence."""

from __future__ import annotations

from collections.abc import Sequence

from ..types import Codec


class StopMatcher:
    """Streams text while watching for stop strings, never leaking any part of one.

    ``push`` returns the text that is safe to show: everything except the longest suffix that could still
    grow into a stop string, which is held back until the next piece decides it. On a full match it
    returns the text before the (earliest) stop string and ``stopped=True``; later pushes return
    ``("", True)``. ``flush`` releases the held text once the stream ends without a match.
    """

    def __init__(self, stops: Sequence[str]) -> None:
        if any(not s for s in stops):
            raise ValueError("stop strings must be non-empty")
        self.stops: tuple[str, ...] = tuple(stops)
        self.stopped = False
        self._held = ""
        self._longest = max((len(s) for s in self.stops), default=0)

    def push(self, piece: str) -> tuple[str, bool]:
        """Add ``piece``; return ``(safe_text, stopped)``."""
        if self.stopped:
            return "", True
        if not self.stops:
            return piece, False
        buf = self._held + piece
        # A match can only start inside the held text or the new piece: everything released
        # earlier was checked not to be the start of any stop string.
        cut = min((i for i in (buf.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            self._held = ""
            return buf[:cut], True
        hold = self._partial_suffix(buf)
        self._held = buf[len(buf) - hold :]
        return buf[: len(buf) - hold], False

    def flush(self) -> str:
        """End of stream: release the held text (empty after a stop)."""
        out, self._held = ("" if self.stopped else self._held), ""
        return out

    def _partial_suffix(self, buf: str) -> int:
        """Length of the longest suffix of ``buf`` that is a proper prefix of some stop string."""
        for n in range(min(len(buf), self._longest - 1), 0, -1):
            tail = buf[len(buf) - n :]
            if any(len(s) > n and s.startswith(tail) for s in self.stops):
                return n
        return 0


def find_stop(text: str, stops: Sequence[str]) -> int:
    """Index of the earliest occurrence of any stop string in ``text``, or -1."""
    return min((i for i in (text.find(s) for s in stops) if i >= 0), default=-1)


def cut_at_stop(codec: Codec, ids: Sequence[int], stops: Sequence[str]) -> tuple[str, int, bool]:
    """Decode ``ids`` and cut the text at the earliest stop string.

    Returns ``(text, n_kept, stopped)``. ``text`` is the text before the stop string; ``n_kept`` counts
    the tokens needed to produce it: the shortest prefix of ``ids`` whose decoded text covers ``text``
    (a token that straddles the start of the stop string is kept, one that starts exactly at it is not).
    Without a stop string the whole decode is returned with ``n_kept == len(ids)``.
    """
    full = codec.decode(ids)
    cut = find_stop(full, stops) if stops else -1
    if cut < 0:
        return full, len(ids), False
    if cut == 0:
        return "", 0, True
    decoder = codec.decoder()
    produced = 0
    for n, token_id in enumerate(ids, start=1):
        produced += len(decoder.push(int(token_id)))
        if produced >= cut:
            return full[:cut], n, True
    return full[:cut], len(ids), True
