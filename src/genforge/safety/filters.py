"""Input and output safety filters: blocklists, patterns and an optional classifier, with a refusal log.

The server (``genforge serve --safety FILE``) refuses a prompt or chat message that a filter blocks before
any generation, and cuts generated text before a blocked span (OpenAI's ``finish_reason``
"content_filter"). Matching undoes the usual evasions (``blocklist.py``). These are lists, not a
moderation model: they stop what they name, and a determined user can still phrase around them; the
optional classifier (any ``list[str] -> list[float]`` function) is where a learned model plugs in. See
OWASP's Top 10 for LLM applications (2025): LLM01 prompt injection, LLM05 improper output handling.

Settings are a TOML file with a ``[safety]`` table (keys: the fields of ``SafetySettings``)::

    [safety]
    use_defaults = true                  # keep the small built-in list (DEFAULT_BLOCKLIST)
    input_blocklist = ["forbidden phrase"]
    output_blocklist = ["secret word"]
    patterns = ['\\b\\d{4}([ -]?\\d{4}){3}\\b']   # regular expressions, on normalized text, both ways
    classifier = "mymodule:score"        # or "checks.py:score", relative to this file
    threshold = 0.8
    refusal_message = "This request was refused by the content policy."
    log_path = "/var/log/genforge/safety.jsonl"  # default: GENFORGE_HOME/logs/safety.jsonl

Every refusal appends one JSON line to the log: time, direction, rule, model, the SHA-256 of the text
and a short excerpt around the match (never a request's headers or key).
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import math
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, GenforgeError
from .blocklist import LETTER_SYMBOLS, Blocklist, Hit, LetterStream, Normalized, letter_stream, normalize

# The built-in list: a few requests for clearly harmful instructions, as an example of the format. It is
# not a moderation policy; a settings file extends it (or replaces it: use_defaults = false).
DEFAULT_BLOCKLIST = ("how to make a bomb", "how to build a bomb", "make a pipe bomb", "build a pipe bomb",
                     "synthesize sarin", "make ricin", "cook meth", "make methamphetamine")
DEFAULT_REFUSAL = "This request was refused by the content policy."
PATTERN_HOLD_CAP = 256  # normalized characters a stream holds back for a pattern of unbounded width


class ClassifierError(GenforgeError):
    """The configured classifier raised or returned something other than one score in [0, 1] per text."""


@dataclass(frozen=True)
class SafetySettings:
    input_blocklist: tuple[str, ...] = ()  # words and phrases refused in prompts and chat messages
    output_blocklist: tuple[str, ...] = ()  # words and phrases cut from generated text
    patterns: tuple[str, ...] = ()  # regular expressions (case-insensitive, on normalized text), both ways
    use_defaults: bool = True  # also apply DEFAULT_BLOCKLIST, to inputs and outputs
    classifier: str | None = None  # "module:function" or "path.py:function", list[str] -> list[float] in [0, 1]
    threshold: float = 0.5  # an input whose classifier score is at least this is refused
    refusal_message: str = DEFAULT_REFUSAL  # the error message a refused request gets
    log_path: str | None = None  # JSON lines, one per refusal; None: GENFORGE_HOME/logs/safety.jsonl

    def __post_init__(self) -> None:
        for name in ("input_blocklist", "output_blocklist", "patterns"):
            value = getattr(self, name)
            if isinstance(value, str) or not isinstance(value, list | tuple) \
                    or not all(isinstance(v, str) and v.strip() for v in value):
                raise ConfigError(f"safety.{name} must be a list of non-empty strings, got {value!r}")
            object.__setattr__(self, name, tuple(value))
        for p in self.patterns:
            try:
                rx = re.compile(p, re.IGNORECASE)
            except re.error as e:
                raise ConfigError(f"safety.patterns entry {p!r} is not a valid regular expression: {e}") from None
            if rx.search(""):
                raise ConfigError(f"safety.patterns entry {p!r} matches the empty string: it would block everything")
        if not isinstance(self.threshold, int | float) or isinstance(self.threshold, bool) \
                or not 0.0 <= self.threshold <= 1.0:
            raise ConfigError(f"safety.threshold {self.threshold!r} is invalid: allowed a number from 0 to 1")
        if not isinstance(self.refusal_message, str) or not self.refusal_message.strip() \
                or "\n" in self.refusal_message or len(self.refusal_message) > 500:
            raise ConfigError("safety.refusal_message must be one non-empty line of at most 500 characters")
        if self.classifier is not None and not _CLASSIFIER_SPEC.fullmatch(str(self.classifier)):
            raise ConfigError(f"safety.classifier {self.classifier!r} must look like module:function or "
                              "path/to/file.py:function")


_CLASSIFIER_SPEC = re.compile(r"(?P<target>[^:]+|[A-Za-z]:[^:]+):(?P<name>[A-Za-z_]\w*)")


def load_settings(path: str | Path) -> SafetySettings:
    """``SafetySettings`` from the ``[safety]`` table of a TOML file; ``ConfigError`` naming the problem.

    A relative ``path.py`` classifier is resolved against the file's folder.
    """
    from ..config import from_dict, load_toml

    p = Path(path)
    data = load_toml(p)
    table = data.get("safety")
    if not isinstance(table, dict):
        found = ", ".join(sorted(data)) or "nothing"
        raise ConfigError(f"safety settings {str(p)!r} have no [safety] table (found: {found}): put the keys "
                          "under a [safety] line")
    if isinstance(table.get("classifier"), str):
        target, sep, name = table["classifier"].rpartition(":")
        if target.endswith(".py") and not Path(target).is_absolute():
            table = {**table, "classifier": f"{(p.parent / target).resolve()}:{name}"}
    try:
        return from_dict(SafetySettings, table, "safety")
    except ConfigError as e:
        raise ConfigError(f"{p}: {e}") from None


def load_classifier(spec: str) -> Callable[[list[str]], list[float]]:
    """The function ``spec`` names (imported once), wrapped to check its scores; ``ConfigError`` if absent."""
    m = _CLASSIFIER_SPEC.fullmatch(spec)
    if m is None:
        raise ConfigError(f"safety.classifier {spec!r} must look like module:function or path/to/file.py:function")
    target, name = m["target"], m["name"]
    try:
        if target.endswith(".py"):
            if not Path(target).is_file():
                raise ConfigError(f"safety.classifier {spec!r}: file {target!r} not found")
            mod_spec = importlib.util.spec_from_file_location(f"genforge_safety_{Path(target).stem}", target)
            module = importlib.util.module_from_spec(mod_spec)
            mod_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
    except ConfigError:
        raise
    except Exception as e:  # any import-time failure of the user's module, in one line
        raise ConfigError(f"safety.classifier {spec!r}: cannot import {target}: {type(e).__name__}: {e}") from None
    fn = getattr(module, name, None)
    if not callable(fn):
        raise ConfigError(f"safety.classifier {spec!r}: {target} has no function {name}")

    def classify(texts: list[str]) -> list[float]:
        try:
            scores = list(fn(list(texts)))
        except Exception as e:
            raise ClassifierError(f"safety classifier {spec} failed: {type(e).__name__}: {e}") from None
        if len(scores) != len(texts) or not all(isinstance(s, int | float) and not isinstance(s, bool)
                                                and math.isfinite(s) and 0 <= s <= 1 for s in scores):
            raise ClassifierError(f"safety classifier {spec} returned {scores!r:.80}; it must return one score in "
                                  f"[0, 1] per text ({len(texts)} here)")
        return [float(s) for s in scores]

    return classify


def _pattern_width(rx: re.Pattern) -> int:
    """Most normalized characters one match of ``rx`` can span (capped: unbounded repeats)."""
    try:
        high = re._parser.parse(rx.pattern, rx.flags).getwidth()[1]  # type: ignore[attr-defined]
    except Exception:
        return PATTERN_HOLD_CAP
    return min(int(high), PATTERN_HOLD_CAP)


class SafetyFilter:
    """Compiled settings: ``check_input`` for requests, ``guard`` for a generated stream, a refusal log."""

    def __init__(self, settings: SafetySettings) -> None:
        from ..paths import genforge_home

        self.settings = settings
        defaults = DEFAULT_BLOCKLIST if settings.use_defaults else ()
        self.inputs = Blocklist(defaults + settings.input_blocklist, "input_blocklist")
        self.outputs = Blocklist(defaults + settings.output_blocklist, "output_blocklist")
        self.patterns = [(p, re.compile(p, re.IGNORECASE)) for p in settings.patterns]
        self.pattern_width = max((_pattern_width(rx) for _, rx in self.patterns), default=0)
        self.classify = load_classifier(settings.classifier) if settings.classifier else None
        self.log_path = Path(settings.log_path) if settings.log_path else genforge_home() / "logs" / "safety.jsonl"
        try:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"safety log folder {str(self.log_path.parent)!r} cannot be created: {e}") from None
        self._lock = threading.Lock()

    def scan(self, text: str, blocklist: Blocklist, final: bool = True) -> Hit | None:
        """The earliest blocklist or pattern hit in ``text`` (see ``Blocklist.find`` for ``final``)."""
        norm = normalize(text)
        hits = [blocklist.find(letter_stream(norm), final) if blocklist.entries else None,
                self.pattern_hit(norm, final)]
        return min((h for h in hits if h is not None), key=lambda h: h.start, default=None)

    def pattern_hit(self, norm: Normalized, final: bool = True) -> Hit | None:
        """The earliest pattern match in normalized text; with ``final=False`` none that touches its end."""
        hits = []
        for p, rx in self.patterns:
            for m in rx.finditer(norm.text):
                if m.end() > m.start() and (final or m.end() < len(norm.text)):
                    hits.append(Hit(f"pattern: {p}", norm.source_index(m.start()), norm.source_index(m.end() - 1) + 1))
                    break
        return min(hits, key=lambda h: h.start, default=None)

    def check_input(self, texts: Sequence[str], model: str = "") -> Hit | None:
        """The first rule that refuses any of ``texts`` (blocklists and patterns, then the classifier),
        logged; None when all pass. ``ClassifierError`` when the classifier misbehaves."""
        for text in texts:
            hit = self.scan(text, self.inputs)
            if hit is not None:
                self.log("input", hit, text, model)
                return hit
        if self.classify is not None and texts:
            scores = self.classify(list(texts))
            worst = max(range(len(texts)), key=lambda i: scores[i])
            if scores[worst] >= self.settings.threshold:
                hit = Hit(f"classifier: {self.settings.classifier} (score {scores[worst]:.3f} >= "
                          f"{self.settings.threshold:g})", 0, len(texts[worst]))
                self.log("input", hit, texts[worst], model)
                return hit
        return None

    def guard(self, model: str = "") -> OutputGuard:
        """A stream guard for one generated text (one choice)."""
        return OutputGuard(self, model)

    def check_output(self, text: str, model: str = "") -> tuple[str, Hit | None]:
        """A whole generated text through a guard: the text it lets out, and the hit that cut it."""
        g = self.guard(model)
        safe, _, hit = g.push(text, final=True)
        return safe, hit

    def log(self, direction: str, hit: Hit, text: str, model: str) -> None:
        """Append one JSON line for a refusal; a log that cannot be written is reported, not fatal."""
        excerpt = text[max(0, hit.start - 30):hit.end + 30][:120]
        record = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "direction": direction,
                  "rule": hit.rule, "model": model, "sha256": hashlib.sha256(text.encode()).hexdigest(),
                  "excerpt": excerpt}
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with self._lock:
            try:
                with open(self.log_path, "a", encoding="utf-8", buffering=1) as f:
                    f.write(line)
            except OSError as e:
                print(f"genforge: warning: cannot append to the safety log {self.log_path}: {e}", file=sys.stderr)


class OutputGuard:
    """Lets a generated stream out only up to where no blocked span can still start.

    ``push`` takes the next piece of text (and opaque items tied to it, e.g. token log-probabilities) and
    returns the text and items now safe to show. It holds back the characters a match could still need:
    the words from the first one (within the longest entry's reach) whose letters so far begin an entry,
    a trailing word that may still change its letters ("11" reads "ii" once a letter follows, "@" becomes
    a letter), and ``pattern_width`` normalized characters when there are patterns. So text streams as it
    comes, and a word that could begin a blocked phrase waits until the phrase is decided. On a hit the
    text is cut before the match, the rest of the stream is dropped and the refusal logged. Streamed and
    whole responses push the same pieces, so both cut at the same place.
    """

    def __init__(self, owner: SafetyFilter, model: str = "") -> None:
        self.owner, self.model = owner, model
        self.text = ""  # everything pushed so far
        self.released = 0  # characters of ``text`` handed out
        self.base = 0  # blocklist scans restart here: a word start before which no match can begin any more
        self.pattern_base = 0  # the same for the patterns
        self.hit: Hit | None = None
        self.items: deque[tuple[int, Any]] = deque()  # (end offset in text, item)

    def push(self, piece: str, items: Sequence[Any] = (), final: bool = False) -> tuple[str, list, Hit | None]:
        """Add ``piece``; return (text now safe, items now safe, the hit if the stream was cut just now)."""
        if self.hit is not None:
            return "", [], None
        self.text += piece
        self.items.extend((len(self.text), item) for item in items)
        owner = self.owner
        # the blocklist looks at a few words from ``base``, the patterns at up to pattern_width characters
        stream = letter_stream(normalize(self.text[self.base:])) if owner.outputs.entries else None
        pnorm = normalize(self.text[self.pattern_base:]) if owner.patterns else None
        found = []
        if stream is not None and (h := owner.outputs.find(stream, final)) is not None:
            found.append(Hit(h.rule, self.base + h.start, self.base + h.end))
        if pnorm is not None and (h := owner.pattern_hit(pnorm, final)) is not None:
            found.append(Hit(h.rule, self.pattern_base + h.start, self.pattern_base + h.end))
        if found:
            self.hit = min(found, key=lambda h: h.start)
            owner.log("output", self.hit, self.text, self.model)
            out, kept = self._release(self.hit.start)
            self.items.clear()
            return out, kept, self.hit
        safe = len(self.text)
        if final:
            return self._release(safe) + (None,)
        if stream is not None:
            safe = min(safe, self._entries_hold(stream))
        if pnorm is not None:
            cut = max(0, len(pnorm.text) - owner.pattern_width)
            safe = min(safe, self.pattern_base + pnorm.source_index(cut))
            self.pattern_base += pnorm.source_index(_word_start(pnorm.text, cut))
        return self._release(safe) + (None,)

    def _entries_hold(self, stream: LetterStream) -> int:
        """Where the blocklist needs the stream held from (absolute); moves ``base`` up to the word it is in."""
        norm, text = stream.norm, stream.norm.text
        word = _word_start(text, len(text))
        tail = text[word:]  # the last word may change: a trailing "@" may become a letter, "11" may read "ii"
        safe = word if any(c in LETTER_SYMBOLS for c in tail) or not any(c.isalpha() for c in tail) else len(text)
        letters, pieces, keys = stream.letters, stream.piece, self.owner.outputs.keys
        for s in range(max(0, len(letters) - self.owner.outputs.longest), len(letters)):
            # a match still to come (or one that awaits the end of its last word) starts at a word start
            # whose letters so far begin some entry
            if (s == 0 or pieces[s] != pieces[s - 1]) and any(k.startswith(letters[s:]) for k in keys):
                safe = min(safe, stream.position[s])
                break
        held, self.base = self.base + norm.source_index(safe), self.base + norm.source_index(_word_start(text, safe))
        return held

    def _release(self, upto: int) -> tuple[str, list]:
        out = self.text[self.released:upto] if upto > self.released else ""
        self.released = max(self.released, upto)
        kept = []
        while self.items and self.items[0][0] <= self.released:
            kept.append(self.items.popleft()[1])
        return out, kept


def _word_start(text: str, i: int) -> int:
    """The start of the word (letters, digits, and the symbols that may stand for letters) ending at ``i``."""
    while i > 0 and (text[i - 1].isalnum() or text[i - 1] in LETTER_SYMBOLS):
        i -= 1
    return i


def load_filter(spec: str | SafetySettings) -> SafetyFilter:
    """``"default"`` (the built-in list), a TOML file path, or settings -> a ready filter; ``ConfigError``
    (one line) for a bad file, pattern or classifier."""
    if isinstance(spec, SafetySettings):
        return SafetyFilter(spec)
    if str(spec) == "default":
        return SafetyFilter(SafetySettings())
    return SafetyFilter(load_settings(spec))


CUT_NOTE = "\n[stopped by the content filter]"


def refuse_input(flt: SafetyFilter, texts: Sequence[str], model: str = "") -> None:
    """Raise ``GenforgeError`` with the refusal message when the filter blocks any of ``texts``."""
    hit = flt.check_input(texts, model)
    if hit is not None:
        raise GenforgeError(f"{flt.settings.refusal_message} (rule {hit.rule!r}; logged to {flt.log_path})")


def screened(pieces: Iterable[str], flt: SafetyFilter, model: str = "") -> Iterator[str]:
    """A generated text stream as the filter's guard lets it out (``genforge generate`` and ``chat``): held
    back while a blocked span may still start, cut before one with ``CUT_NOTE`` after it."""
    guard = flt.guard(model)
    for piece in pieces:
        out, _, hit = guard.push(piece)
        if out:
            yield out
        if hit is not None:
            yield CUT_NOTE
            return
    out, _, hit = guard.push("", final=True)
    if out:
        yield out
    if hit is not None:
        yield CUT_NOTE
