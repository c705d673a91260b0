"""The converted-model cache: folders written atomically under a file lock, with a marker and a registry.

Everything converted (the packaged student, the e5 encoder) lives under
:func:`preceptor.paths.models_dir`, one folder per model with a ``preceptor_model.json``
marker; a conversion writes into a temporary sibling and renames it into place, under an
exclusive lock, so a concurrent or interrupted set-up never leaves half a folder.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from preceptor import paths

MARKER = "preceptor_model.json"

CONVERSION_VERSION = 1

def converted_dir(name: str) -> Path:
    """The folder of model ``name`` in the converted-model cache."""
    return paths.models_dir() / name

def is_converted(folder: Path) -> bool:
    marker = folder / MARKER
    if not marker.exists() or not (folder / "config.json").exists():
        return False
    try:
        info = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    return info.get("conversion_version") == CONVERSION_VERSION

@contextlib.contextmanager
def lock(folder: Path) -> Iterator[None]:
    """An exclusive lock on ``folder/.setup.lock`` (another set-up waits, then finds it done)."""
    import filelock

    folder.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(str(folder / ".setup.lock")):
        yield

def pip_install(names: list[str]) -> tuple[bool, str]:
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", *names]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    importlib.invalidate_caches()
    return proc.returncode == 0, (proc.stderr or proc.stdout).strip()[-400:]

@contextlib.contextmanager
def atomic_folder(out: Path) -> Iterator[Path]:
    """A temporary sibling folder that replaces ``out`` only if the block finishes.

    An error or an interruption inside the block leaves ``out`` as it was (absent or the
    previous version) and removes the temporary folder: readers never see half a model.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        share_files(tmp)
        if out.exists():  # an older version: move it aside, then swap
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            shutil.rmtree(old, ignore_errors=True)
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

def share_files(folder: Path) -> None:
    """Give saved files the umask's permissions (safetensors writes 0600; a team cache must be readable)."""
    mask = os.umask(0)
    os.umask(mask)
    for f in folder.rglob("*"):
        with contextlib.suppress(OSError):
            f.chmod((0o777 if f.is_dir() else 0o666) & ~mask)  # sub-folders stay searchable

def _registry_path() -> Path:
    return paths.models_dir() / "registry.json"

def write_registry(entries: dict[str, Any]) -> None:
    path = _registry_path()
    tmp = path.with_suffix(f".json.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(entries, indent=2, sort_keys=True))
    tmp.replace(path)

def read_registry() -> dict[str, Any]:
    try:
        return json.loads(_registry_path().read_text())
    except (OSError, ValueError):
        return {}


def find_package_file(package: str, relpath: str) -> Path | None:
    """Where ``relpath`` lies inside the installed package ``package``, located without importing it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        p = Path(loc) / relpath
        if p.exists():
            return p
    return None


def quiet_transformers() -> None:
    """No progress bars or info chatter from transformers (they would corrupt the CLI bar or a TUI)."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
