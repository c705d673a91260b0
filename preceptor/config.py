"""``preceptor.toml``: one TOML file per project, read into validated dataclasses.

Each capability declares its own settings dataclass (fields carry ``help`` metadata) and
reads its table with :func:`section`. Unknown keys and wrong types are errors that name the
file, the table and the field. Command-line flags override file values through
:func:`override`.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import tomllib

from preceptor.errors import PreceptorError

T = TypeVar("T")


def setting(default: Any, help: str, **kwargs: Any) -> Any:
    """A dataclass field with a ``help`` text (shown by ``--help`` and in the TUI forms)."""
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata={"help": help}, **kwargs)
    return dataclasses.field(default=default, metadata={"help": help}, **kwargs)


def load(path: Path) -> dict[str, Any]:
    """Read a TOML file; a syntax error names the file, line and column."""
    if path.is_dir():
        raise PreceptorError("Cannot read settings", f"{path} is a folder, not a settings file",
                             f"Move the folder away; {path.name} must be a TOML file (`preceptor init` writes one).")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise PreceptorError("Cannot read settings", f"{path}: {exc.strerror}", "Check the file's permissions.")
    except UnicodeDecodeError as exc:
        raise PreceptorError("Cannot read settings", f"{path}: not UTF-8 ({exc.reason})", "Save the file as UTF-8.")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PreceptorError("Invalid settings file", f"{path}: {exc}", "Fix the TOML syntax at that line.")


def _coerce(value: Any, typ: Any, where: str) -> Any:
    origin = typing.get_origin(typ)
    args = typing.get_args(typ)
    if typ is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except PreceptorError as exc:
                errors.append(exc)
        raise errors[0] if errors else PreceptorError("Invalid setting", f"{where}: unexpected null", "")
    if origin is typing.Literal:
        if value not in args:
            choices = ", ".join(repr(a) for a in args)
            raise PreceptorError("Invalid setting", f"{where} = {value!r} is not one of {choices}", f"Use one of {choices}.")
        return value
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise PreceptorError("Invalid setting", f"{where} must be a list, got {value!r}", "Write it as [\"a\", \"b\"].")
        inner = args[0] if args else Any
        return [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise PreceptorError("Invalid setting", f"{where} must be a table, got {value!r}", "")
        return dict(value)
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no", "on", "off"):
            return value.lower() in ("true", "1", "yes", "on")
        raise PreceptorError("Invalid setting", f"{where} must be true or false, got {value!r}", "")
    if typ is int:
        if isinstance(value, bool):
            raise PreceptorError("Invalid setting", f"{where} must be an integer, got {value!r}", "")
        try:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        except (TypeError, ValueError):
            raise PreceptorError("Invalid setting", f"{where} must be an integer, got {value!r}", "")
    if typ is float:
        if isinstance(value, bool):
            raise PreceptorError("Invalid setting", f"{where} must be a number, got {value!r}", "")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise PreceptorError("Invalid setting", f"{where} must be a number, got {value!r}", "")
    if typ is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise PreceptorError("Invalid setting", f"{where} must be a string, got {value!r}", "")
        return str(value)
    return value


def section(cls: type[T], table: dict[str, Any] | None, where: str) -> T:
    """Build settings dataclass ``cls`` from a TOML table; ``where`` names it in errors."""
    if table is not None and not isinstance(table, dict):
        raise PreceptorError("Invalid setting", f"{where} must be a table, found {type(table).__name__} {table!r}",
                             "Write it as a table header with keys under it, e.g. [project] then name = \"...\".")
    table = dict(table or {})
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(table) - names)
    if unknown:
        close = difflib.get_close_matches(unknown[0], sorted(names), n=1)
        raise PreceptorError(
            "Unknown setting",
            f"{where}: unknown key {unknown[0]!r}" + (f" (did you mean {close[0]!r}?)" if close else ""),
            f"Known keys: {', '.join(sorted(names))}. `preceptor settings` lists them with their help.",
        )
    values = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in table.items()}
    try:
        return cls(**values)
    except (ValueError, TypeError) as exc:
        raise PreceptorError("Invalid setting", f"{where}: {exc}", "")


def override(settings: T, where: str = "flags", **values: Any) -> T:
    """Return a copy of ``settings`` with the non-None ``values`` applied (validated)."""
    hints = typing.get_type_hints(type(settings))
    changes = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in values.items() if v is not None}
    try:
        return dataclasses.replace(settings, **changes)
    except (ValueError, TypeError) as exc:
        raise PreceptorError("Invalid setting", f"{where}: {exc}", "")


def describe(cls: type) -> list[tuple[str, Any, str]]:
    """(name, default, help) for every field: used by --help texts and TUI forms."""
    out = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None  # type: ignore[misc]
        )
        out.append((f.name, default, f.metadata.get("help", "")))
    return out


# --- writing (tomlkit: the user's comments, order and layout survive every update) ----

def format_value(value: Any) -> str:
    """``value`` written as a TOML value (a string, list or inline table)."""
    import tomlkit

    item = tomlkit.item(value)
    if isinstance(value, dict):
        inline = tomlkit.inline_table()
        inline.update(value)
        item = inline
    return item.as_string()


def dumps(data: dict[str, Any]) -> str:
    """Write nested dicts as TOML (tables for dicts of dicts, inline values otherwise)."""
    import tomlkit

    return tomlkit.dumps(_plain(data))


def _plain(data: dict[str, Any]) -> dict[str, Any]:
    return {k: _plain(v) if isinstance(v, dict) else v for k, v in data.items() if v is not None}


def _write(path: Path, text: str) -> None:
    import os

    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def update_file(path: Path, updates: dict[str, Any], *, replace: tuple[str, ...] = (),
                drop: dict[str, list[str]] | None = None) -> None:
    """Merge ``updates`` (nested tables) into the TOML file at ``path``, keeping its comments.

    Tables named (dotted) in ``replace`` are replaced whole rather than merged; ``drop`` maps a
    dotted table to keys to remove. Everything else in the file is left as the user wrote it.
    """
    import tomlkit

    load(path)  # a syntax error names the file, line and column
    try:
        doc = tomlkit.parse(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        doc = tomlkit.parse(HEADER)

    def merge(dst: Any, src: dict[str, Any], prefix: str) -> None:
        for k, v in src.items():
            dotted = f"{prefix}.{k}" if prefix else k
            if v is None:
                if k in dst:
                    del dst[k]
            elif isinstance(v, dict) and dotted not in replace and isinstance(dst.get(k), dict):
                merge(dst[k], v, dotted)
            elif isinstance(v, dict):
                dst[k] = _table(v)
            else:
                dst[k] = v

    merge(doc, updates, "")
    for dotted, keys in (drop or {}).items():
        node: Any = doc
        for part in dotted.split("."):
            node = node.get(part, {}) if isinstance(node, dict) else {}
        for k in keys:
            if isinstance(node, dict) and k in node:
                del node[k]
    _write(path, tomlkit.dumps(doc))


def _table(data: dict[str, Any]) -> Any:
    import tomlkit

    if not data:
        return tomlkit.table()
    subtables = any(isinstance(v, dict) and any(isinstance(x, dict) for x in v.values()) for v in data.values())
    table = tomlkit.table(is_super_table=subtables or None)
    for k, v in data.items():
        if v is None:
            continue
        table[k] = _table(v) if isinstance(v, dict) and any(isinstance(x, dict) for x in v.values()) else v
    return table


HEADER = "# preceptor project settings. Every table is optional; `preceptor settings` lists them all.\n\n"


INIT_TEMPLATE = """\
# preceptor project settings. Every table is optional; `preceptor settings` lists every
# key with its default and help. Comments and layout you add here are kept when preceptor
# updates this file (e.g. `systems add`, `import-pairs --stage`).

[project]
name = {name}
# max_field_chars = 100000

# [systems.NAME]   systems that answer prompts (`preceptor systems add`)
# [generate]       decoding for `preceptor generate`
# [judge]          the LLM judge (`preceptor judge llm`)
# [eval]           automatic metrics (`preceptor eval`)
# [train.sft]      supervised fine-tuning (`preceptor train sft`)
# [train.dpo]      preference tuning (`preceptor train dpo`)
# [embed]          the embedding curriculum (`preceptor train embed`)
"""


def init_text(name: str) -> str:
    """The commented ``preceptor.toml`` that ``preceptor init`` writes."""
    return INIT_TEMPLATE.format(name=format_value(name))
