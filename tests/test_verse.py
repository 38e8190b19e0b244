"""Verse rewards (``genforge.train.verse``), checked with the CMU Pronouncing Dictionary.

Properties rather than stored scores: known pentameters from the sonnets scan; taking a word away or
moving a polysyllable's stress onto a weak place makes a line stop scanning and lowers its score; rhyme
is symmetric and a word does not rhyme with itself; speaker labels are not verse lines; rewards stay in
[0, 1] on any text, the empty string and non-English included.
"""
from __future__ import annotations

import pytest

pytest.importorskip("pronouncing")

from genforge.train.verse import couplet, pentameter, rhyme, scan, verse_lines  # noqa: E402

SONNET = ["Shall I compare thee to a summer's day?", "Rough winds do shake the darling buds of May,",
          "And summer's lease hath all too short a date:", "When forty winters shall besiege thy brow"]


def test_sonnet_lines_scan_and_broken_ones_do_not():
    for line in SONNET:
        s = scan(line)
        assert s.scans and s.score == 1.0 and s.syllables == 10 and s.known == 1.0, line
    shorter = "Shall I compare thee to a day?"  # two syllables gone
    wrong_stress = "Shall compare I thee to a summer's day?"  # com-PARE: its stress on a weak place
    for line in (shorter, wrong_stress):
        s = scan(line)
        assert not s.scans and 0.0 <= s.score < 1.0, line
    assert scan(shorter).syllables == 8
    assert scan("To be, or not to be, that is the question:").scans  # a feminine eleventh syllable
    unknown = scan("Shall I compare thee to a zxqvwk day?")
    assert not unknown.scans and unknown.known < 1.0


def test_rhyme_and_verse_lines():
    assert rhyme(SONNET[0], SONNET[1]) and rhyme(SONNET[1], SONNET[0])
    assert not rhyme(SONNET[0], SONNET[2]) and not rhyme("a day", "the day")
    text = "\nROMEO:\nFirst Citizen.\n\n" + SONNET[0] + "\n" + SONNET[1] + "\n"
    assert verse_lines(text, 2) == SONNET[:2]
    assert couplet([text]) == [1.0] and pentameter([text]) == [1.0]
    assert couplet(["\n" + SONNET[0] + "\n" + SONNET[2] + "\n"]) == [0.5]  # scans, no rhyme


@pytest.mark.parametrize("fn", [pentameter, couplet])
def test_rewards_stay_in_range(fn):
    items = ["", "\n\n", "ROMEO:\n", "Ça va? Très bien.", "a" * 500, "the " * 40, "1 2 3 4 5", SONNET[2]]
    got = fn(items)
    assert len(got) == len(items) and all(0.0 <= v <= 1.0 for v in got)
    assert got[0] == 0.0 and got[-1] > 0.0
