"""Token shards on disk: encode a corpus once, then memory-map it for training.

Layout of a shard folder: ``train.bin`` and ``val.bin`` (raw little-endian uint16/uint32 token
ids, readable with ``np.memmap``) and ``meta.json`` (dtype, counts, codec, source, content hash).
Encoding streams the text in bounded chunks, so a corpus larger than RAM works. The split follows
nanoGPT: the first ``1 - val_fraction`` of tokens is train, the exact tail is validation.
Folders appear atomically (built and fsynced in a temp folder, then renamed), so an interrupted
run never leaves a shard folder that looks complete; temp folders of killed writers
(``.NAME.tmp-PID-*``, ``.NAME.old-PID-*``) are removed by the next ``prepare_shards``.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import fsync_path, left_by_dead_writer
from ..errors import DataError
from ..types import Codec
from .corpus import CorpusSpec, iter_corpus

FORMAT = 1
CHUNK_CHARS = 1 << 20  # text encoded per call; bounds memory
# A cut before a single space/newline that sits between two non-space characters is a boundary of
# the byte-level BPE pre-tokenizer (and trivially of the char codec), so chunking changes no tokens.
_SAFE_CUT = re.compile(r"(?<=\S)[ \n](?=\S)")


def _hasher(codec: Codec, val_fraction: float) -> Any:
    h = hashlib.sha256()
    h.update(json.dumps({"format": FORMAT, "codec": codec.to_dict(), "val_fraction": val_fraction},
                        sort_keys=True).encode())
    h.update(b"\0")
    return h


def content_hash(pieces: Iterable[str], codec: Codec, val_fraction: float) -> str:
    """SHA-256 over the codec, the split and the text: equal hashes mean identical shards.

    Depends only on the concatenated text, not on how it is cut into pieces.
    """
    h = _hasher(codec, val_fraction)
    for piece in pieces:
        h.update(piece.encode("utf-8"))
    return h.hexdigest()


def _cut(buf: str, start: int, limit: int) -> int:
    """A position in (start, limit] where the text can be split without changing its tokens."""
    for window in (4096, (limit - start) // 2):
        lo = max(limit - window, start + 1)
        last = None
        for match in _SAFE_CUT.finditer(buf, lo, limit + 1):
            last = match
        if last is not None:
            return last.start()
    return limit  # no safe boundary in half a chunk (no spaces at all): accept a rare split


def text_chunks(source: str | Iterable[str], chunk_chars: int = CHUNK_CHARS) -> Iterator[str]:
    """Re-chunk a text or a stream of pieces into <= ``chunk_chars`` pieces cut at token boundaries."""
    pieces: Iterable[str] = [source] if isinstance(source, str) else source
    buf = ""
    for piece in pieces:
        buf = buf + piece if buf else piece
        start = 0
        while len(buf) - start > chunk_chars:
            k = _cut(buf, start, start + chunk_chars)
            yield buf[start:k]
            start = k
        buf = buf[start:]
    if buf:
        yield buf


def _dtype_for(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)


def write_shards(source: str | Iterable[str], codec: Codec, out_dir: str | Path, val_fraction: float = 0.1,
                 dtype: str | np.dtype | None = None, source_desc: str = "") -> TokenShards:
    """Encode ``source`` (one string or an iterable of consecutive pieces) into a shard folder.

    The tokens go to one temp file first (so the total is known), which then becomes ``train.bin``
    after its tail is copied to ``val.bin`` and cut off: no second full copy on disk.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"val_fraction={val_fraction!r} must be in [0, 1); 0.1 keeps the last 10% for validation")
    dt = np.dtype(dtype) if dtype is not None else _dtype_for(codec.vocab_size)
    if dt not in (np.dtype(np.uint16), np.dtype(np.uint32)):
        raise DataError(f"shard dtype must be uint16 or uint32, got {dt}")
    if codec.vocab_size > np.iinfo(dt).max + 1:
        raise DataError(f"vocab_size {codec.vocab_size} does not fit in {dt}; use uint32")
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    _remove_debris(out_dir)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-{os.getpid()}-", dir=out_dir.parent))
    try:
        h = _hasher(codec, val_fraction)
        total = chars = 0
        with open(tmp / "train.bin", "wb") as f:
            for chunk in text_chunks(source, CHUNK_CHARS):
                h.update(chunk.encode("utf-8"))
                chars += len(chunk)
                ids = np.asarray(codec.encode(chunk), dtype=np.int64)
                total += ids.size
                ids.astype(dt).tofile(f)
        if total == 0:
            raise DataError(f"corpus {source_desc or '(text)'} encodes to zero tokens; give non-empty text")
        n_train = int(total * (1.0 - val_fraction))
        n_val = total - n_train
        all_tokens = np.memmap(tmp / "train.bin", dtype=dt, mode="r", shape=(total,))
        with open(tmp / "val.bin", "wb") as f:
            for i in range(n_train, total, CHUNK_CHARS):
                np.asarray(all_tokens[i:min(i + CHUNK_CHARS, total)]).tofile(f)
            f.flush()
            os.fsync(f.fileno())
        del all_tokens
        os.truncate(tmp / "train.bin", n_train * dt.itemsize)
        fsync_path(tmp / "train.bin")
        meta = {"format": FORMAT, "dtype": dt.name, "train_tokens": n_train, "val_tokens": n_val,
                "total_tokens": total, "chars": chars, "val_fraction": val_fraction,
                "source": source_desc, "hash": h.hexdigest(), "codec": codec.to_dict()}
        with open(tmp / "meta.json", "w", encoding="utf-8") as f:
            f.write(json.dumps(meta, indent=1))
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o755)  # mkdtemp makes it owner-only; the renamed folder should look normal
        fsync_path(tmp)
        _swap_in(tmp, out_dir)
        fsync_path(out_dir.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return TokenShards(out_dir)


def _swap_in(tmp: Path, out_dir: Path) -> None:
    """Rename the finished temp folder into place, replacing any older folder of that name."""
    old = None
    if out_dir.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-{os.getpid()}-", dir=out_dir.parent))
        os.rmdir(old)
        os.rename(out_dir, old)
    try:
        os.rename(tmp, out_dir)
    except OSError:
        if old is not None:
            os.rename(old, out_dir)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _remove_debris(out_dir: Path) -> None:
    """Delete the temp and set-aside folders that killed writers of ``out_dir`` left beside it."""
    try:
        entries = list(os.scandir(out_dir.parent))
    except FileNotFoundError:
        return
    for entry in entries:
        for marker in (".tmp-", ".old-"):
            if entry.name.startswith(f".{out_dir.name}{marker}") and left_by_dead_writer(entry.name, marker):
                shutil.rmtree(entry.path, ignore_errors=True)


def prepare_shards(corpus_spec: CorpusSpec, codec: Codec, cache_root: str | Path,
                   val_fraction: float = 0.1) -> TokenShards:
    """Shards for ``corpus_spec`` under ``cache_root/<hash>``, encoding only if no matching ones exist.

    The hash covers the corpus text (read once, cheaply), the codec and the split, so editing the
    text or changing the codec gives a new folder, and an unchanged corpus is never re-encoded.
    """
    h = content_hash(iter_corpus(corpus_spec), codec, val_fraction)
    out_dir = Path(cache_root) / h[:16]
    try:
        shards = TokenShards(out_dir)
        if shards.meta.get("hash") == h:
            _remove_debris(out_dir)
            return shards
    except DataError:
        pass
    desc = corpus_spec if isinstance(corpus_spec, str) else str(
        corpus_spec if isinstance(corpus_spec, Path) else [str(s) for s in corpus_spec])
    return write_shards(iter_corpus(corpus_spec), codec, out_dir, val_fraction, source_desc=str(desc))


class TokenShards:
    """A shard folder opened read-only: ``.train`` / ``.val`` are ``np.memmap`` arrays (no RAM copy)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        meta_path = self.path / "meta.json"
        try:
            self.meta: dict[str, Any] = json.loads(meta_path.read_text(encoding="utf-8"))
            self.dtype = np.dtype(self.meta["dtype"])
            counts = {"train": int(self.meta["train_tokens"]), "val": int(self.meta["val_tokens"])}
        except FileNotFoundError:
            raise DataError(f"no token shards in {str(self.path)!r} (meta.json missing); prepare them with "
                            "prepare_shards(corpus, codec, cache_root)") from None
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise DataError(f"token shards in {str(self.path)!r} have an unreadable meta.json ({err}); "
                            "delete the folder to rebuild it") from err
        self.train = self._open("train", counts["train"])
        self.val = self._open("val", counts["val"])

    def _open(self, split: str, count: int) -> np.ndarray:
        file = self.path / f"{split}.bin"
        size = file.stat().st_size if file.is_file() else -1
        if size != count * self.dtype.itemsize:
            raise DataError(f"{str(file)!r} has {size} bytes but meta.json expects {count} {self.dtype} "
                            "tokens; the shards are incomplete, delete the folder to rebuild them")
        if count == 0:  # mmap cannot map an empty file
            return np.empty(0, dtype=self.dtype)
        return np.memmap(file, dtype=self.dtype, mode="r", shape=(count,))

    @property
    def codec(self) -> Codec:
        """The codec the tokens were made with (rebuilt from meta.json)."""
        from ..codecs import codec_from_dict

        return codec_from_dict(self.meta["codec"])

    def __repr__(self) -> str:
        return f"TokenShards({str(self.path)!r}, train={self.train.size}, val={self.val.size}, dtype={self.dtype})"
