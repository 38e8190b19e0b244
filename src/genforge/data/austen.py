"""Jane Austen's six novels from the Debian package ``r-cran-janeaustenr``, read without R.

The package keeps each novel as an R character vector (one element per printed line) in
``data/Rdata.rdb``: zlib blocks of R's XDR serialization, indexed by the gzipped ``Rdata.rdx``. We take
the package from the system when it is installed, else fetch the .deb with ``apt-get download`` (the
user's configured mirrors), open it as an ``ar`` archive holding a tarball, and read the vectors with a
small reader of the serialization format (``unserialize``: the types these files use). The text is cached
as ``$GENFORGE_HOME/data/austen.txt``: the novels in order of publication, a blank line between them.
"""
from __future__ import annotations

import gzip
import io
import struct
import subprocess
import tarfile
import tempfile
import zlib
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_text
from ..errors import DataError
from ..paths import data_home

PACKAGE = "r-cran-janeaustenr"
DATA_DIR = "usr/lib/R/site-library/janeaustenr/data/"
BOOKS = ("sensesensibility", "prideprejudice", "mansfieldpark", "emma", "northangerabbey", "persuasion")
CACHE_NAME = "austen.txt"


# --- R's XDR serialization (format 2 and 3), the subset these files use ------------------------------
class _Reader:
    def __init__(self, raw: bytes) -> None:
        if raw[:2] != b"X\n":
            raise DataError("not an R XDR serialization (expected 'X\\n')")
        self.b, self.i, self.refs = raw, 2, []
        version = self.int()
        self.int(), self.int()  # writer's and minimal R versions
        if version == 3:
            n = self.int()
            self.i += n  # the native encoding's name

    def int(self) -> int:
        (v,) = struct.unpack_from(">i", self.b, self.i)
        self.i += 4
        return v

    def item(self) -> Any:
        flags = self.int()
        kind, has_attr, has_tag = flags & 0xFF, flags & 0x200, flags & 0x400
        if kind in (254, 242):  # NILVALUE_SXP, EMPTYENV_SXP
            return None
        if kind == 255:  # REFSXP: an earlier symbol or environment
            return self.refs[(flags >> 8) - 1]
        if kind == 1:  # SYMSXP: its name (a CHARSXP)
            name = self.item()
            self.refs.append(name)
            return name
        if kind == 9:  # CHARSXP
            n = self.int()
            if n == -1:
                return None
            s = self.b[self.i:self.i + n].decode("utf-8", errors="replace")
            self.i += n
            return s
        if kind in (2, 6):  # LISTSXP / LANGSXP: a pairlist of (tag, value)
            attr = self.item() if has_attr else None
            tag = self.item() if has_tag else None
            car, cdr = self.item(), self.item()
            del attr
            return [(tag, car)] + (cdr if isinstance(cdr, list) else [])
        if kind in (10, 13):  # LGLSXP, INTSXP
            n = self.int()
            out = list(struct.unpack_from(f">{n}i", self.b, self.i))
            self.i += 4 * n
        elif kind == 14:  # REALSXP
            n = self.int()
            out = list(struct.unpack_from(f">{n}d", self.b, self.i))
            self.i += 8 * n
        elif kind in (16, 19, 20):  # STRSXP, VECSXP, EXPRSXP
            out = [self.item() for _ in range(self.int())]
        else:
            raise DataError(f"R serialization type {kind} is not supported here")
        if has_attr:
            attrs = dict(self.item() or [])
            if "names" in attrs and isinstance(out, list):
                return dict(zip(attrs["names"], out))
        return out


def unserialize(raw: bytes) -> Any:
    """An R object from its XDR serialization: vectors as lists, named vectors as dicts."""
    return _Reader(raw).item()


def read_rdb(data_dir: dict[str, bytes]) -> dict[str, list[str]]:
    """The character vectors named in ``Rdata.rdx`` from ``Rdata.rdb`` (file name -> bytes)."""
    index = unserialize(gzip.decompress(data_dir["Rdata.rdx"]))
    rdb, out = data_dir["Rdata.rdb"], {}
    for name, (offset, length) in index["variables"].items():
        block = rdb[offset:offset + length]
        out[name] = unserialize(zlib.decompress(block[4:]))  # 4 bytes: the uncompressed length
    return out


# --- the package ------------------------------------------------------------------------------------------
def _from_deb(deb: bytes) -> dict[str, bytes]:
    """Rdata.rdx / Rdata.rdb out of a .deb (an ``ar`` archive whose data.tar.* holds the files)."""
    if deb[:8] != b"!<arch>\n":
        raise DataError(f"the {PACKAGE} download is not a Debian package")
    i = 8
    while i + 60 <= len(deb):
        name, size = deb[i:i + 16].decode().strip().rstrip("/"), int(deb[i + 48:i + 58].decode().strip())
        body = deb[i + 60:i + 60 + size]
        i += 60 + size + (size & 1)
        if name.startswith("data.tar"):
            with tarfile.open(fileobj=io.BytesIO(body), mode="r:*") as tar:
                got = {}
                for m in tar.getmembers():
                    path = m.name.lstrip("./")
                    if path.startswith(DATA_DIR) and path.rsplit("/", 1)[-1] in ("Rdata.rdx", "Rdata.rdb"):
                        got[path.rsplit("/", 1)[-1]] = tar.extractfile(m).read()
                if len(got) == 2:
                    return got
    raise DataError(f"the {PACKAGE} package has no {DATA_DIR}Rdata.rdb")


def _package_files() -> dict[str, bytes]:
    installed = Path("/") / DATA_DIR
    if (installed / "Rdata.rdb").is_file() and (installed / "Rdata.rdx").is_file():
        return {n: (installed / n).read_bytes() for n in ("Rdata.rdx", "Rdata.rdb")}
    with tempfile.TemporaryDirectory(prefix="genforge-austen-") as tmp:
        try:
            subprocess.run(["apt-get", "download", PACKAGE], cwd=tmp, check=True, capture_output=True, timeout=600)
        except (OSError, subprocess.SubprocessError) as e:
            raise DataError(f"corpus 'austen' needs the Debian package {PACKAGE}: `apt-get download {PACKAGE}` "
                            f"failed ({type(e).__name__}); install it (apt-get install {PACKAGE}) or give the "
                            "novels as text files") from None
        debs = sorted(Path(tmp).glob("*.deb"))
        if not debs:
            raise DataError(f"`apt-get download {PACKAGE}` wrote no .deb file")
        return _from_deb(debs[0].read_bytes())


def austen_text() -> str:
    """The six novels, one text (cached after the first call)."""
    cache = data_home() / CACHE_NAME
    if cache.is_file():
        return cache.read_text(encoding="utf-8")
    books = read_rdb(_package_files())
    missing = [b for b in BOOKS if b not in books]
    if missing:
        raise DataError(f"the {PACKAGE} package lacks {missing}")
    text = "\n\n".join("\n".join(line or "" for line in books[b]).strip() for b in BOOKS) + "\n"
    atomic_write_text(cache, text)
    return text
