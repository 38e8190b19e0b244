"""Where genforge keeps downloaded data and trained models on this machine.

One place decides this so that every module (corpus cache, shard cache, model store) agrees, and so
that tests and users can move everything at once with ``GENFORGE_HOME``.
"""
from __future__ import annotations

import os
from pathlib import Path

ENV_HOME = "GENFORGE_HOME"


def genforge_home() -> Path:
    """The root folder: ``$GENFORGE_HOME`` if set, else the platform's per-user data folder.

    Nothing is created here; callers create what they write into, so merely importing or asking
    for a path never touches the disk.
    """
    env = os.environ.get(ENV_HOME, "").strip()
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("genforge", appauthor=False))


def data_home() -> Path:
    """Downloaded corpora (e.g. ``shakespeare.txt``) and token shard caches live here."""
    return genforge_home() / "data"


def models_home() -> Path:
    """Trained and downloaded model checkpoints live here."""
    return genforge_home() / "models"
