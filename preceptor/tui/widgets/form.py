"""A settings form built from a settings dataclass (``config.describe``).

The form only collects text; validation is the dataclass's own (``config.section``),
so a bad value gets the same titled error as a bad ``preceptor.toml`` entry.
"""

from __future__ import annotations

import typing
from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Input, Label, Select, Static

from preceptor import config as cfg


def _choices(typ: Any) -> list[Any] | None:
    origin = typing.get_origin(typ)
    if origin is typing.Literal:
        return list(typing.get_args(typ))
    if typ is bool:
        return [True, False]
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", typing.Union)):
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if len(args) == 1:
            return _choices(args[0])
    return None


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    if isinstance(value, dict):
        return cfg.format_value(value) if value else ""
    return str(value)


class SettingsForm(Vertical):
    """One row per field: name, an input pre-filled with the current value, its help."""

    def __init__(self, cls: type, current: Any = None, *, skip: tuple[str, ...] = (),
                 choices: dict[str, list[str]] | None = None, id: str | None = None) -> None:
        super().__init__(id=id)
        self.extra_choices = choices or {}
        self.cls = cls
        self.current = current
        self.skip = skip
        self.hints = typing.get_type_hints(cls)
        self.fields = [(n, d, h) for n, d, h in cfg.describe(cls) if n not in skip]
        self.defaults: dict[str, str] = {}

    def compose(self) -> ComposeResult:
        for name, default, helptext in self.fields:
            value = getattr(self.current, name, default) if self.current is not None else default
            choices = self.extra_choices.get(name) or _choices(self.hints.get(name))
            with Horizontal(classes="form-row"):
                yield Label(name)
                if choices is not None and all(isinstance(c, (str, bool, int, float)) for c in choices):
                    options = [(_text(c).lower() if isinstance(c, bool) else _text(c), _text(c)) for c in choices]
                    initial = _text(value) if value is not None else Select.BLANK
                    yield Select(options, value=initial if initial in {o[1] for o in options} else Select.BLANK,
                                 allow_blank=value is None, id=f"f-{name}", compact=True)
                else:
                    yield Input(_text(value), id=f"f-{name}", placeholder="(default)" if value is None else "", compact=True)
            self.defaults[name] = _text(value)
            if helptext:
                yield Static(helptext, classes="form-help")

    def raw_values(self, changed_only: bool = True) -> dict[str, Any]:
        """Values as text keyed by field name: those the user changed, or all that are set."""
        out: dict[str, Any] = {}
        for name, _, _ in self.fields:
            widget = self.query_one(f"#f-{name}")
            if isinstance(widget, Select):
                value = "" if widget.value is Select.BLANK else str(widget.value)
            else:
                value = widget.value.strip()  # type: ignore[attr-defined]
            if not changed_only:
                if value != "":
                    out[name] = value
            elif value != self.defaults.get(name, ""):
                out[name] = None if value == "" else value
        return out
