"""Documents: which files an ``index add`` reads, and each one's text cut into titled sections.

A section is the unit a citation points at: a page of a PDF, the text under one heading of a
Markdown file or an HTML page. HTML goes through a real parser (BeautifulSoup), never regular
expressions, so scripts, styles, navigation bars and Sphinx's pilcrow links (``¶``) are dropped
and the text keeps its block structure (paragraph breaks the chunker prefers to cut at). For
Sphinx pages (the Python docs) a section keeps the ``id`` of its ``<section>`` element, so a
passage can be cited as ``library/csv.html#module-contents``.
"""
from __future__ import annotations

import glob
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import GenforgeError

KINDS = {".txt": "txt", ".text": "txt", ".md": "md", ".markdown": "md", ".html": "html", ".htm": "html",
         ".pdf": "pdf"}
# build output, sources and assets of documentation trees; hidden folders are skipped too
SKIP_DIRS = {"_static", "_sources", "_images", "_downloads", "__pycache__", "node_modules"}
# Sphinx's generated pages: the index, search and module index are lists of links, not prose
SKIP_PAGES = re.compile(r"^(genindex(-.*)?|search|py-modindex|modindex|searchindex)$")


# bumped whenever the text taken from a file changes (a parser fix): re-adding a file whose bytes are
# unchanged then compares its new chunks with the stored ones instead of skipping it unread
EXTRACTOR = 2


class UnreadableDocument(GenforgeError):
    """A file that cannot be read as the type its name says (binary, not UTF-8, a broken PDF)."""


@dataclass(frozen=True)
class Section:
    text: str
    heading: str = ""  # the nearest heading above this text ('' when none)
    anchor: str = ""  # the fragment a link to this section uses (HTML ids, Markdown slugs)
    page: int | None = None  # PDF pages, from 1


@dataclass(frozen=True)
class Document:
    path: str  # absolute path
    kind: str  # txt | md | html | pdf
    title: str  # the page or document title ('' when unknown)
    sha256: str  # of the file's bytes: an unchanged file is not indexed twice
    sections: list[Section] = field(default_factory=list)


@dataclass(frozen=True)
class FileList:
    files: list[Path]  # supported files, absolute, in a stable order
    unsupported: list[Path]  # files named explicitly whose type is not supported


def kind_of(path: Path) -> str | None:
    return KINDS.get(path.suffix.lower())


def _walk(folder: Path) -> list[Path]:
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith("."))
        for f in sorted(files):
            p = Path(root) / f
            if kind_of(p) and not SKIP_PAGES.match(p.stem) and not f.startswith("."):
                found.append(p)
    return found


def expand_paths(paths: list[str]) -> FileList:
    """Files, folders (recursive) and globs -> the supported files under them.

    A path that does not exist, a glob that matches nothing and a folder with no supported file
    are errors: each is a mistake the user wants to hear about before minutes of embedding.
    """
    if not paths:
        raise GenforgeError("no documents given: pass files, folders or globs (e.g. docs/ or 'notes/*.md')")
    files: list[Path] = []
    unsupported: list[Path] = []
    for given in paths:
        if any(c in given for c in "*?["):
            matches = [Path(m) for m in sorted(glob.glob(os.path.expanduser(given), recursive=True))]
            if not matches:
                raise GenforgeError(f"{given!r} matches no files: check the pattern (quote it so the shell "
                                    "does not expand it)")
            for m in matches:
                files.extend(_walk(m) if m.is_dir() else [m] if kind_of(m) else [])
            continue
        p = Path(given).expanduser()
        if p.is_dir():
            found = _walk(p)
            if not found:
                raise GenforgeError(f"{given} holds no supported documents ({' '.join(sorted(KINDS))}); "
                                    "point at a folder with some, or at the files themselves")
            files.extend(found)
        elif p.is_file():
            (files if kind_of(p) else unsupported).append(p)
        else:
            raise GenforgeError(f"{given}: no such file or folder")
    seen: set[Path] = set()
    unique = []
    for f in files:
        r = f.resolve()
        if r not in seen:
            seen.add(r)
            unique.append(r)
    return FileList(unique, [u.resolve() for u in unsupported])


def load_document(path: Path, data: bytes | None = None) -> Document:
    """Read one file into sections; raises ``UnreadableDocument`` with the reason."""
    kind = kind_of(path)
    if kind is None:
        raise UnreadableDocument(f"{path}: unsupported file type {path.suffix or '(none)'!r}")
    if data is None:
        try:
            data = path.read_bytes()
        except OSError as e:
            raise UnreadableDocument(f"{path}: cannot read it ({e.strerror or e})") from None
    digest = hashlib.sha256(data).hexdigest()
    if kind == "pdf":
        title, sections = _pdf(path, data)
    else:
        if b"\x00" in data:
            raise UnreadableDocument(f"{path}: binary data in a .{path.suffix.lstrip('.')} file")
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise UnreadableDocument(f"{path}: not UTF-8 text (byte {e.start})") from None
        title, sections = {"txt": _txt, "md": _markdown, "html": _html}[kind](text)
    sections = [Section(s.text.lstrip("\n").rstrip(), s.heading, s.anchor, s.page) for s in sections if s.text.strip()]
    return Document(str(path), kind, title, digest, sections)


def _txt(text: str) -> tuple[str, list[Section]]:
    return "", [Section(text)]


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: lower case, punctuation dropped, spaces -> '-'."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _markdown(text: str) -> tuple[str, list[Section]]:
    """Sections at ATX headings (``#`` .. ``######``) outside fenced code blocks."""
    sections: list[Section] = []
    heading, anchor, lines, fenced, title = "", "", [], False, ""
    for line in text.splitlines(keepends=True):
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        m = None if fenced else re.match(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if m:
            sections.append(Section("".join(lines), heading, anchor))
            heading, anchor, lines = m.group(2), slug(m.group(2)), [line]
            title = title or (heading if len(m.group(1)) == 1 else "")
        else:
            lines.append(line)
    sections.append(Section("".join(lines), heading, anchor))
    return title, sections


HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
DROP = {"script", "style", "nav", "noscript", "template", "svg", "iframe", "form", "button", "footer"}
BLOCKS = {"p", "div", "section", "article", "main", "pre", "blockquote", "ul", "ol", "li", "dl", "dt", "dd",
          "table", "tr", "figure", "figcaption", "aside", "details", "summary", "hr", "br", "caption"}


class _Collector:
    """Text of an HTML body, split at headings; blocks become paragraph breaks."""

    def __init__(self) -> None:
        self.sections: list[Section] = []
        self.heading, self.anchor, self.parts = "", "", []

    def start(self, heading: str, anchor: str) -> None:
        self.flush()
        self.heading, self.anchor, self.parts = heading, anchor or self.anchor, [heading, "\n\n"]

    def mark(self, anchor: str) -> None:
        """A linkable entry inside the section (Sphinx's ``<dt id="csv.DictReader">``): same heading."""
        self.flush()
        self.anchor = anchor

    def flush(self) -> None:
        text = re.sub(r"[ \t]*\n[ \t]*(\n[ \t]*)+", "\n\n", "".join(self.parts)).strip()
        if text:
            self.sections.append(Section(text, self.heading, self.anchor))
        self.parts = []


def _anchor_of(heading) -> str:
    """The id a link to this heading's section uses: the Sphinx ``<section id>`` (or the older
    ``<div class="section" id>``) around it, else the heading's own id."""
    parent = heading.parent
    if parent is not None and parent.get("id") and (parent.name == "section"
                                                    or "section" in (parent.get("class") or [])):
        return str(parent["id"])
    return str(heading.get("id") or "")


def _walk_html(node, out: _Collector, pre: bool = False) -> None:
    from bs4 import Comment, NavigableString, Tag

    for child in node.children:
        if isinstance(child, Comment):
            continue
        if isinstance(child, NavigableString):
            if type(child) is NavigableString:  # not a Doctype, CData or processing instruction
                out.parts.append(str(child) if pre else re.sub(r"\s+", " ", str(child)))
        elif isinstance(child, Tag):
            if child.name in DROP:
                continue
            if child.name in HEADINGS:
                out.start(" ".join(child.get_text(" ").split()), _anchor_of(child))
                continue
            if child.name == "dt" and child.get("id"):
                out.mark(str(child["id"]))
            block = child.name in BLOCKS
            if block:
                out.parts.append("\n\n" if child.name in ("p", "pre", "section", "dl", "table", "div") else "\n")
            _walk_html(child, out, pre or child.name == "pre")
            if block:
                out.parts.append("\n\n" if child.name in ("p", "pre", "section", "dl", "table", "div") else "\n")


def _html(text: str) -> tuple[str, list[Section]]:
    try:
        from bs4 import BeautifulSoup
    except ImportError:
        raise GenforgeError("HTML documents need BeautifulSoup: pip install beautifulsoup4") from None
    soup = BeautifulSoup(text, "html.parser")
    title = " ".join(soup.title.get_text(" ").split()) if soup.title else ""
    for link in soup.select("a.headerlink"):  # Sphinx's pilcrows next to every heading
        link.decompose()
    for hidden in soup.select('[role="navigation"], [role="search"], .sphinxsidebar, .related, .footer, '
                              '.toctree-wrapper'):
        hidden.decompose()  # Sphinx's sidebars, breadcrumbs, footers and tables of contents are navigation
    body = soup.find(attrs={"role": "main"}) or soup.find("main") or soup.body or soup
    out = _Collector()
    _walk_html(body, out)
    out.flush()
    return title, out.sections


def _pdf(path: Path, data: bytes) -> tuple[str, list[Section]]:
    try:
        import io

        from pypdf import PdfReader
        from pypdf.errors import PyPdfError
    except ImportError:
        raise GenforgeError("PDF documents need pypdf: pip install pypdf") from None
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise UnreadableDocument(f"{path}: the PDF is encrypted")
        pages = [Section(page.extract_text() or "", page=i + 1) for i, page in enumerate(reader.pages)]
        meta_title = (reader.metadata or {}).get("/Title") or ""
    except UnreadableDocument:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, OSError) as e:
        raise UnreadableDocument(f"{path}: not a readable PDF ({type(e).__name__}: {str(e)[:80]})") from None
    return str(meta_title).strip(), pages
