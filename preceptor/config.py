"""``preceptor.toml``: one TOML file per project, read into validated dataclasses.

Each capability declares its own settings dataclass (fields carry ``help`` metadata) and
reads its table with :func:`section`. Unknown keys and wrong types are errors that name the
file, the table and the field. Command-line flags override file values through
:func:`override`.
"""

from __future__ import annotations

import dataclasses
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
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
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
    table = dict(table or {})
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(table) - names)
    if unknown:
        raise PreceptorError(
            "Unknown setting",
            f"{where}: unknown key {unknown[0]!r}",
            f"Known keys: {', '.join(sorted(names))}.",
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


# --- writing -------------------------------------------------------------------------

def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_fmt(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {value!r} to TOML")


def _key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else _fmt(key)


def dumps(data: dict[str, Any]) -> str:
    """Write nested dicts as TOML (tables for dicts of dicts, inline values otherwise)."""
    lines: list[str] = []

    def emit(table: dict[str, Any], prefix: str) -> None:
        scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
        subtables = {k: v for k, v in table.items() if isinstance(v, dict)}
        if prefix and (scalars or not subtables):
            lines.append(f"[{prefix}]")
        for k, v in scalars.items():
            if v is None:
                continue
            lines.append(f"{_key(k)} = {_fmt(v)}")
        if prefix and (scalars or not subtables):
            lines.append("")
        for k, v in subtables.items():
            emit(v, f"{prefix}.{_key(k)}" if prefix else _key(k))

    emit(data, "")
    return "\n".join(lines).rstrip() + "\n"


def update_file(path: Path, updates: dict[str, Any]) -> None:
    """Merge ``updates`` (nested tables) into the TOML file at ``path`` and rewrite it."""
    data = load(path)

    def merge(dst: dict[str, Any], src: dict[str, Any]) -> None:
        for k, v in src.items():
            if isinstance(v, dict) and isinstance(dst.get(k), dict):
                merge(dst[k], v)
            else:
                dst[k] = v

    merge(data, updates)
    tmp = path.with_suffix(".toml.tmp")
    tmp.write_text(HEADER + dumps(data), encoding="utf-8")
    tmp.replace(path)


HEADER = "# preceptor project settings. Every table is optional; `preceptor --help` lists the commands.\n\n"
