"""Codecs: exact round trips, helpful errors, UTF-8-safe streaming, and serialisation."""
from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest
import torch

from genforge.codecs import codec_from_dict
from genforge.codecs.bpe import BPECodec, byte_alphabet
from genforge.codecs.char import CharCodec
from genforge.errors import CheckpointError, ConfigError, DataError
from genforge.types import Codec

torch.set_num_threads(1)

TRAIN_TEXT = "\n".join([
    "The quick brown fox jumps over the lazy dog, and the dog does not mind at all.",
    "To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer.",
    "héllo wörld 日本語 🎉 naïve café — “quoted” text, tabs\tand  double  spaces.",
    "Numbers 12345 and 3.14159, symbols #@!$%^&*() and <|endoftext|> separators.",
] * 40)

UNSEEN = [
    "",
    "A completely new sentence with unseen words: zebra, quixotic, fjord.",
    "emoji 👩‍👩‍👧 family, flags 🇯🇵, skin tone 👍🏽 and 🎉🎉",
    "中文字符和日本語のテキスト、한국어 텍스트도",
    "combining e\u0301 and control \x00\x07 chars\r\nwindows line\n\n   leading spaces",
    "<|endoftext|>between<|endoftext|> specials <|endoftext",
]


@pytest.fixture(scope="module")
def bpe() -> BPECodec:
    return BPECodec.train([TRAIN_TEXT], vocab_size=400)


# ----------------------------------------------------------------------------------------- char
def test_char_round_trip_and_sorted_vocab() -> None:
    text = "hello world\nHELLO, World!\t 42"
    codec = CharCodec.from_text(text)
    assert codec.chars == "".join(sorted(set(text)))
    assert codec.vocab_size == len(set(text))
    assert codec.decode(codec.encode(text)) == text
    assert isinstance(codec, Codec) and codec.kind == "char"


def test_char_unknown_error_names_char_and_position() -> None:
    codec = CharCodec.from_text("abc def")
    with pytest.raises(DataError) as info:
        codec.encode("abc€d€")
    msg = str(info.value)
    assert "'€'" in msg and "position 3" in msg and "7-character" in msg and "allowed" in msg
    assert "\n" not in msg


def test_char_unknown_replacement() -> None:
    codec = CharCodec.from_text("abc ?", unknown="?")
    assert codec.decode(codec.encode("ab€ c☃")) == "ab? c?"
    added = CharCodec.from_text("abc", unknown="_")  # the fallback gets an id even if unseen
    assert added.decode(added.encode("axc")) == "a_c"
    with pytest.raises(DataError):
        CharCodec("abc", unknown="z")


def test_char_decode_rejects_out_of_range_ids() -> None:
    codec = CharCodec("ab")
    for bad in (2, -1):
        with pytest.raises(DataError, match="outside"):
            codec.decode([0, bad])


def test_char_stream_and_dict_round_trip() -> None:
    codec = CharCodec.from_text("héllo 日本 🎉", unknown="h")
    ids = codec.encode("🎉 日本 héllo")
    dec = codec.decoder()
    assert "".join(dec.push(i) for i in ids) + dec.flush() == "🎉 日本 héllo"
    clone = codec_from_dict(json.loads(json.dumps(codec.to_dict())))
    assert clone == codec and clone.encode("xyz héllo") == codec.encode("xyz héllo")


# ------------------------------------------------------------------------------------------ bpe
def test_byte_alphabet_matches_tokenizers() -> None:
    from tokenizers import pre_tokenizers

    table = byte_alphabet()
    assert sorted(table) == sorted(pre_tokenizers.ByteLevel.alphabet())
    assert sorted(table.values()) == list(range(256))


@pytest.mark.parametrize("text", UNSEEN)
def test_bpe_round_trips_unseen_text_exactly(bpe: BPECodec, text: str) -> None:
    ids = bpe.encode(text)
    assert all(0 <= i < bpe.vocab_size for i in ids)
    assert bpe.decode(ids) == text
    assert bpe.tokenizer.decode(ids, skip_special_tokens=False) == text  # agrees with the library


def test_bpe_learned_merges(bpe: BPECodec) -> None:
    assert bpe.vocab_size > 300 and isinstance(bpe, Codec) and bpe.kind == "bpe"
    assert len(bpe.encode("the question")) < len(b"the question")


def test_bpe_special_tokens(bpe: BPECodec) -> None:
    eot = bpe.token_to_id("<|endoftext|>")
    assert bpe.special_tokens == ("<|endoftext|>",)
    assert bpe.encode("<|endoftext|>") == [eot]
    ids = bpe.encode("a<|endoftext|>b")
    assert ids.count(eot) == 1 and bpe.decode(ids) == "a<|endoftext|>b"
    assert eot not in bpe.encode("plain text without specials")  # nothing added implicitly
    with pytest.raises(DataError, match="no token"):
        bpe.token_to_id("<|pad|>")


@pytest.mark.parametrize("text", UNSEEN[1:])
def test_bpe_stream_decoder_yields_whole_characters(bpe: BPECodec, text: str) -> None:
    ids = bpe.encode(text)
    dec = bpe.decoder()
    pieces = [dec.push(i) for i in ids]
    tail = dec.flush()
    assert "".join(pieces) + tail == bpe.decode(ids) == text
    assert all("\ufffd" not in p for p in pieces) and tail == ""


def test_bpe_stream_decoder_holds_back_split_characters(bpe: BPECodec) -> None:
    ids = bpe.encode("🎉")
    if len(ids) == 1:  # merged into a single token; force byte tokens instead
        ids = [bpe.tokenizer.token_to_id(c) for c in "ðŁİī"]
    dec = bpe.decoder()
    assert [dec.push(i) for i in ids[:-1]] == [""] * (len(ids) - 1)
    assert dec.push(ids[-1]) == "🎉"
    assert dec.push(ids[0]) == "" and dec.flush() == "\ufffd"  # incomplete tail at the end
    assert dec.push(bpe.encode("x")[0]) == "x"  # flush resets the decoder


def test_bpe_stream_decoder_matches_decode_on_random_ids(bpe: BPECodec) -> None:
    rng = random.Random(0)
    for _ in range(200):
        ids = [rng.randrange(bpe.vocab_size) for _ in range(rng.randrange(1, 12))]
        dec = bpe.decoder()
        assert "".join(dec.push(i) for i in ids) + dec.flush() == bpe.decode(ids)


def test_bpe_save_load_and_dict_round_trip(bpe: BPECodec, tmp_path) -> None:
    path = bpe.save(tmp_path / "sub" / "tokenizer.json")
    loaded = BPECodec.load(path)
    from_dict = codec_from_dict(json.loads(json.dumps(bpe.to_dict())))
    assert isinstance(from_dict, BPECodec)
    for text in UNSEEN:
        assert loaded.encode(text) == from_dict.encode(text) == bpe.encode(text)
    assert loaded == bpe and loaded.special_tokens == bpe.special_tokens
    assert [p.name for p in path.parent.iterdir()] == ["tokenizer.json"]  # no temp file left


def test_bpe_errors(bpe: BPECodec, tmp_path) -> None:
    with pytest.raises(ConfigError, match="at least 257"):
        BPECodec.train(["abc"], vocab_size=100)
    with pytest.raises(CheckpointError, match="does not exist"):
        BPECodec.load(tmp_path / "missing.json")
    with pytest.raises(DataError, match="outside"):
        bpe.decode([bpe.vocab_size])


# ---------------------------------------------------------------------------------- dispatching
@pytest.mark.parametrize("bad", [
    {"kind": "wordpiece"}, {"chars": "abc"}, ["char"], None,
    {"kind": "char"}, {"kind": "char", "chars": "aa"}, {"kind": "char", "chars": "ab", "unknown": "z"},
    {"kind": "bpe"}, {"kind": "bpe", "tokenizer": "{not json"},
])
def test_codec_from_dict_rejects_bad_dicts(bad: object) -> None:
    with pytest.raises(CheckpointError) as info:
        codec_from_dict(bad)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)


def test_codec_from_dict_unknown_kind_message() -> None:
    with pytest.raises(CheckpointError, match="codec.kind='wordpiece' is unknown: .* knows 'char', 'bpe'"):
        codec_from_dict({"kind": "wordpiece"})


def test_importing_codecs_is_light() -> None:
    code = ("import sys, genforge.codecs as c; assert 'tokenizers' not in sys.modules; "
            "c.CharCodec; assert 'tokenizers' not in sys.modules; c.BPECodec")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_non_text_codec_is_a_token_codec_without_pretending_to_be_text() -> None:
    from genforge.types import Codec, TokenCodec

    class NoteEvents:  # e.g. music events: items are tuples, not str; no streaming text decoder
        kind = "note-events"
        vocab_size = 128

        def encode(self, item: list[tuple[int, int]]) -> list[int]:
            return [pitch for pitch, _ in item]

        def decode(self, ids):
            return [(i, 1) for i in ids]

        def to_dict(self):
            return {"kind": self.kind}

    assert isinstance(NoteEvents(), TokenCodec) and not isinstance(NoteEvents(), Codec)
    text = CharCodec.from_text("abc")
    assert isinstance(text, TokenCodec) and isinstance(text, Codec)
