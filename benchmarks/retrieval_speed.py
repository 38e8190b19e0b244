"""Retrieval latency: genforge's dense search against brute-force numpy, same embeddings, same process.

Ours: ``genforge.retrieval.vectors.search`` over the faiss index genforge builds for that many chunks
(``IndexFlatIP`` below ``HNSW_THRESHOLD``, ``IndexHNSWFlat`` from there on): the ranking call
``RetrievalIndex.search(mode="dense")`` makes once the question is embedded. Peer: ``emb @ q`` then
``argpartition`` for the top 10, the exact answer. Reported per size: median latency per query of
both, the median of the per-round speed ratios, and ours' recall@10 against the exact top 10.

The chunks are real text, chunked by genforge's chunker (800 characters, 150 overlap) and embedded
with MiniLM: the Python docs (an index named ``pydocs`` in GENFORGE_HOME is reused when present,
else built here, timed), the Python standard library's source, Shakespeare (when its corpus is
cached), then third-party Python source in site-packages until the largest size is reached. The
embeddings are cached in shards under --cache-dir (outside the repository), with the seconds each
shard took. Queries: the first sentence of chunks drawn at random, embedded the same way.

Also measured: ``index add`` throughput (chunks/s, reading + chunking + embedding + writing) on a
slice of the Python docs, and a sweep of flat vs HNSW latency, recall and build time over sizes,
which is what ``HNSW_THRESHOLD`` is chosen from.

    nice -n 10 python benchmarks/retrieval_speed.py                # 10k and 100k chunks; hours to embed once
    python benchmarks/retrieval_speed.py --smoke                   # seconds: the repository's own text
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, median, paired_ratio, write_result  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PYDOCS = Path("/usr/share/doc/python3.11/html")
SHARD = 2048  # chunks per cached embedding file


def source_files(smoke: bool) -> list[tuple[str, list[Path]]]:
    """(source name, text files) in the order chunks are taken."""
    if smoke:
        return [("repo", sorted([ROOT / "README.md", *(ROOT / "src" / "genforge").rglob("*.py")]))]
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    site = Path(sysconfig.get_paths()["purelib"])
    return [("stdlib", sorted(p for p in stdlib.rglob("*.py") if "site-packages" not in p.parts)),
            ("shakespeare", []), ("site-packages", sorted(site.rglob("*.py")))]


def chunk_texts(files: list[Path], limit: int) -> list[str]:
    from genforge.retrieval.chunking import chunk_sections

    out: list[str] = []
    for f in files:
        try:
            text = f.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        out.extend(c.text for c in chunk_sections([text]) if text.strip())
        if len(out) >= limit:
            break
    return out[:limit]


def shakespeare_chunks(limit: int) -> list[str]:
    from genforge.data.shakespeare import cache_path
    from genforge.retrieval.chunking import chunk_sections

    path = cache_path()
    return [c.text for c in chunk_sections([path.read_text(encoding="utf-8")])][:limit] if path.is_file() else []


def embed_cached(cache: Path, name: str, texts: list[str]) -> tuple:
    """MiniLM vectors of ``texts``, from ``cache`` where present; (vectors, seconds spent embedding them ever)."""
    import numpy as np

    from genforge.retrieval.embedders import embed

    cache.mkdir(parents=True, exist_ok=True)
    parts, seconds = [], 0.0
    for i in range(0, len(texts), SHARD):
        shard = texts[i:i + SHARD]
        key = hashlib.sha1("\x00".join(shard).encode()).hexdigest()[:16]
        path, meta = cache / f"{name}-{i // SHARD:04d}-{key}.npy", cache / f"{name}-{i // SHARD:04d}-{key}.json"
        if path.is_file() and meta.is_file():
            parts.append(np.load(path))
            seconds += json.loads(meta.read_text())["seconds"]
            continue
        t = time.perf_counter()
        vecs = embed("minilm", shard, progress=True, desc=f"{name} {i // SHARD + 1}/{-(-len(texts) // SHARD)}")
        took = time.perf_counter() - t
        np.save(path, vecs)
        meta.write_text(json.dumps({"seconds": took, "chunks": len(shard)}))
        parts.append(vecs)
        seconds += took
    return (np.concatenate(parts) if parts else np.zeros((0, 384), np.float32)), seconds


def pydocs_corpus(cache: Path) -> tuple:
    """Chunk texts and vectors of the Python docs index (built into the cache's home when missing)."""
    import numpy as np

    from genforge.retrieval import add_documents, open_index
    from genforge.retrieval.store import read_manifest

    built = None
    if read_manifest("pydocs") is None:
        os.environ["GENFORGE_HOME"] = str(cache / "home")
        if read_manifest("pydocs") is None:
            t = time.perf_counter()
            report = add_documents("pydocs", [str(PYDOCS)], progress=True)
            built = {"seconds": time.perf_counter() - t, "chunks": report.chunks_added,
                     "documents": report.added}
    from genforge.retrieval import store, vectors

    open_index("pydocs").close()  # checks the index is whole (as many vectors as chunks)
    manifest, folder = read_manifest("pydocs"), store.index_dir("pydocs")
    con = store.connect(folder / manifest["files"]["chunks"], readonly=True)
    texts = [r[0] for r in con.execute("SELECT text FROM chunks ORDER BY id")]
    con.close()
    vecs = vectors.all_vectors(vectors.read_index(folder / manifest["files"]["vectors"]))
    return texts, np.asarray(vecs, np.float32), built


def add_throughput(files: list[Path]) -> dict:
    """``add_documents`` on ``files`` into a scratch home: chunks per second, everything included."""
    from genforge.retrieval import add_documents

    saved = os.environ.get("GENFORGE_HOME")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["GENFORGE_HOME"] = tmp
        try:
            t = time.perf_counter()
            report = add_documents("throughput", [str(f) for f in files], progress=False)
            seconds = time.perf_counter() - t
        finally:
            os.environ.pop("GENFORGE_HOME") if saved is None else os.environ.__setitem__("GENFORGE_HOME", saved)
    return {"files": len(files), "chunks": report.chunks_added, "seconds": seconds,
            "chunks_per_s": report.chunks_added / seconds}


def latencies(fn, queries) -> list[float]:
    out = []
    for q in queries:
        t = time.perf_counter()
        fn(q)
        out.append(time.perf_counter() - t)
    return out


def compare(emb, queries, k: int, rounds: int, threshold: int) -> dict:
    """Ours (the index genforge picks) vs numpy brute force over ``emb``, alternating rounds."""
    import numpy as np

    from genforge.retrieval import vectors

    t = time.perf_counter()
    index = vectors.add_vectors(vectors.new_index(emb.shape[1]), emb, threshold=threshold)
    build = time.perf_counter() - t

    def ours(q):
        return vectors.search(index, q, k, threshold=threshold)[0]

    def peer(q):
        scores = emb @ q
        top = np.argpartition(-scores, k - 1)[:k]
        return top[np.argsort(-scores[top])]

    exact = [set(peer(q).tolist()) for q in queries]
    recall = float(np.mean([len(set(ours(q).tolist()) & e) / k for q, e in zip(queries, exact)]))
    ours_ms, peer_ms, ours_rate, peer_rate = [], [], [], []
    for r in range(rounds):
        for fn in ((ours, peer) if r % 2 == 0 else (peer, ours)):
            lat = latencies(fn, queries)
            (ours_ms if fn is ours else peer_ms).extend(x * 1e3 for x in lat)
            (ours_rate if fn is ours else peer_rate).append(len(lat) / sum(lat))
    return {"chunks": len(emb), "index": vectors.kind_of(index), "build_s": build, "recall_at_10": recall,
            "ours_median_ms": median(ours_ms), "peer_median_ms": median(peer_ms),
            "ours_queries_per_s": ours_rate, "peer_queries_per_s": peer_rate,
            "speedup": paired_ratio(ours_rate, peer_rate)}


def sweep(emb, queries, k: int, sizes: list[int]) -> list[dict]:
    """Flat and HNSW side by side at each size: what HNSW_THRESHOLD is chosen from."""
    import numpy as np

    from genforge.retrieval import vectors

    rows = []
    for n in sizes:
        sub = emb[:n]
        flat = vectors.add_vectors(vectors.new_index(sub.shape[1]), sub, threshold=n + 1)
        t = time.perf_counter()
        hnsw = vectors.add_vectors(vectors.new_index(sub.shape[1]), sub, threshold=1)
        build = time.perf_counter() - t
        exact = [set(vectors.search(flat, q, k)[0].tolist()) for q in queries]
        recall = float(np.mean([len(set(vectors.search(hnsw, q, k)[0].tolist()) & e) / k
                                for q, e in zip(queries, exact)]))
        f = median(latencies(lambda q, ix=flat: vectors.search(ix, q, k), queries)) * 1e3
        h = median(latencies(lambda q, ix=hnsw: vectors.search(ix, q, k), queries)) * 1e3
        rows.append({"chunks": n, "flat_ms": f, "hnsw_ms": h, "hnsw_build_s": build, "hnsw_recall_at_10": recall})
        print(f"  sweep {n:>7} chunks: flat {f:.3f} ms, HNSW {h:.3f} ms (recall@10 {recall:.3f}, build {build:.1f} s)")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="10000,100000", help="chunk counts to time (comma-separated)")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="faiss and numpy threads (both sides the same)")
    ap.add_argument("--cache-dir", default=None, help="embedding cache (default GENFORGE_HOME/cache/retrieval_speed)")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--out-dir", default=None)
    args = ap.parse_args()
    if args.smoke:
        args.sizes, args.queries, args.rounds = "32,96", 8, 2
    sizes = sorted(int(s) for s in args.sizes.split(","))
    import faiss
    import numpy as np
    import torch
    from threadpoolctl import threadpool_limits

    from genforge.paths import genforge_home
    from genforge.retrieval.vectors import HNSW_THRESHOLD

    torch.set_num_threads(os.cpu_count() or 1)  # embedding the corpus: every core
    faiss.omp_set_num_threads(args.threads)
    cache = Path(args.cache_dir) if args.cache_dir else genforge_home() / "cache" / "retrieval_speed"
    if args.smoke:
        cache = Path(tempfile.mkdtemp(prefix="retrieval-smoke-"))
    want = sizes[-1] + args.queries
    texts, parts, embed_s, sources, built = [], [], 0.0, {}, None
    if not args.smoke and PYDOCS.is_dir():
        t, v, built = pydocs_corpus(cache)
        texts, parts, sources["pydocs"] = t, [v], len(t)
    for name, files in source_files(args.smoke):
        if len(texts) >= want:
            break
        more = shakespeare_chunks(want - len(texts)) if name == "shakespeare" else chunk_texts(files, want - len(texts))
        vecs, secs = embed_cached(cache, name, more)
        texts, parts, embed_s, sources[name] = texts + more, parts + [vecs], embed_s + secs, len(more)
    emb = np.concatenate(parts)
    print(f"{len(emb)} chunks: {sources}; embedding the non-pydocs ones took {embed_s:.0f} s in all "
          f"({sum(v for k, v in sources.items() if k != 'pydocs') / max(embed_s, 1e-9):.1f} chunks/s)")
    rng = np.random.default_rng(0)
    picks = rng.choice(min(len(texts), sizes[-1]), args.queries, replace=False)
    questions = [texts[i].split(". ")[0][:200] for i in picks]
    q_vecs, _ = embed_cached(cache, "queries", questions)
    threshold = 64 if args.smoke else HNSW_THRESHOLD  # the smoke run exercises both index kinds
    results = {}
    with threadpool_limits(args.threads):
        for n in sizes:
            if n > len(emb):
                print(f"only {len(emb)} chunks: skipping {n}")
                continue
            r = compare(emb[:n], q_vecs, 10, args.rounds, threshold)
            results[str(n)] = r
            print(f"{n:>7} chunks ({r['index']}): ours {r['ours_median_ms']:.3f} ms, numpy {r['peer_median_ms']:.3f} "
                  f"ms per query, speedup {r['speedup']['median']:.1f}x, recall@10 {r['recall_at_10']:.3f}")
        grid = [n for n in ([32, 64, 96] if args.smoke else [5000, 10000, 20000, 50000, 100000]) if n <= len(emb)]
        swept = sweep(emb, q_vecs[: min(50, len(q_vecs))], 10, grid)
    if args.smoke:  # a page of the README
        files = [cache / "readme-page.md"]
        files[0].write_text((ROOT / "README.md").read_text(encoding="utf-8")[:3000], encoding="utf-8")
    else:
        files = sorted((PYDOCS / "library").glob("c*.html")) if PYDOCS.is_dir() else []
    throughput = add_throughput(files) if files else None
    if throughput:
        print(f"index add: {throughput['chunks']} chunks from {throughput['files']} files in "
              f"{throughput['seconds']:.1f} s = {throughput['chunks_per_s']:.1f} chunks/s")
    out_dir = Path(args.out_dir) if args.out_dir else (RESULTS / "smoke" if args.smoke else RESULTS)
    path = write_result("retrieval_speed", {
        "config": {"sizes": sizes, "queries": args.queries, "rounds": args.rounds, "threads": args.threads, "k": 10,
                   "hnsw_threshold": threshold, "smoke": args.smoke, "chunk_chars": 800, "overlap": 150},
        "corpus": {"chunks": len(emb), "sources": sources, "embedding_seconds": embed_s,
                   "pydocs_index_built_here": built},
        "sizes": results, "sweep": swept, "add_throughput": throughput}, out_dir)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
