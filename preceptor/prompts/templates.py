"""Prompt templates: validated, versioned objects with a content hash.

A template is a TOML file in ``preceptor/prompts/templates/`` (or any path)::

    name = "teacher"
    version = 1
    description = "..."
    system = "You are ..."              # optional; empty means no system message
    user = "{{ prompt }}"
    variables = ["prompt"]

Placeholders are ``{{ name }}``; every placeholder must be declared in ``variables`` and
every declared variable used (checked when the file is loaded). :meth:`Template.render`
substitutes in one pass (a value that itself contains ``{{ x }}`` is left alone) and
raises a :class:`PreceptorError` naming a missing or unknown variable. :attr:`Template.hash`
is the sha256 of the template's content (name, version, system, user, variables), stored
on every output so the exact messages are reproducible from the stored prompt and hash.

The messages students are asked (base, ft, dpo — and what SFT and the DPO export train on)
come from :func:`student_messages`; the teacher's from :func:`teacher_messages`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from preceptor.errors import PreceptorError

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
KEYS = {"name", "version", "description", "system", "user", "variables"}

STUDENT = "passthrough"
TEACHER = "teacher"
TEACHER_GROUNDED = "teacher_grounded"
# The four task styles of seed 000: prompt builders from structured fields.
TASK_STYLES = {
    "interaction": "task_interaction",
    "normalize_json": "task_normalize_json",
    "moa_sentence": "task_moa_sentence",
    "clinical_card": "task_clinical_card",
}


@dataclass(frozen=True)
class Template:
    name: str
    version: int
    system: str
    user: str
    variables: tuple[str, ...]
    description: str = ""
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        used = set(PLACEHOLDER.findall(self.system)) | set(PLACEHOLDER.findall(self.user))
        declared = set(self.variables)
        where = self.source or f"template {self.name!r}"
        if len(declared) != len(self.variables):
            raise PreceptorError("Invalid template", f"{where}: a variable is declared twice in {list(self.variables)}", "List each variable once.")
        if used - declared:
            name = sorted(used - declared)[0]
            raise PreceptorError("Invalid template", f"{where}: placeholder {{{{ {name} }}}} is not declared in variables",
                                 f"Add {name!r} to variables = [...] or remove the placeholder.")
        if declared - used:
            name = sorted(declared - used)[0]
            raise PreceptorError("Invalid template", f"{where}: variable {name!r} is declared but never used",
                                 "Use it as {{ " + name + " }} in system or user, or remove it from variables.")
        if not self.user.strip():
            raise PreceptorError("Invalid template", f"{where}: 'user' is empty", "Write the user message, e.g. user = \"{{ prompt }}\".")

    @functools.cached_property
    def hash(self) -> str:
        blob = json.dumps({"name": self.name, "version": self.version, "system": self.system, "user": self.user,
                           "variables": list(self.variables)}, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def render(self, **values: Any) -> list[dict[str, str]]:
        """The messages (system if any, then user) with every variable filled in."""
        missing = [v for v in self.variables if v not in values or values[v] is None]
        if missing:
            raise PreceptorError("Template variable missing", f"template {self.name!r} needs {missing[0]!r}",
                                 f"Pass all of: {', '.join(self.variables)}.")
        unknown = sorted(set(values) - set(self.variables))
        if unknown:
            raise PreceptorError("Unknown template variable", f"template {self.name!r} has no variable {unknown[0]!r}",
                                 f"Its variables are: {', '.join(self.variables) or 'none'}.")
        text_values = {k: str(v) for k, v in values.items()}

        def fill(text: str) -> str:
            return PLACEHOLDER.sub(lambda m: text_values[m.group(1)], text)

        messages = []
        system = fill(self.system).strip()
        if system:
            messages.append({"role": "system", "content": system})
        messages.append({"role": "user", "content": fill(self.user).strip()})
        return messages


def load(path: Path | str) -> Template:
    """A template from a TOML file; errors name the file and the field."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PreceptorError("Template not found", f"{path} does not exist", f"Known templates: {', '.join(names()) or 'none'}.")
    except tomllib.TOMLDecodeError as exc:
        raise PreceptorError("Invalid template", f"{path}: {exc}", "Fix the TOML syntax at that line.")
    unknown = sorted(set(data) - KEYS)
    if unknown:
        raise PreceptorError("Invalid template", f"{path}: unknown key {unknown[0]!r}", f"Known keys: {', '.join(sorted(KEYS))}.")
    for key in ("name", "user"):
        if not isinstance(data.get(key), str):
            raise PreceptorError("Invalid template", f"{path}: {key!r} must be a string", "")
    version = data.get("version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise PreceptorError("Invalid template", f"{path}: 'version' must be a positive integer, got {version!r}", "")
    variables = data.get("variables", [])
    if not isinstance(variables, list) or not all(isinstance(v, str) for v in variables):
        raise PreceptorError("Invalid template", f"{path}: 'variables' must be a list of names", "Write variables = [\"prompt\"].")
    system = data.get("system", "")
    if not isinstance(system, str):
        raise PreceptorError("Invalid template", f"{path}: 'system' must be a string", "")
    return Template(data["name"], version, system, data["user"], tuple(variables), str(data.get("description", "")),
                    source=str(path))


@functools.lru_cache(maxsize=64)
def _get_cached(path: str, mtime: float) -> Template:
    return load(Path(path))


def get(name: str) -> Template:
    """The packaged template ``name`` (``prompts/templates/<name>.toml``), or a template file path."""
    candidate = Path(name)
    if candidate.suffix == ".toml" and candidate.exists():
        path = candidate.resolve()
    else:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name or ""):
            raise PreceptorError("Template not found", f"{name!r} is not a template name", f"Known templates: {', '.join(names())}.")
        path = TEMPLATES_DIR / f"{name}.toml"
        if not path.exists():
            raise PreceptorError("Template not found", f"no template named {name!r} in {TEMPLATES_DIR}",
                                 f"Known templates: {', '.join(names())}.")
    return _get_cached(str(path), path.stat().st_mtime)


def names() -> list[str]:
    return sorted(p.stem for p in TEMPLATES_DIR.glob("*.toml"))


# -- the messages each kind of system is asked ---------------------------------------

def _text_of(prompt: Any) -> str:
    text = prompt if isinstance(prompt, str) else getattr(prompt, "text", None)
    if not isinstance(text, str) or not text.strip():
        raise PreceptorError("Empty prompt", "a prompt has no text", "Check the imported file's prompt column.")
    return text


def _system_text(system: Any) -> str | None:
    if system is None or isinstance(system, str):
        return system
    params = getattr(system, "params", None)  # a db System: its optional system_prompt param
    return params.get("system_prompt") if isinstance(params, dict) else None


def student_messages(prompt: Any, system: Any = None) -> tuple[list[dict[str, str]], str]:
    """What students (base / ft / dpo) are asked: the prompt as the user turn, passed through.

    Depends only on the prompt's text (a ``str`` or a db ``Prompt``) and an optional system
    prompt (text, or a db System whose params carry ``system_prompt``), so generation,
    SFT, perplexity and the DPO export all see the same messages. Returns
    (messages, template hash); a system prompt changes the hash.
    """
    tpl = get(STUDENT)
    messages = tpl.render(prompt=_text_of(prompt))
    sys_text = _system_text(system)
    if sys_text and sys_text.strip():
        messages = [{"role": "system", "content": sys_text.strip()}, *messages]
        digest = hashlib.sha256((tpl.hash + "\x00system\x00" + sys_text.strip()).encode("utf-8")).hexdigest()
        return messages, digest
    return messages, tpl.hash


def teacher_messages(prompt: Any, grounded: bool = False, reference: str | None = None) -> tuple[list[dict[str, str]], str]:
    """What the teacher is asked: the domain teacher prompt; ``grounded`` adds the item's reference facts.

    ``prompt`` is a ``str`` or a db ``Prompt`` (whose ``reference`` is used when grounded).
    """
    text = _text_of(prompt)
    if not grounded:
        tpl = get(TEACHER)
        return tpl.render(prompt=text), tpl.hash
    facts = reference if reference is not None else getattr(prompt, "reference", None)
    if not facts or not str(facts).strip():
        raise PreceptorError("No reference facts", "the grounded teacher needs the item's reference, and this prompt has none",
                             "Import a reference column (--reference-col), or use an API teacher (`preceptor systems preset seed000`).")
    tpl = get(TEACHER_GROUNDED)
    return tpl.render(prompt=text, reference=str(facts).strip()), tpl.hash


def task_prompt(style: str, **values: Any) -> str:
    """A user prompt in one of seed 000's task styles (``interaction``, ``normalize_json``,
    ``moa_sentence``, ``clinical_card``) built from its fields (drug_a/drug_b or product)."""
    if style not in TASK_STYLES:
        raise PreceptorError("Unknown task style", f"{style!r} is not a task style", f"Use one of: {', '.join(TASK_STYLES)}.")
    return get(TASK_STYLES[style]).render(**values)[-1]["content"]


def task_messages(style: str, **values: Any) -> tuple[list[dict[str, str]], str]:
    """The full messages (with the style's answer-format system prompt) of a task-style prompt."""
    if style not in TASK_STYLES:
        raise PreceptorError("Unknown task style", f"{style!r} is not a task style", f"Use one of: {', '.join(TASK_STYLES)}.")
    tpl = get(TASK_STYLES[style])
    return tpl.render(**values), tpl.hash
