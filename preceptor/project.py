"""A project is a folder holding ``preceptor.toml`` (settings) and ``preceptor.db`` (SQLite).

Run folders (adapters, checkpoints, reports, exports) live inside the project folder so
every user of a shared project sees them; the model cache and the demo live under
``PRECEPTOR_HOME``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from preceptor import config as cfg
from preceptor import paths
from preceptor.config import setting
from preceptor.db import open_database
from preceptor.db.store import Store
from preceptor.errors import PreceptorError


@dataclass
class ProjectSettings:
    name: str = setting("", "A display name for the project.")
    max_field_chars: int = setting(100_000, "Longest prompt or reference accepted by imports (characters).")

    def __post_init__(self) -> None:
        if self.max_field_chars < 1:
            raise ValueError("max_field_chars must be positive")


class Project:
    """An open project: its folder, its raw settings and its store."""

    def __init__(self, root: Path, store: Store, raw: dict[str, Any]) -> None:
        self.root = root
        self.store = store
        self.raw = raw
        self.settings = cfg.section(ProjectSettings, raw.get("project"), f"{self.config_path}: [project]")

    # -- locations --------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.root / paths.CONFIG_NAME

    @property
    def db_path(self) -> Path:
        return self.root / paths.DB_NAME

    def runs_dir(self) -> Path:
        return self.root / "runs"

    def reports_dir(self) -> Path:
        return self.root / "reports"

    def exports_dir(self) -> Path:
        return self.root / "exports"

    # -- settings ---------------------------------------------------------------------
    def table(self, name: str) -> dict[str, Any]:
        """The raw TOML table ``name`` (dotted for nested, e.g. ``"train.sft"``)."""
        node: Any = self.raw
        for part in name.split("."):
            node = node.get(part, {}) if isinstance(node, dict) else {}
        return node if isinstance(node, dict) else {}

    def section(self, name: str, cls: type) -> Any:
        """Settings dataclass ``cls`` read from table ``name`` (errors name the file and field)."""
        return cfg.section(cls, self.table(name), f"{self.config_path}: [{name}]")

    def update_settings(self, updates: dict[str, Any]) -> None:
        cfg.update_file(self.config_path, updates)
        self.raw = cfg.load(self.config_path)

    def reload(self) -> None:
        self.raw = cfg.load(self.config_path)

    # -- lifecycle --------------------------------------------------------------------
    @classmethod
    def init(cls, root: Path | str, name: str | None = None) -> Project:
        root = Path(root).expanduser().resolve()
        root.mkdir(parents=True, exist_ok=True)
        conf = root / paths.CONFIG_NAME
        if not conf.exists():
            conf.write_text(cfg.init_text(name or root.name), encoding="utf-8")
        return cls.open(root)

    @classmethod
    def open(cls, root: Path | str | None = None, *, create: bool = False) -> Project:
        root = Path(root).expanduser().resolve() if root else paths.default_project_dir()
        conf = root / paths.CONFIG_NAME
        if not conf.exists():
            if create:
                return cls.init(root)
            raise PreceptorError(
                "Not a preceptor project",
                f"{root} has no {paths.CONFIG_NAME}",
                f"Run `preceptor init {root}` first, or pass --project DIR (or set PRECEPTOR_PROJECT).",
            )
        if not os.access(root, os.W_OK):
            raise PreceptorError("Project not writable", f"{root} is not writable by you", "Ask the owner to make the folder group-writable (see README: shared projects).")
        raw = cfg.load(conf)
        store = open_database(root / paths.DB_NAME)
        project = cls(root, store, raw)
        from preceptor.db import prompts, runs

        runs.mark_dead_runs(store)
        prompts.drop_stale_imports(store)  # an import killed mid-way: its staged rows go
        return project

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
