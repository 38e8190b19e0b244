"""Atomic file writes: a reader sees the old file or the new one, never half of one.

A write goes to a temp file in the target's folder (so the rename stays on one filesystem), is
flushed and fsynced, then renamed over the target with ``os.replace``; the folder is fsynced too,
so the rename survives a power cut. Temp names carry the writer's PID
(``.NAME.tmp-PID-XXXXXXXX``): leftovers of a killed writer are told apart from a live writer's
and removed by the next write of the same file. Importing this module does not import torch.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

# folder-name marks of a folder write in progress or interrupted: NAME.tmp-PID (being written),
# NAME.old-PID (moved aside while NAME is replaced), NAME.del-PID (being deleted)
LEFTOVERS = (".old-", ".tmp-", ".del-")


def pid_alive(pid: int) -> bool:
    """Whether a process with this PID exists on this machine."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


def writer_pid(name: str, marker: str) -> int | None:
    """The PID in a temp name such as ``step-10.tmp-123`` or ``.x.tmp-123-ab12`` (``marker`` ".tmp-")."""
    if marker not in name:
        return None
    tail = name.rsplit(marker, 1)[1].split("-", 1)[0]
    return int(tail) if tail.isdigit() else None


def left_by_dead_writer(name: str, marker: str) -> bool:
    """True for a temp name whose writer is gone (not this process, and no longer running)."""
    pid = writer_pid(name, marker)
    return pid is not None and pid != os.getpid() and not pid_alive(pid)


def fsync_path(path: str | Path) -> None:
    """fsync a file or a folder (a folder's fsync makes renames inside it durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_stale_temps(path: str | Path) -> None:
    """Delete temp files or folders that killed writers left beside ``path``."""
    path = Path(path)
    prefix = f".{path.name}.tmp-"
    try:
        entries = list(os.scandir(path.parent))
    except FileNotFoundError:
        return
    for entry in entries:
        if entry.name.startswith(prefix) and left_by_dead_writer(entry.name, ".tmp-"):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                try:
                    os.unlink(entry.path)
                except FileNotFoundError:
                    pass


def atomic_write_bytes(path: str | Path, data: bytes, mode: int = 0o644) -> Path:
    """Replace ``path`` with ``data`` atomically and durably; the temp file is removed on error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-{os.getpid()}-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)  # mkstemp makes it owner-only
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_path(path.parent)
    return path


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8", mode: int = 0o644) -> Path:
    """``atomic_write_bytes`` for text."""
    return atomic_write_bytes(path, text.encode(encoding), mode)
