"""Where things live: the project folder and PRECEPTOR_HOME (model cache, demo)."""

from __future__ import annotations

import os
from pathlib import Path

CONFIG_NAME = "preceptor.toml"
DB_NAME = "preceptor.db"


def home() -> Path:
    """The user-level folder for the model cache and the demo project.

    ``PRECEPTOR_HOME`` wins; otherwise ``$XDG_CACHE_HOME/preceptor`` or ``~/.cache/preceptor``.
    A team can point ``PRECEPTOR_HOME`` at a shared folder.
    """
    env = os.environ.get("PRECEPTOR_HOME")
    if env:
        return Path(env).expanduser().resolve()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return (Path(base) / "preceptor").resolve()


def models_dir() -> Path:
    """The converted-model cache (``PRECEPTOR_MODELS`` overrides; tests share one, read-only)."""
    env = os.environ.get("PRECEPTOR_MODELS")
    return Path(env).expanduser().resolve() if env else home() / "models"


def demo_dir() -> Path:
    return home() / "demo"


def default_project_dir() -> Path:
    """``PRECEPTOR_PROJECT`` if set, else the current folder."""
    env = os.environ.get("PRECEPTOR_PROJECT")
    return Path(env).expanduser().resolve() if env else Path.cwd().resolve()
