"""Every table ``preceptor.toml`` may hold, and the check that refuses anything else.

A misspelt table (``[projekt]``) or key (``judge = "x"`` at the top, ``[judge] overlap = 1``)
used to be ignored silently, so the setting the user meant never applied. :func:`check`
refuses it with the file, the name and the closest known one. Free-form tables keep their
own validation: ``[systems.NAME]`` (each system's params, checked by ``systems add`` and when
the system is used) and ``[train.accelerate]`` (the launcher's options).
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Any

from preceptor.errors import PreceptorError

if TYPE_CHECKING:
    from preceptor.project import Project

FREE_FORM = ("systems", "train.accelerate")
# the tables, without importing the engine's modules (checked on every open: kept cheap);
# tests check they name exactly the tables of :func:`tables` plus the free-form ones
TOP_TABLES = ("embed", "eval", "generate", "judge", "project", "systems", "train")
TRAIN_TABLES = ("accelerate", "dpo", "sft")


def tables() -> list[tuple[str, type]]:
    """(table, settings dataclass) for every table with fixed keys, in file order."""
    from preceptor.engine.embed.settings import EmbedSettings
    from preceptor.engine.evaluation.evaluate import EvalSettings
    from preceptor.engine.generation.systems import GenerateSettings
    from preceptor.engine.judging.settings import JudgeSettings
    from preceptor.engine.train.settings import DPOSettings, SFTSettings
    from preceptor.project import ProjectSettings

    return [("project", ProjectSettings), ("generate", GenerateSettings), ("judge", JudgeSettings),
            ("eval", EvalSettings), ("train.sft", SFTSettings), ("train.dpo", DPOSettings), ("embed", EmbedSettings)]


def _unknown(where: str, kind: str, name: str, known: list[str]) -> PreceptorError:
    close = difflib.get_close_matches(name, known, n=1)
    return PreceptorError(f"Unknown settings {kind}", f"{where}: {kind} {name!r} is not one preceptor reads"
                          + (f" (did you mean {close[0]!r}?)" if close else ""),
                          f"Known {kind}s: {', '.join(known)}. `preceptor settings` lists every setting.")


def check_tables(raw: dict[str, Any], where: str) -> None:
    """Refuse unknown tables and non-table values (cheap: no engine module is imported).
    Unknown keys inside a known table are refused when that table is read
    (:func:`preceptor.config.section`), or all at once by :func:`check`."""
    top = list(TOP_TABLES)
    for key, value in raw.items():
        if key not in top:
            raise _unknown(where, "table", key, top)
        if not isinstance(value, dict):
            raise PreceptorError("Invalid setting", f"{where}: {key} = {value!r} must be a table ([{key}] with keys under it)",
                                 f"Write [{key}] on its own line, then its keys; `preceptor settings {key}` lists them.")
    for key, value in (raw.get("train") or {}).items():
        if key not in TRAIN_TABLES:
            raise _unknown(where, "table", f"train.{key}", [f"train.{s}" for s in TRAIN_TABLES])
        if not isinstance(value, dict):
            raise PreceptorError("Invalid setting", f"{where}: train.{key} must be a table ([train.{key}])",
                                 f"Write [train.{key}] on its own line, then its keys.")
    for name, value in (raw.get("systems") or {}).items():
        if not isinstance(value, dict):
            raise PreceptorError("Invalid setting", f"{where}: systems.{name} must be a table ([systems.{name}])",
                                 "Define a system with `preceptor systems add NAME ...`.")


def check(project: Project) -> None:
    """Refuse unknown tables and keys anywhere in the project's settings, and wrong types."""
    check_tables(project.raw, str(project.config_path))
    for name, cls in tables():
        project.section(name, cls)  # unknown keys (with did-you-mean) and wrong types
