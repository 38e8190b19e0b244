"""``genforge index add/ls/rm/query``: the persistent retrieval indexes.

    genforge index add pydocs /usr/share/doc/python3.11/html
    genforge index add notes 'notes/**/*.md' --tag tenant=acme
    genforge index query pydocs "how do I read a csv file into dictionaries" --k 5
    genforge index ls
    genforge index rm notes
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

SNIPPET = 240  # characters of each passage printed by ``query``


def _add(args: argparse.Namespace) -> int:
    from .retrieval import add_documents
    from .retrieval.index import parse_filters
    from .retrieval.store import read_manifest

    tags = parse_filters(args.tag, "--tag")
    embedder = args.embedder
    if embedder is None:  # the index's own embedder, MiniLM for a new index
        manifest = read_manifest(args.name)
        embedder = manifest["embedder"] if manifest else "minilm"
    report = add_documents(args.name, args.paths, embedder=embedder, tags=tags, chunk_chars=args.chunk_chars,
                           overlap=args.overlap, progress=not args.no_progress)
    for path, why in report.problems:
        print(f"skipped {path}: {why}", file=sys.stderr)
    for note in report.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"index {args.name}: {report.added} new and {report.updated} changed documents ({report.chunks_added} "
          f"chunks), {report.skipped} unchanged, {report.unreadable} unreadable, {report.empty} empty; now "
          f"{report.documents_total} documents, {report.chunks_total} chunks ({report.embedder}) "
          f"in {report.seconds:.1f} s")
    return 0


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def _ls(args: argparse.Namespace) -> int:
    from .retrieval import list_indexes

    infos = list_indexes()
    if args.json:
        print(json.dumps([{"name": i.name, "chunks": i.chunks, "documents": i.documents, "embedder": i.embedder,
                           "vector_index": i.vector_index, "size_bytes": i.size_bytes, "path": str(i.path),
                           "updated": i.updated} for i in infos], indent=2))
        return 0
    if not infos:
        print("no indexes yet: genforge index add NAME FILES...")
        return 0
    rows = [("NAME", "CHUNKS", "DOCUMENTS", "EMBEDDER", "INDEX", "SIZE")]
    rows += [(i.name, str(i.chunks), str(i.documents), i.embedder, i.vector_index, _size(i.size_bytes))
             for i in infos]
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())
    return 0


def _rm(args: argparse.Namespace) -> int:
    from .retrieval import remove_index

    remove_index(args.name)
    print(f"removed index {args.name}")
    return 0


def _query(args: argparse.Namespace) -> int:
    from .retrieval import open_index
    from .retrieval.index import check_k, parse_filters

    check_k(args.k)  # usage mistakes first, before the index (and the model) load
    filters = parse_filters(args.filter)
    index = open_index(args.name)
    passages = index.search(args.question, k=args.k, filters=filters, mode=args.mode)
    for note in index.notes:
        print(f"note: {note}", file=sys.stderr)
    if args.json:
        print(json.dumps([{"rank": r, "score": p.score, "source": p.source, "title": p.title, "chunk_id": p.chunk_id,
                           "text": p.text, "metadata": p.metadata} for r, p in enumerate(passages, 1)], indent=2))
        return 0
    if not passages:
        print("no passages match" + (" the filters" if filters else ""))
    for r, p in enumerate(passages, 1):
        snippet = " ".join(p.text.split())
        snippet = snippet if len(snippet) <= SNIPPET else snippet[:SNIPPET - 3].rsplit(" ", 1)[0] + "..."
        page = f" (page {p.metadata['page']})" if "page" in p.metadata else ""
        print(f"{r}. [{p.score:.4f}] {p.source}{page}")
        if p.title:
            print(f"   {p.title}")
        print(f"   {snippet}")
    return 0


def _index(args: argparse.Namespace) -> int:
    return {"add": _add, "ls": _ls, "rm": _rm, "query": _query}[args.index_verb](args)


def add_parsers(sub) -> dict[str, Callable[[argparse.Namespace], int]]:
    """Add this module's verbs to the ``genforge`` subparsers; return verb -> handler."""
    p = sub.add_parser("index", help="build and search retrieval indexes of your documents",
                       description="Retrieval indexes: documents -> chunks -> embeddings, kept under "
                       "GENFORGE_HOME/indexes/NAME.")
    verbs = p.add_subparsers(dest="index_verb", required=True, parser_class=type(p))
    a = verbs.add_parser("add", help="index files, folders (recursive) or globs: .txt .md .html .pdf",
                         description="Add documents to index NAME (created if missing); unchanged files are skipped.")
    a.add_argument("name")
    a.add_argument("paths", nargs="+", metavar="FILES", help="files, folders or quoted globs")
    a.add_argument("--embedder", choices=["minilm", "none"], default=None,
                   help="minilm (MiniLM sentence embeddings + BM25) or none (BM25 only); default: the index's own, "
                   "minilm for a new one")
    a.add_argument("--tag", action="append", metavar="KEY=VALUE",
                   help="attach to every document added now, for --filter at query time (repeatable)")
    a.add_argument("--chunk-chars", type=int, default=None, help="characters per chunk (default 800)")
    a.add_argument("--overlap", type=int, default=None, help="characters shared by consecutive chunks (default 150)")
    a.add_argument("--no-progress", action="store_true", help="no progress bars")
    ls = verbs.add_parser("ls", help="list the indexes")
    ls.add_argument("--json", action="store_true")
    r = verbs.add_parser("rm", help="delete an index")
    r.add_argument("name")
    q = verbs.add_parser("query", help="the passages that best answer a question")
    q.add_argument("name")
    q.add_argument("question")
    q.add_argument("--k", type=int, default=5, help="passages to return (1..100, default 5)")
    q.add_argument("--filter", action="append", metavar="KEY=VALUE",
                   help="only documents with this tag, type (txt, md, html, pdf) or source glob (repeatable)")
    q.add_argument("--mode", choices=["dense", "bm25", "hybrid"], default="hybrid",
                   help="dense (embeddings), bm25 (keywords) or hybrid (reciprocal rank fusion; default)")
    q.add_argument("--json", action="store_true", help="print the passages as JSON")
    return {"index": _index}
