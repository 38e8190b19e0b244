"""Watermark detection, and the one settings file that embedding and detection share.

Detection is the one-proportion z-test of Kirchenbauer et al. 2023 ("A Watermark for Large Language
Models", Sec. 4): re-encode the text with the model's codec, count the tokens that are green after their
context (``sampling.watermark``), and compare the count g over T scored tokens with the ``gamma * T``
that text written without the key holds on average: ``z = (g - gamma T) / sqrt(T gamma (1 - gamma))``,
one-sided p-value ``erfc(z / sqrt 2) / 2``. It needs the key, never the model's weights or logits.

A (context, token) pair that occurs again is scored once (Kirchenbauer et al. 2023b, "On the Reliability
of Watermarks for Large Language Models", Sec. 4): human text repeats n-grams ("th", "the", indentation
in code), and every repeat of a pair that happens to be green would add the same evidence again, so z
would overstate it; with repeats dropped the scored tokens are distinct hash inputs and the test's null
holds. It costs short texts some scored tokens, which is why ``min_tokens`` counts scored tokens: below
it the verdict is "inconclusive" whatever z says, never a claim. The first ``context`` tokens of a text
have no context to score against unless the prompt that preceded them is known.

The settings file (``genforge_home()/watermark.json`` unless the user names another; JSON, owner-only
0600, written atomically) holds gamma, delta, context, scheme, key, version, and the codecs it has
watermarked with (fingerprints of each model's codec: a detection through a codec the settings never
embedded with is refused, since its tokens would be other tokens). Each watermarked output file gets a
record beside it (``NAME.watermark.json``: the settings without the key, a key id, the codec, the model
and the prompt), so detecting it with other settings or another model's codec is refused, naming both.
"""
from __future__ import annotations

import hashlib
import json
import math
import secrets
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_write_text
from ..errors import GenforgeError
from ..paths import genforge_home
from ..sampling.watermark import WatermarkError, WatermarkSettings, is_green
from ..types import TokenCodec

VERSION = 1  # of the settings file and of the records beside watermarked files
SETTINGS_NAME = "watermark.json"
RECORD_SUFFIX = ".watermark.json"
PUBLIC = ("scheme", "gamma", "delta", "context")  # what a record and the API show (never the key)


def default_settings_path() -> Path:
    return genforge_home() / SETTINGS_NAME


def key_id(key: str) -> str:
    """A short public name of a key (a hash: tells two keys apart without revealing either)."""
    return hashlib.sha256(f"genforge-watermark-key-id:{key}".encode()).hexdigest()[:16]


def codec_fingerprint(codec: TokenCodec) -> str:
    """``KIND:HASH`` of the codec's full description: equal exactly when two codecs tokenize alike."""
    blob = json.dumps(codec.to_dict(), sort_keys=True, ensure_ascii=False, default=str)
    return f"{codec.kind}:{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


@dataclass
class WatermarkFile:
    """A settings file: the ``WatermarkSettings`` and the codecs they have watermarked with."""

    path: Path
    settings: WatermarkSettings
    codecs: dict[str, str]  # codec fingerprint -> the model first watermarked through it

    def public(self) -> dict[str, Any]:
        """The settings anyone may see: scheme, gamma, delta, context and the key's id, not the key."""
        return {**{k: getattr(self.settings, k) for k in PUBLIC}, "key_id": key_id(self.settings.key)}

    def save(self) -> None:
        data = {"version": VERSION, **asdict(self.settings), "codecs": self.codecs}
        atomic_write_text(self.path, json.dumps(data, indent=2) + "\n", mode=0o600)

    def register(self, codec: TokenCodec, model: str) -> None:
        """Record that these settings watermark through ``codec`` (so detection may use it)."""
        fp = codec_fingerprint(codec)
        if fp in self.codecs:
            return
        self.codecs[fp] = str(model)
        try:
            self.save()
        except OSError as e:
            raise GenforgeError(f"cannot record {model}'s codec in the watermark settings {self.path} "
                                f"({e.strerror or e}): make the file writable") from None

    def check_codec(self, codec: TokenCodec, model: str) -> None:
        """Raise unless these settings have watermarked through ``codec``."""
        fp = codec_fingerprint(codec)
        if fp in self.codecs:
            return
        used = ", ".join(f"{m} ({f})" for f, m in self.codecs.items()) or "no model yet"
        raise GenforgeError(f"the watermark settings {self.path} never watermarked through {model}'s codec ({fp}); "
                            f"they were used with {used}: detect with one of those models (--model)")


def load_watermark(path: str | Path | None = None, create: bool = False) -> WatermarkFile:
    """The settings file at ``path`` (default: ``genforge_home()/watermark.json``). With ``create`` a missing
    file is made with a random 256-bit key and the default settings (embedding); without, it is an error
    (detection: a fresh key has marked nothing). A malformed file is a one-line ``GenforgeError``."""
    p = Path(path).expanduser() if path is not None else default_settings_path()
    if not p.exists():
        if not create:
            raise GenforgeError(f"no watermark settings at {p}: nothing was watermarked with them; give the file "
                                "the text was made with (--watermark-settings FILE)")
        wfile = WatermarkFile(p, WatermarkSettings(key=secrets.token_hex(32)), {})
        try:
            wfile.save()
        except OSError as e:
            raise GenforgeError(f"cannot write the watermark settings {p}: {e.strerror or e}") from None
        return wfile
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise GenforgeError(f"{p} is not a readable watermark settings file ({type(e).__name__}: "
                            f"{str(e).splitlines()[0] if str(e) else ''})") from None
    if not isinstance(data, dict) or data.get("version") != VERSION:
        found = data.get("version") if isinstance(data, dict) else type(data).__name__
        raise GenforgeError(f"{p} is not a version-{VERSION} watermark settings file (version {found!r}); "
                            "let genforge make one (leave out --watermark-settings) or fix it")
    fields = {k: data[k] for k in ("key", "gamma", "delta", "context", "min_tokens", "z_threshold", "scheme")
              if k in data}
    codecs = data.get("codecs", {})
    if "key" not in fields or not isinstance(codecs, dict):
        raise GenforgeError(f"{p}: a watermark settings file needs a \"key\" string and a \"codecs\" object")
    try:
        return WatermarkFile(p, WatermarkSettings(**fields), {str(k): str(v) for k, v in codecs.items()})
    except WatermarkError as e:
        raise GenforgeError(f"{p}: {e}") from None


@dataclass(frozen=True)
class Detection:
    """The z-test over one text's scored tokens, and what it says."""

    z_score: float
    p_value: float  # one-sided: the chance of so many green tokens in text written without the key
    scored_tokens: int  # distinct (context, token) pairs scored
    green_tokens: int
    green_fraction: float  # green / scored (gamma is expected without the watermark)
    total_tokens: int  # tokens of the text, scored or not
    verdict: str  # "watermarked", "not watermarked" or "inconclusive" (fewer than min_tokens scored)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def z_test(green: int, scored: int, gamma: float) -> tuple[float, float]:
    """``(z, one-sided p)`` of ``green`` green tokens among ``scored`` (``(0, 1)`` when nothing is scored)."""
    if scored <= 0:
        return 0.0, 1.0
    z = (green - gamma * scored) / math.sqrt(scored * gamma * (1 - gamma))
    return z, 0.5 * math.erfc(z / math.sqrt(2))


def _windows(ids: Sequence[int], h: int, prefix: Sequence[int]) -> torch.Tensor:
    """(N, h + 1) context-and-token windows of the scored positions: each position after the prefix (or
    after the first h tokens without one), its context left-padded with -1 as generation pads it."""
    full = [int(t) for t in prefix] + [int(t) for t in ids]
    start = len(prefix) if prefix else min(h, len(full))
    if not full:
        return torch.zeros(0, h + 1, dtype=torch.long)
    padded = torch.tensor([-1] * h + full, dtype=torch.long)
    return padded.unfold(0, h + 1, 1)[start:]  # row i: full[i - h .. i]


def _unique_rows(rows: torch.Tensor) -> torch.Tensor:
    """The distinct rows of a (N, C) int64 tensor of values >= -1. Each row becomes one integer (digits in base
    max + 2) when that fits in 63 bits: ``unique`` over a flat tensor is ~50x faster than over rows."""
    base = int(rows.max()) + 2 if len(rows) else 2
    if rows.shape[1] * math.log2(base) >= 63:
        return torch.unique(rows, dim=0)
    keys = torch.zeros(len(rows), dtype=torch.long)
    for j in range(rows.shape[1]):
        keys = keys * base + (rows[:, j] + 1)
    keys = torch.unique(keys)
    out = torch.empty(len(keys), rows.shape[1], dtype=torch.long)
    for j in range(rows.shape[1] - 1, -1, -1):
        out[:, j] = keys % base - 1
        keys = keys // base
    return out


def detect_many(texts: Sequence[Sequence[int]], settings: WatermarkSettings,
                prefixes: Sequence[Sequence[int]] | None = None) -> list[Detection]:
    """``detect_ids`` over many token sequences at once: one ``unique`` drops each text's repeated pairs and
    one vectorized hash scores the rest (benchmarks score thousands of passages)."""
    h = settings.context
    prefixes = prefixes if prefixes is not None else [()] * len(texts)
    rows = [torch.cat([torch.full((len(w), 1), k), w], 1)
            for k, w in enumerate(_windows(ids, h, p) for ids, p in zip(texts, prefixes, strict=True))]
    pairs = _unique_rows(torch.cat(rows)) if rows else torch.zeros(0, h + 2, dtype=torch.long)  # (M, 1+h+1)
    green = is_green(pairs[:, 1:h + 1], pairs[:, h + 1], settings) if len(pairs) else torch.zeros(0, dtype=torch.bool)
    scored = torch.bincount(pairs[:, 0], minlength=len(texts)).tolist()
    greens = torch.bincount(pairs[:, 0], weights=green.double(), minlength=len(texts)).long().tolist()
    out = []
    for ids, n, g in zip(texts, scored, greens):
        z, p = z_test(g, n, settings.gamma)
        verdict = ("inconclusive" if n < settings.min_tokens else
                   "watermarked" if z >= settings.z_threshold else "not watermarked")
        out.append(Detection(z, p, n, g, g / n if n else 0.0, len(ids), verdict))
    return out


def detect_ids(ids: Sequence[int], settings: WatermarkSettings, prefix: Sequence[int] = ()) -> Detection:
    """Detect over token ``ids``. ``prefix``: the ids that came before them (a prompt), which gives the first
    tokens their context; without it the first ``settings.context`` tokens are not scored."""
    return detect_many([ids], settings, [prefix])[0]


def detect_text(text: str, codec: TokenCodec, settings: WatermarkSettings, prompt: str | None = None) -> Detection:
    """Detect over ``text`` encoded with ``codec`` (the model's: tokenization must match generation's).
    When ``text`` starts with ``prompt`` the prompt's tokens are context only, never scored."""
    if prompt and text.startswith(prompt) and len(text) > len(prompt):
        return detect_ids(codec.encode(text[len(prompt):]), settings, codec.encode(prompt))
    return detect_ids(codec.encode(text), settings)


def record_path(path: str | Path) -> Path:
    """Where the watermark record of the output file ``path`` lives: ``path.watermark.json`` beside it."""
    p = Path(path)
    return p.with_name(p.name + RECORD_SUFFIX)


def write_record(path: str | Path, wfile: WatermarkFile, codec: TokenCodec, model: str, prompt: str = "") -> Path:
    """Write the record of a watermarked output file (no key in it) beside ``path``; return its path."""
    record = {"version": VERSION, "watermark": wfile.public(), "codec": codec_fingerprint(codec),
              "model": str(model), "prompt": prompt, "settings_file": str(wfile.path)}
    return atomic_write_text(record_path(path), json.dumps(record, indent=2) + "\n")


def read_record(path: str | Path) -> dict[str, Any] | None:
    """The record beside ``path``, or None when there is none; a malformed one is a ``GenforgeError``."""
    rp = record_path(path)
    if not rp.is_file():
        return None
    try:
        record = json.loads(rp.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise GenforgeError(f"{rp} is not a readable watermark record ({type(e).__name__}); delete it to detect "
                            "without it") from None
    if not isinstance(record, dict) or not isinstance(record.get("watermark"), dict) or "codec" not in record:
        raise GenforgeError(f"{rp} is not a genforge watermark record; delete it to detect without it")
    return record


def _describe(public: dict[str, Any]) -> str:
    return " ".join(f"{k}={public.get(k)}" for k in (*PUBLIC, "key_id"))


def check_record(record: dict[str, Any], wfile: WatermarkFile, codec: TokenCodec, model: str, file: str) -> None:
    """Refuse a detection whose settings or codec differ from those the file was watermarked with."""
    made, ours = record["watermark"], wfile.public()
    if any(made.get(k) != ours[k] for k in ours):
        raise GenforgeError(f"{file} was watermarked with {_describe(made)} (settings "
                            f"{record.get('settings_file', '?')}) but {wfile.path} holds {_describe(ours)}: detect "
                            "with the settings it was made with (--watermark-settings FILE)")
    fp = codec_fingerprint(codec)
    if record["codec"] != fp:
        raise GenforgeError(f"{file} was watermarked through {record.get('model', '?')}'s codec ({record['codec']}) "
                            f"but {model} encodes with {fp}: detect with --model {record.get('model', '?')}")
