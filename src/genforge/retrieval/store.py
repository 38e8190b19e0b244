"""Where an index lives and how it changes without ever being half-written.

``genforge_home()/indexes/NAME/`` holds ``manifest.json`` and one generation of data files:
``chunks-G.sqlite`` (documents, chunk texts and metadata; stdlib sqlite3) and ``vectors-G.faiss``.
An addition writes generation G+1 beside G (the SQLite file copied with the backup API, then
appended to; the vectors written atomically), and commits by replacing ``manifest.json``, which
names the generation, atomically. A crash before that rename leaves the manifest pointing at G,
intact; the next writer removes the orphaned files. Readers follow the manifest, so they never
see a generation that is still being written. One writer at a time per index (an ``flock``).
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..atomic import LEFTOVERS, atomic_write_text, fsync_path
from ..errors import GenforgeError
from ..paths import genforge_home

FORMAT = 1
MANIFEST = "manifest.json"
LOCK = ".lock"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")

SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    id INTEGER PRIMARY KEY, path TEXT NOT NULL, kind TEXT NOT NULL, title TEXT NOT NULL,
    sha256 TEXT NOT NULL, tags TEXT NOT NULL, first_chunk INTEGER NOT NULL, n_chunks INTEGER NOT NULL,
    live INTEGER NOT NULL, added TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY, doc_id INTEGER NOT NULL, text TEXT NOT NULL, heading TEXT NOT NULL,
    anchor TEXT NOT NULL, page INTEGER, start INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS documents_path ON documents (path);
"""


def indexes_home() -> Path:
    return genforge_home() / "indexes"


def check_name(name: str) -> str:
    """An index name is one folder name: no separators, no '..', none of the temp-name marks."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name \
            or any(m in name for m in LEFTOVERS):
        raise GenforgeError(f"index name {name!r} is invalid: use 1-64 letters, digits, '.', '_' or '-', "
                            "starting with a letter or digit (no '/' or '..')")
    return name


def index_dir(name: str) -> Path:
    return indexes_home() / check_name(name)


def read_manifest(name: str) -> dict[str, Any] | None:
    """The committed manifest, or None when the index does not exist (or was never committed)."""
    path = index_dir(name) / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise GenforgeError(f"{path} is unreadable ({e}): remove the index (genforge index rm {name}) "
                            "and add its documents again") from None
    if manifest.get("format") != FORMAT:
        raise GenforgeError(f"{path} has format {manifest.get('format')!r}; this genforge reads format {FORMAT}: "
                            f"rebuild it (genforge index rm {name}, then genforge index add)")
    return manifest


def index_names() -> list[str]:
    """Names of the committed indexes, sorted."""
    root = indexes_home()
    if not root.is_dir():
        return []
    return sorted(d.name for d in root.iterdir() if d.is_dir() and _NAME.fullmatch(d.name)
                  and not any(m in d.name for m in LEFTOVERS) and (d / MANIFEST).is_file())


def missing_index(name: str) -> GenforgeError:
    names = ", ".join(index_names()) or "none yet (genforge index add NAME FILES...)"
    return GenforgeError(f"no index named {name!r}; the indexes are: {names}")


@contextlib.contextmanager
def writer_lock(name: str) -> Iterator[Path]:
    """Hold the index's write lock (creating its folder); refuse at once if another writer has it."""
    folder = index_dir(name)
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # not POSIX: no lock
            pass
        except BlockingIOError:
            raise GenforgeError(f"index {name!r} is being changed by another process: try again when it "
                                "finishes") from None
        yield folder
    finally:
        os.close(fd)


def connect(path: Path, readonly: bool) -> sqlite3.Connection:
    if readonly:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)
    else:
        con = sqlite3.connect(path, check_same_thread=False)
        con.executescript(SCHEMA)
    return con


def start_generation(folder: Path, manifest: dict[str, Any] | None) -> tuple[int, Path, sqlite3.Connection]:
    """A writable copy of the current chunk database as the next generation's temp file."""
    clean_orphans(folder, manifest)
    gen = (manifest["generation"] + 1) if manifest else 1
    tmp = folder / f".chunks-{gen}.sqlite.tmp-{os.getpid()}"
    tmp.unlink(missing_ok=True)
    con = sqlite3.connect(tmp, check_same_thread=False)
    if manifest:
        src = sqlite3.connect(folder / manifest["files"]["chunks"])
        try:
            src.backup(con)
        finally:
            src.close()
    con.executescript(SCHEMA)
    return gen, tmp, con


def commit_generation(folder: Path, gen: int, tmp_chunks: Path, con: sqlite3.Connection,
                      write_vectors, manifest: dict[str, Any]) -> dict[str, Any]:
    """Make generation ``gen`` the index: chunks file, then vectors, then the manifest (the commit)."""
    con.commit()
    con.close()
    fd = os.open(tmp_chunks, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    chunks = f"chunks-{gen}.sqlite"
    os.replace(tmp_chunks, folder / chunks)
    files = {"chunks": chunks}
    if write_vectors is not None:
        files["vectors"] = f"vectors-{gen}.faiss"
        write_vectors(folder / files["vectors"])
    fsync_path(folder)
    manifest = {**manifest, "format": FORMAT, "generation": gen, "files": files}
    write_manifest(folder, manifest)
    clean_orphans(folder, manifest)
    return manifest


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    """Replace the manifest alone (same data files), atomically."""
    atomic_write_text(folder / MANIFEST, json.dumps(manifest, indent=2) + "\n")


def clean_orphans(folder: Path, manifest: dict[str, Any] | None) -> None:
    """Remove data files the manifest does not name: older generations, and a killed writer's
    uncommitted one. Only a writer (holding the lock) calls this."""
    keep = set((manifest or {}).get("files", {}).values()) | {MANIFEST, LOCK}
    for p in folder.iterdir():
        if p.name not in keep and (p.name.startswith(("chunks-", "vectors-", ".chunks-", ".vectors-",
                                                      ".manifest.json.tmp-"))):
            p.unlink(missing_ok=True)


def remove(name: str) -> None:
    """Delete an index: renamed out of the namespace first, so a kill mid-delete leaves no half index."""
    folder = index_dir(name)
    if read_manifest(name) is None:
        raise missing_index(name)
    with writer_lock(name):
        doomed = folder.with_name(f"{folder.name}.del-{os.getpid()}")
        os.replace(folder, doomed)
    shutil.rmtree(doomed, ignore_errors=True)
    fsync_path(folder.parent)


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
