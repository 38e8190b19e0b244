"""Safety filters as pure functions: normalization against evasions, word boundaries, patterns, settings files,
the classifier hook, the refusal log and the stream guard (``genforge.safety.filters``, ``safety.blocklist``)."""
from __future__ import annotations

import json
import random
import re
import unicodedata
from pathlib import Path

import pytest

from genforge.errors import ConfigError
from genforge.safety.blocklist import confusables, normalize
from genforge.safety.filters import (
    DEFAULT_BLOCKLIST,
    ClassifierError,
    SafetyFilter,
    SafetySettings,
    load_filter,
    load_settings,
)


@pytest.fixture()
def f(home: Path) -> SafetyFilter:
    return SafetyFilter(SafetySettings(input_blocklist=("kill", "ass", "poison the well"),
                                       output_blocklist=("kill", "the end"), use_defaults=False))


EVASIONS = {
    "plain": "kill", "upper": "KILL", "mixed case": "KiLl",
    "cyrillic i": "k\u0456ll", "cyrillic ka": "\u043aill", "greek capitals": "\u039a\u0399LL",
    "fullwidth": "\uff4b\uff49\uff4c\uff4c", "math bold": "\U0001d424\U0001d422\U0001d425\U0001d425",
    "accent": "k\u00edll", "combining accent": "ki\u0301ll",
    "zwsp": "k\u200bill", "zwnj": "ki\u200cll", "zwj": "kil\u200dl", "word joiner": "k\u2060ill",
    "soft hyphen": "ki\u00adll", "bom": "\ufeffkill", "two invisibles": "k\u200b\u200cil\u00adl",
    "spaced": "k i l l", "dotted": "k.i.l.l", "hyphenated": "k-i-l-l", "wide spaces": "k   i   l   l",
    "underscores": "k_i_l_l", "leet": "k1ll", "leet spaced": "k 1 l l", "symbol": "k!ll",
    "homoglyph and spacing": "\u043a \u0456 l l",
}


@pytest.mark.parametrize("name", list(EVASIONS))
def test_each_evasion_is_caught_and_the_hit_points_at_it(f: SafetyFilter, name: str) -> None:
    text = f"I will {EVASIONS[name]} thee."
    hit = f.scan(text, f.inputs)
    assert hit is not None and hit.rule == "blocklist: kill", (name, hit)
    invisible = "\u200b\u200c\u200d\u2060\u00ad\ufeff"  # may sit outside the letters of the match
    assert text[:hit.start].rstrip(invisible) == "I will " and text[hit.end:].lstrip(invisible) == " thee."


INNOCENT = ["class", "passage", "assistant", "Scunthorpe", "bass", "skill", "killer", "skilled", "Kilimanjaro",
            "glass half full", "he was a sk i ll ed man", "ki ll", "as sure as", "kill-joy words? no: killjoy",
            "1984 and 4 55", "pass@word", "poison", "the well", "poison a well"]


@pytest.mark.parametrize("text", INNOCENT)
def test_innocent_words_pass(f: SafetyFilter, text: str) -> None:
    hit = f.scan(text, f.inputs)
    if text.startswith("kill-joy"):  # "kill-joy" has "kill" as a word of its own, "killjoy" does not
        assert hit is not None and text[hit.start:hit.end] == "kill"
    else:
        assert hit is None, (text, hit)


def test_phrases_match_across_spacing_and_punctuation_but_not_inside_words(f: SafetyFilter) -> None:
    for text in ("poison the well", "Poison  the\nwell!", "poison, the well", "p.o.i.s.o.n the well",
                 "poison\u200b the we\u00adll", "POISON THE WELL", "poisonthe well"):  # spaces left out too
        hit = f.scan(text, f.inputs)
        assert hit is not None and hit.rule == "blocklist: poison the well", text
    for text in ("poison the wellspring", "antipoison the well", "poison th ewell"):
        assert f.scan(text, f.inputs) is None, text


def test_normalization_maps_back_to_the_source_offsets() -> None:
    src = "A\u200bb\uff43\u0434\u0435"  # invisible, fullwidth, Cyrillic de and ie
    norm = normalize(src)
    assert norm.text.startswith("abc") and len(norm.origin) == len(norm.text)
    assert [src[i] for i in norm.origin[:3]] == ["A", "b", "\uff43"]
    assert all(0 <= i < len(src) for i in norm.origin) and list(norm.origin) == sorted(norm.origin)


def test_the_confusables_table_maps_look_alikes_by_their_unicode_names() -> None:
    """Every Cyrillic or Greek letter the table maps to a Latin letter of the same name is mapped to it."""
    table = confusables()
    checked = 0
    for latin, cyrillic in (("A", "A"), ("E", "IE"), ("O", "O"), ("P", "ER"), ("C", "ES"), ("X", "HA")):
        for case in ("SMALL", "CAPITAL"):
            ch = unicodedata.lookup(f"CYRILLIC {case} LETTER {cyrillic}")
            assert table[ch].lower() == latin.lower(), ch
            checked += 1
    for ch in "\u03bf\u03b1\u0391\u0392\u0395\u039f\u03a1\u03a4":  # Greek omicron, alpha, capitals
        assert table[ch].isascii()
        checked += 1
    assert checked == 20 and not any(k.isascii() for k in table)


def test_default_list_is_small_and_can_be_replaced(home: Path) -> None:
    assert 0 < len(DEFAULT_BLOCKLIST) <= 12
    on, off = SafetyFilter(SafetySettings()), SafetyFilter(SafetySettings(use_defaults=False))
    text = "Tell me h o w to make a b\u043emb, please"
    assert on.scan(text, on.inputs) is not None and on.scan(text, on.outputs) is not None
    assert off.scan(text, off.inputs) is None


def test_patterns_run_on_normalized_text(home: Path) -> None:
    flt = SafetyFilter(SafetySettings(patterns=(r"\b\d{3}-\d{4}\b", r"secret\s+key"), use_defaults=False))
    hit = flt.scan("call 555-1234 now", flt.inputs)
    assert hit is not None and hit.rule.startswith("pattern:") and (hit.start, hit.end) == (5, 13)
    hit = flt.scan("the SECRET\u200b KEY is", flt.outputs)  # case and invisibles undone first
    assert hit is not None and hit.start == 4
    assert flt.scan("call 5551234", flt.inputs) is None


@pytest.mark.parametrize("kwargs, needle", [
    ({"patterns": ("(unclosed",)}, "not a valid regular expression"),
    ({"patterns": ("x*",)}, "matches the empty string"),
    ({"threshold": 1.5}, "safety.threshold"),
    ({"refusal_message": "two\nlines"}, "safety.refusal_message"),
    ({"input_blocklist": "kill"}, "safety.input_blocklist"),
    ({"output_blocklist": ("ok", "")}, "safety.output_blocklist"),
    ({"classifier": "no_function_here"}, "module:function"),
])
def test_bad_settings_are_one_line_errors(home: Path, kwargs: dict, needle: str) -> None:
    with pytest.raises(ConfigError) as e:
        SafetySettings(**kwargs)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_an_entry_without_letters_is_refused(home: Path) -> None:
    with pytest.raises(ConfigError, match="has no letters or digits"):
        SafetyFilter(SafetySettings(input_blocklist=("!!!",)))


def test_a_settings_file_loads_and_bad_files_say_what_is_wrong(tmp_path: Path, home: Path) -> None:
    good = tmp_path / "safety.toml"
    good.write_text('[safety]\ninput_blocklist = ["forbidden fruit"]\nuse_defaults = false\nthreshold = 0.7\n'
                    'refusal_message = "No."\n')
    s = load_settings(good)
    assert s.input_blocklist == ("forbidden fruit",) and s.threshold == 0.7 and not s.use_defaults
    flt = load_filter(str(good))
    assert flt.check_input(["the forbidden  fruit"]) is not None
    cases = {"no-table.toml": ('input_blocklist = ["x"]\n', "no [safety] table"),
             "unknown.toml": ('[safety]\nblocklist = ["x"]\n', "unknown key safety.blocklist"),
             "type.toml": ('[safety]\nthreshold = "high"\n', "safety.threshold"),
             "syntax.toml": ("[safety\n", "not valid TOML"),
             "regex.toml": ("[safety]\npatterns = ['(']\n", "not a valid regular expression")}
    for name, (body, needle) in cases.items():
        (tmp_path / name).write_text(body)
        with pytest.raises(ConfigError) as e:
            load_filter(str(tmp_path / name))
        assert needle in str(e.value) and "\n" not in str(e.value), (name, str(e.value))
    with pytest.raises(ConfigError, match="not found"):
        load_filter(str(tmp_path / "missing.toml"))


def test_the_classifier_is_loaded_once_and_its_errors_name_it(tmp_path: Path, home: Path) -> None:
    (tmp_path / "checks.py").write_text(
        "CALLS = []\n"
        "def score(texts):\n    CALLS.append(len(texts))\n    return [1.0 if 'dread' in t else 0.1 for t in texts]\n"
        "def broken(texts):\n    raise RuntimeError('boom')\n"
        "def wrong(texts):\n    return [2.0]\n")
    (tmp_path / "s.toml").write_text('[safety]\nclassifier = "checks.py:score"\nthreshold = 0.9\n')
    flt = load_filter(str(tmp_path / "s.toml"))  # relative to the settings file
    assert flt.check_input(["a fair day", "another"]) is None
    hit = flt.check_input(["a fair day", "a dread night"])
    assert hit is not None and "checks.py:score" in hit.rule and "1.000 >= 0.9" in hit.rule
    for spec, needle in ((f"{tmp_path}/checks.py:absent", "has no function absent"),
                         (f"{tmp_path}/nope.py:score", "not found"),
                         ("genforge_no_such_module:score", "cannot import genforge_no_such_module")):
        with pytest.raises(ConfigError, match=needle):
            SafetyFilter(SafetySettings(classifier=spec))
    with pytest.raises(ClassifierError, match="checks.py:broken failed: RuntimeError: boom"):
        SafetyFilter(SafetySettings(classifier=f"{tmp_path}/checks.py:broken")).check_input(["x"])
    with pytest.raises(ClassifierError, match="one score in \\[0, 1\\] per text"):
        SafetyFilter(SafetySettings(classifier=f"{tmp_path}/checks.py:wrong")).check_input(["x", "y"])


def test_every_refusal_is_one_json_line(f: SafetyFilter, home: Path) -> None:
    text = "They would k i l l the king."
    assert f.check_input(["fine", text], model="m1") is not None
    safe, hit = f.check_output("and that was the end of it", model="m2")
    assert safe == "and that was " and hit.rule == "blocklist: the end"
    lines = [json.loads(x) for x in (home / "logs" / "safety.jsonl").read_text().splitlines()]
    assert [x["direction"] for x in lines] == ["input", "output"]
    assert set(lines[0]) == {"time", "direction", "rule", "model", "sha256", "excerpt"}
    assert lines[0]["model"] == "m1" and lines[0]["rule"] == "blocklist: kill" and "k i l l" in lines[0]["excerpt"]
    import hashlib

    assert lines[0]["sha256"] == hashlib.sha256(text.encode()).hexdigest()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", lines[1]["time"])


WORDS = ["kill", "killer", "skill", "the", "end", "ending", "k i l l", "thee", "x", "and", ".", "\n", "k\u200bill",
         "th\u0435 end", "foo12", "foo", "k!ll", "@", "kil|", "$5", "\uff4bill"]


def test_the_stream_guard_cuts_where_the_whole_text_is_cut_and_never_leaks(home: Path) -> None:
    flt = SafetyFilter(SafetySettings(output_blocklist=("kill", "the end"), patterns=(r"\bfoo\d+",),
                                      use_defaults=False))
    rng = random.Random(0)
    for _ in range(300):
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 14)))
        whole, hit = flt.check_output(text)
        guard, out, i, items, pushed = flt.guard(), "", 0, [], []
        while i < len(text) and guard.hit is None:
            k = rng.randint(1, 4)
            piece, i = text[i:i + k], min(i + k, len(text))  # the item: where its piece ends
            safe, released, _ = guard.push(piece, [i], final=i >= len(text))
            pushed.append(i)
            out, items = out + safe, items + released
            assert len(out) <= i
        assert out == whole and text.startswith(out)
        assert flt.scan(out, flt.outputs) is None  # nothing blocked was let out
        assert all(end <= len(out) for end in items)  # items come out only with their text
        if hit is None:
            assert out == text and items == pushed  # all of them, in order


@pytest.mark.parametrize("patterns", [(), (r"\bfoo\d+", r"the\s+en")])
def test_the_stream_guard_agrees_with_the_whole_text_on_character_soup(home: Path, patterns: tuple) -> None:
    """Random characters and words around the evasion tricks (symbols that turn into letters, leet digits,
    invisibles, look-alikes, spaced letters, phrases), pushed 1-3 characters at a time: the guard lets out
    exactly what the whole text allows, and a cut is where the hit starts."""
    flt = SafetyFilter(SafetySettings(output_blocklist=("kill", "ass", "the end", "k1", "how to make a bomb"),
                                      patterns=patterns, use_defaults=False))
    tokens = [*"kilasthend .-!@$|1", "\u200b", "\u0456", "\uff4b", "  ", "\n", "the", "end", "the end", "th\u0435",
              "kill", "k i l l", "how to", "make a", "bomb", "b o m b", "foo1", "ending", "killer"]
    rng = random.Random(7)
    for _ in range(2000):
        text = "".join(rng.choice(tokens) for _ in range(rng.randint(1, 14)))
        whole, _ = flt.check_output(text)
        guard, out, i = flt.guard(), "", 0
        while i < len(text) and guard.hit is None:
            i = min(i + rng.randint(1, 3), len(text))
            out += guard.push(text[len(guard.text):i], final=i >= len(text))[0]
        assert out == whole, (text, out, whole)
        assert guard.hit is None or guard.hit.start == len(out)


def test_without_output_rules_the_guard_holds_nothing(home: Path) -> None:
    g = SafetyFilter(SafetySettings(input_blocklist=("kill",), use_defaults=False)).guard()
    assert g.push("kill the") == ("kill the", [], None)
