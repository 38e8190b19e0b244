"""A supervised fine-tuning set for chat, built offline from the plays: who speaks, and who answers.

The Shakespeare corpus writes each speech as a speaker line ("HAMLET." or "Ham.") followed by the
speech, with a blank line between speeches. ``parse_speeches`` walks the plays (skipping each play's
front matter up to its first ACT/SCENE line, and the poems, which have none), strips stage
directions in [brackets], and returns the speeches with a ``group`` number: two speeches share a group
only when nothing but stage directions stands between them in the same scene. ``dialogue_runs`` cuts
the groups into runs of consecutive short speeches where the speaker changes every time;
``conversations`` turns each run into user/assistant turns (A speaks, B answers, A again, ...), and
``build_dialogue_corpus`` renders them with a chat template into one transcript file::

    python -m genforge.data.dialogue            # writes $GENFORGE_HOME/data/shakespeare-dialogue.txt

Everything is deterministic for a given text and seed.
"""
from __future__ import annotations

import random
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_text
from ..errors import DataError
from ..paths import data_home

DEFAULT_NAME = "shakespeare-dialogue.txt"
MAX_CHARS = 400  # longer speeches are skipped (the base model sees only 256 characters at once)
PAIRS_PER_CONVERSATION = (1, 1, 2, 3)  # drawn per conversation: mostly single exchanges, some multi-turn

# System lines. Most conversations get the template's default; some get a line that is true of all of
# their replies, so a system prompt carries a (weak) signal instead of being noise.
BRIEF_SYSTEM, BRIEF_MAX = "Answer briefly.", 60
LONG_SYSTEM, LONG_MIN = "Answer at length.", 200
P_DEFAULT_SYSTEM = 0.5

_AUTHOR = re.compile(r"^\s*by William Shakespeare\s*$", re.I)
_SCENE = re.compile(r"^\s*(?:ACT|SCENE)\s+(?:[IVXLC]+|\d+)\b", re.I)
_WORD = r"(?:[A-Z][A-Za-z'&-]*|\d+)"
_SPEAKER_DOT = re.compile(rf"^{_WORD}(?:[ .]+(?:{_WORD}|of|and|the|de|du|le|la))*\.$")
_SPEAKER_CAPS = re.compile(r"^[A-Z][A-Z'&-]+(?: [A-Z][A-Z'&-]*)*$")  # "HERMIA": some plays omit the dot
_ROMAN = re.compile(r"^[IVXLC]+\.?$")
_NOT_SPEAKERS = {"exit", "exeunt", "enter", "re-enter", "manet", "flourish", "alarum", "alarums", "finis",
                 "the end", "epilogue to the reader"}
_BRACKETS = re.compile(r"\[[^\[\]]*\]")
_SPACES = re.compile(r"[ \t]+")


@dataclass(frozen=True)
class Speech:
    """One speech: its speaker line (without the final "."), its text, and its continuity group."""

    speaker: str
    text: str
    group: int


def is_speaker_line(line: str) -> bool:
    """Whether ``line`` (stage directions removed) reads as a speaker heading: "HAMLET.", "Lady Capulet."."""
    s = line.strip()
    if not s or len(s) > 40 or _ROMAN.match(s) or _SCENE.match(s):
        return False
    if s.rstrip(".").casefold() in _NOT_SPEAKERS or s.split()[0].rstrip(".").casefold() in _NOT_SPEAKERS:
        return False
    return bool(_SPEAKER_DOT.match(s) or (_SPEAKER_CAPS.match(s) and sum(c.isalpha() for c in s) >= 2))


def clean_speech(lines: Sequence[str]) -> str | None:
    """Speech lines without stage directions, trimmed, runs of spaces collapsed, no blank lines.

    ``None`` when a bracket is left unmatched (a stage direction we cannot delimit).
    """
    text = _BRACKETS.sub(" ", "\n".join(lines))
    if "[" in text or "]" in text:
        return None
    out = [_SPACES.sub(" ", ln).strip() for ln in text.split("\n")]
    return "\n".join(ln for ln in out if ln)


def _blocks(text: str) -> list[list[str]]:
    blocks: list[list[str]] = []
    cur: list[str] = []
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if line.strip():
            cur.append(line)
        elif cur:
            blocks.append(cur)
            cur = []
    if cur:
        blocks.append(cur)
    return blocks


def parse_speeches(text: str) -> list[Speech]:
    """Every speech of every play in ``text``, in order, each with its continuity ``group``.

    A text begins at a "by William Shakespeare" line; its front matter (title, persons, setting) lasts
    until the first "ACT n" or "SCENE n" line. A new scene, a speech with no words, or a block we cannot
    read starts a new group; a block we cannot read (a verse paragraph or song after a stage direction)
    also drops the speech before it, which it may belong to. Stage-direction blocks are skipped
    without breaking the group.
    """
    speeches: list[Speech] = []
    group, front = 0, True

    def new_group() -> None:
        nonlocal group
        if speeches and speeches[-1].group == group:
            group += 1

    for block in _blocks(text):
        first = block[0].strip()
        if any(_AUTHOR.match(line) for line in block):
            front = True
            new_group()
            continue
        if _SCENE.match(first):
            front = False
            new_group()
            continue
        if front:
            continue
        if not _BRACKETS.sub("", "\n".join(block)).strip():
            continue  # a stage direction: [Enter X.], [Exeunt.]
        head = _BRACKETS.sub("", first).strip()
        if len(block) > 1 and is_speaker_line(head):
            body = clean_speech(block[1:])
            if body:
                speeches.append(Speech(head.rstrip(".").strip(), body, group))
            else:
                new_group()  # a speaker who only acts ([Dies.]) or an unreadable direction
            continue
        if speeches and speeches[-1].group == group:
            speeches.pop()  # this unreadable block may be the rest of the previous speech
        new_group()
    return speeches


def dialogue_runs(speeches: Sequence[Speech], max_chars: int = MAX_CHARS) -> list[list[Speech]]:
    """Maximal runs of consecutive speeches (same group) where each has another speaker than the one
    before and at most ``max_chars`` characters. Runs shorter than two speeches are dropped."""
    runs: list[list[Speech]] = []
    cur: list[Speech] = []
    for s in speeches:
        fits = len(s.text) <= max_chars
        joins = (cur and fits and s.group == cur[-1].group
                 and s.speaker.casefold() != cur[-1].speaker.casefold())
        if joins:
            cur.append(s)
            continue
        if len(cur) >= 2:
            runs.append(cur)
        cur = [s] if fits else []
    if len(cur) >= 2:
        runs.append(cur)
    return runs


def dialogue_pairs(speeches: Sequence[Speech], max_chars: int = MAX_CHARS) -> list[tuple[Speech, Speech]]:
    """Every (speech, answer) pair of consecutive speeches in a run, in order (overlapping)."""
    return [(run[i], run[i + 1]) for run in dialogue_runs(speeches, max_chars) for i in range(len(run) - 1)]


def _system_for(replies: Sequence[str], rng: random.Random, default: str) -> str:
    if rng.random() < P_DEFAULT_SYSTEM:
        return default
    if all(len(r) <= BRIEF_MAX for r in replies):
        return BRIEF_SYSTEM
    if all(len(r) >= LONG_MIN for r in replies):
        return LONG_SYSTEM
    return default


def conversations(runs: Sequence[Sequence[Speech]], default_system: str, seed: int = 0,
                  pairs_per_conversation: Sequence[int] = PAIRS_PER_CONVERSATION) -> list[list[dict[str, str]]]:
    """Cut each run into conversations of k (user, assistant) exchanges, k drawn from
    ``pairs_per_conversation``; speeches are not reused (a run's odd last speech is left out).
    Each conversation starts with a system message. Returned in run order."""
    rng = random.Random(seed)
    out: list[list[dict[str, str]]] = []
    for run in runs:
        i = 0
        while len(run) - i >= 2:
            k = min(rng.choice(pairs_per_conversation), (len(run) - i) // 2)
            chunk = run[i:i + 2 * k]
            i += 2 * k
            msgs = [{"role": "user" if j % 2 == 0 else "assistant", "content": s.text} for j, s in enumerate(chunk)]
            system = _system_for([m["content"] for m in msgs[1::2]], rng, default_system)
            out.append([{"role": "system", "content": system}, *msgs])
    return out


def default_path() -> Path:
    """Where ``build_dialogue_corpus`` writes by default: ``$GENFORGE_HOME/data/shakespeare-dialogue.txt``."""
    return data_home() / DEFAULT_NAME


def build_dialogue_corpus(out_path: str | Path | None = None, template: Any = None, max_pairs: int | None = None,
                          seed: int = 0, text: str | None = None, max_chars: int = MAX_CHARS,
                          pairs_per_conversation: Sequence[int] = PAIRS_PER_CONVERSATION) -> dict[str, Any]:
    """Render the plays' dialogue as chat transcripts into ``out_path`` (atomically); return statistics.

    ``template`` defaults to the "shakespeare" chat template, ``text`` to the Shakespeare corpus.
    Conversations are shuffled (``seed``) so the validation tail of the file is a random sample, then
    cut to ``max_pairs`` exchanges. Each conversation is whole turns ending with the template's turn
    separator, so a training window never sees a turn from one conversation joined to another's.
    """
    from ..codecs.chat_template import TEMPLATES
    from .shakespeare import shakespeare_text

    template = template or TEMPLATES["shakespeare"]
    if max_pairs is not None and max_pairs < 1:
        raise DataError(f"max_pairs={max_pairs} is invalid: allowed an integer >= 1 or None (all)")
    out = Path(out_path) if out_path is not None else default_path()
    source = shakespeare_text() if text is None else text
    speeches = parse_speeches(source)
    runs = dialogue_runs(speeches, max_chars)
    convs = conversations(runs, template.default_system, seed, pairs_per_conversation)
    random.Random(seed + 1).shuffle(convs)
    if max_pairs is not None:
        kept, n = [], 0
        for c in convs:
            if n >= max_pairs:
                break
            take = min(len(c) // 2, max_pairs - n)
            kept.append(c[:1 + 2 * take])
            n += take
        convs = kept
    if not convs:
        raise DataError("found no dialogue in the text: it needs plays with speaker lines (\"NAME.\") after "
                        "an ACT or SCENE line")
    transcript = "".join(template.render(c, add_generation_prompt=False) for c in convs)
    atomic_write_text(out, transcript)
    replies = [len(m["content"]) for c in convs for m in c if m["role"] == "assistant"]
    return {
        "path": str(out),
        "speeches": len(speeches),
        "runs": len(runs),
        "conversations": len(convs),
        "pairs": len(replies),
        "characters": len(transcript),
        "lines": transcript.count("\n"),
        "reply_chars_median": int(statistics.median(replies)),
        "reply_chars_mean": round(statistics.fmean(replies), 1),
        "max_chars": max_chars,
        "seed": seed,
        "vocabulary": "".join(sorted(set(transcript))),
    }


def main(argv: Sequence[str] | None = None) -> int:
    import argparse
    import sys

    p = argparse.ArgumentParser(prog="python -m genforge.data.dialogue",
                                description="Build the Shakespeare dialogue set for chat fine-tuning.")
    p.add_argument("--out", default=None, help=f"output file (default $GENFORGE_HOME/data/{DEFAULT_NAME})")
    p.add_argument("--max-pairs", type=int, default=None, help="keep at most this many exchanges")
    p.add_argument("--max-chars", type=int, default=MAX_CHARS, help="skip speeches longer than this")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    try:
        stats = build_dialogue_corpus(args.out, max_pairs=args.max_pairs, seed=args.seed, max_chars=args.max_chars)
    except DataError as e:
        print(f"genforge: error: {e}", file=sys.stderr)
        return 2
    print(f"{stats['pairs']:,} exchanges in {stats['conversations']:,} conversations "
          f"({stats['speeches']:,} speeches parsed), {stats['characters']:,} characters; "
          f"median reply {stats['reply_chars_median']} characters")
    print(stats["path"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
