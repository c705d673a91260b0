"""System definitions: who answers prompts (base, teacher, ft, dpo, custom) and how.

A system is a row in ``systems`` (what outputs point at). Users declare them in
``preceptor.toml``::

    [systems.qwen3-1.7b]
    role = "base"
    backend = "hf"                      # hf | litellm | grounded | retriever
    model = "Qwen/Qwen3-1.7B"
    params = { max_new_tokens = 512, chat_template_kwargs = { enable_thinking = false } }

    [systems.gpt-4o-mini]
    role = "teacher"
    backend = "litellm"
    model = "openrouter/openai/gpt-4o-mini"    # API key from $OPENROUTER_API_KEY
    api_base = "http://127.0.0.1:8000/v1"      # optional (vLLM, llama.cpp, any OpenAI server)

or with ``preceptor systems add`` (which writes the same table). A new project needs no
definitions: :func:`ensure_default_systems` adds the offline defaults — the packaged
student (``smollm2``, role base, backend hf) and the **grounded teacher**
(``grounded-teacher``, role teacher, backend ``grounded``: the same packaged model prompted
with each item's reference facts), so the loop runs with no network. ``preceptor systems
preset seed000`` switches to the seed-000 set-up (student Qwen3-1.7B with thinking off,
teacher and judge gpt-4o-mini through OpenRouter); a line ``preset = "seed000"`` in the
``[systems]`` table does the same for the systems.

A role name (``base``, ``teacher``, ``ft``, ``dpo``) wherever a system is expected means
the latest succeeded system with that role (:func:`preceptor.db.systems.resolve`).
API keys are never stored: a parameter named ``api_key`` is refused (use ``api_key_env``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from preceptor import config as cfg
from preceptor.config import setting
from preceptor.db import systems as q_systems
from preceptor.errors import PreceptorError

if TYPE_CHECKING:
    from preceptor.project import Project

GENERATING_BACKENDS = ("hf", "litellm", "grounded", "retriever")
DTYPE_CHOICES = ("fastest", "bf16", "bfloat16", "fp32", "float32", "fp16", "float16", "auto")
DEFAULT_BASE = "smollm2"
DEFAULT_TEACHER = "grounded-teacher"

HF_PARAMS = {
    "max_new_tokens": int, "batch_size": int, "dtype": str, "threads": int, "device": str,
    "do_sample": bool, "temperature": float, "top_p": float, "top_k": int, "repetition_penalty": float,
    "system_prompt": str, "chat_template_kwargs": dict, "seed": int, "merge_adapter": bool,
    "max_input_tokens": int,
}
LITELLM_PARAMS = {
    "temperature": float, "top_p": float, "max_tokens": int, "seed": int, "stop": (list, str),
    "presence_penalty": float, "frequency_penalty": float, "system_prompt": str, "api_base": str,
    "api_key_env": str, "concurrency": int, "max_retries": int, "timeout": float, "budget_usd": float,
    "input_cost_per_token": float, "output_cost_per_token": float, "drop_params": bool,
    "chat_template_kwargs": dict, "extra_body": dict, "reasoning_effort": str, "response_format": dict,
}
SECRET_KEYS = ("api_key", "key", "token", "secret", "password", "authorization", "api_token", "access_token",
               "auth_token", "bearer")

PRESETS: dict[str, dict[str, Any]] = {
    "seed000": {
        "description": "The seed-000 set-up: student Qwen/Qwen3-1.7B (thinking disabled), teacher and judge "
                       "openrouter/openai/gpt-4o-mini (key from $OPENROUTER_API_KEY).",
        "systems": {
            "qwen3-1.7b": {"role": "base", "backend": "hf", "model": "Qwen/Qwen3-1.7B",
                           "params": {"max_new_tokens": 512, "batch_size": 8,
                                      "chat_template_kwargs": {"enable_thinking": False}}},
            "gpt-4o-mini": {"role": "teacher", "backend": "litellm", "model": "openrouter/openai/gpt-4o-mini",
                            "params": {"temperature": 0.0, "max_tokens": 1024}},
        },
        "judge": {"backend": "litellm", "model": "openrouter/openai/gpt-4o-mini"},
    },
}


@dataclass
class GenerateSettings:
    """The ``[generate]`` table: defaults for every system (a system's params override them)."""

    batch_size: int = setting(16, "Prompts per batch of local (hf / grounded) generation.")
    max_new_tokens: int = setting(256, "Longest local answer (tokens); API systems use max_tokens in their params.")
    dtype: str = setting("fastest", "Weights dtype of local generation: fastest (bf16 on CPUs with AVX512-bf16/AMX and on recent GPUs, else fp32), bf16, fp32, fp16 or auto (the checkpoint's).")
    threads: int | None = setting(None, "Torch threads for local generation (default: $OMP_NUM_THREADS or 1).")
    device: str = setting("cpu", "Torch device of local generation (cpu, cuda, mps).")
    max_input_tokens: int = setting(2048, "Prompts longer than this (tokens) are cut from the left before generating.")
    concurrency: int = setting(16, "Parallel requests of API (litellm) systems.")
    max_retries: int = setting(5, "Retries of a failed API request (429, 5xx, timeouts), with backoff and jitter.")
    timeout: float = setting(60.0, "Seconds before an API request times out.")
    budget_usd: float | None = setting(None, "Stop API generation cleanly when its spend reaches this (USD).")
    write_every: int = setting(16, "Outputs of a local model written to the database per transaction (API answers are written one by one, as they arrive).")

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if self.max_retries < 0:
            raise ValueError("max_retries must be 0 or more")
        if self.timeout <= 0:
            raise ValueError("timeout must be positive")
        if self.threads is not None and self.threads < 1:
            raise ValueError("threads must be at least 1")
        if self.write_every < 1:
            raise ValueError("write_every must be at least 1")
        if self.dtype.lower() not in DTYPE_CHOICES:
            raise ValueError(f"dtype {self.dtype!r} is not fastest, bf16, fp32, fp16 or auto")


@dataclass
class SystemSpec:
    """One system definition, validated (from preceptor.toml or `systems add`)."""

    name: str
    role: str
    backend: str
    model: str | None = None
    adapter: str | None = None
    api_base: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    def db_params(self) -> dict[str, Any]:
        params = dict(self.params)
        if self.api_base:
            params["api_base"] = self.api_base
        return params

    def as_table(self) -> dict[str, Any]:
        table: dict[str, Any] = {"role": self.role, "backend": self.backend}
        for key in ("model", "adapter", "api_base", "description"):
            value = getattr(self, key)
            if value:
                table[key] = value
        if self.params:
            table["params"] = dict(self.params)
        return table


TABLE_KEYS = {"role", "backend", "model", "adapter", "api_base", "params", "description"}


def validate(name: str, table: dict[str, Any], where: str) -> SystemSpec:
    """A :class:`SystemSpec` from a ``[systems.NAME]`` table; errors name ``where`` and the key."""
    if not name or not all(c.isalnum() or c in "-_." for c in name):
        raise PreceptorError("Invalid system name", f"{where}: {name!r} may use letters, digits, '-', '_' and '.' only",
                             "Rename it, e.g. gpt-4o-mini or qwen3_ft.")
    if not isinstance(table, dict):
        raise PreceptorError("Invalid system", f"{where} must be a table", f"Write it as [systems.{name}].")
    unknown = sorted(set(table) - TABLE_KEYS)
    if unknown:
        raise PreceptorError("Unknown setting", f"{where}: unknown key {unknown[0]!r}", f"Known keys: {', '.join(sorted(TABLE_KEYS))}.")
    role = table.get("role", "custom")
    if role not in q_systems.ROLES:
        raise PreceptorError("Invalid setting", f"{where}.role = {role!r} is not one of {', '.join(q_systems.ROLES)}",
                             "Use base, teacher, ft, dpo or custom.")
    backend = table.get("backend")
    if backend not in GENERATING_BACKENDS:
        raise PreceptorError("Invalid setting", f"{where}.backend = {backend!r} is not one of {', '.join(GENERATING_BACKENDS)}",
                             "Use hf (local transformers model), litellm (an API or OpenAI-compatible server) or grounded.")
    model = table.get("model")
    if model is not None and not isinstance(model, str):
        raise PreceptorError("Invalid setting", f"{where}.model must be a string, got {model!r}", "")
    if not model and backend in ("hf", "litellm", "grounded"):
        hint = ("Use a litellm string such as openrouter/openai/gpt-4o-mini or openai/NAME with api_base."
                if backend == "litellm" else "Use smollm2-135m-instruct (packaged), a local folder, a .gguf file or a hub id.")
        raise PreceptorError("Missing setting", f"{where}.model is required for backend {backend!r}", hint)
    adapter = table.get("adapter")
    if adapter and backend not in ("hf", "grounded"):
        raise PreceptorError("Invalid setting", f"{where}.adapter only applies to local (hf) models", "Remove adapter, or use backend = \"hf\".")
    api_base = table.get("api_base")
    if api_base and backend != "litellm":
        raise PreceptorError("Invalid setting", f"{where}.api_base only applies to backend litellm", "Remove api_base, or use backend = \"litellm\".")
    if api_base and not str(api_base).startswith(("http://", "https://")):
        raise PreceptorError("Invalid setting", f"{where}.api_base = {api_base!r} is not an http(s) URL", "Write it as http://HOST:PORT/v1.")
    params = table.get("params", {}) or {}
    if not isinstance(params, dict):
        raise PreceptorError("Invalid setting", f"{where}.params must be a table", "Write it as params = { temperature = 0.0 }.")
    params = dict(params)
    _check_params(params, backend, f"{where}.params")
    if "api_base" in params:
        api_base = api_base or params.pop("api_base")
    return SystemSpec(name, role, backend, model, adapter, api_base, params, str(table.get("description", "") or ""))


def _check_params(params: dict[str, Any], backend: str, where: str) -> None:
    for key in params:
        lowered = key.lower()
        if lowered in SECRET_KEYS or lowered.endswith(("_key", "_secret", "_password")):
            raise PreceptorError("Secret in settings", f"{where}.{key}: API keys are never stored in the project",
                                 "Export the key in the environment (e.g. OPENROUTER_API_KEY), or name the variable with api_key_env = \"MY_KEY_VAR\".")
    known = HF_PARAMS if backend in ("hf", "grounded") else LITELLM_PARAMS if backend == "litellm" else None
    if known is None:
        return
    for key, value in params.items():
        if key not in known:
            if backend == "litellm":
                continue  # provider-specific parameters pass through to litellm
            raise PreceptorError("Unknown setting", f"{where}: unknown parameter {key!r} for backend {backend}",
                                 f"Known parameters: {', '.join(sorted(known))}.")
        typ = known[key]
        types = typ if isinstance(typ, tuple) else (typ,)
        ok = any(_is_type(value, t) for t in types)
        if not ok:
            names = " or ".join(t.__name__ for t in types)
            raise PreceptorError("Invalid setting", f"{where}.{key} must be {names}, got {value!r}", "")
    if backend in ("hf", "grounded"):
        for key in ("max_new_tokens", "batch_size", "threads"):
            if key in params and params[key] < 1:
                raise PreceptorError("Invalid setting", f"{where}.{key} must be at least 1, got {params[key]!r}", "")
        if "dtype" in params and str(params["dtype"]).lower() not in DTYPE_CHOICES:
            raise PreceptorError("Invalid setting", f"{where}.dtype = {params['dtype']!r} is not fastest, bf16, fp32, fp16 or auto", "")


def _is_type(value: Any, typ: type) -> bool:
    if typ is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if typ is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, typ)


def parse_param(text: str) -> tuple[str, Any]:
    """``key=value`` from the command line: the value read as JSON (numbers, true/false, objects) or kept as text."""
    if "=" not in text:
        raise PreceptorError("Invalid --param", f"{text!r} is not key=value", "Write e.g. --param temperature=0.2.")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise PreceptorError("Invalid --param", f"{text!r} has no key", "Write e.g. --param temperature=0.2.")
    raw = raw.strip()
    try:
        value = json.loads(raw)
    except ValueError:
        lowered = raw.lower()
        value = {"true": True, "false": False}.get(lowered, raw)
    return key, value


# -- reading definitions -------------------------------------------------------------

def declared(project: Project) -> dict[str, SystemSpec]:
    """The systems declared in preceptor.toml (``[systems.NAME]`` tables and a ``preset`` line)."""
    table = project.table("systems")
    where = f"{project.config_path}: [systems"
    specs: dict[str, SystemSpec] = {}
    preset_name = table.get("preset")
    if preset_name is not None:
        if preset_name not in PRESETS:
            raise PreceptorError("Unknown preset", f"{project.config_path}: [systems] preset = {preset_name!r}",
                                 f"Known presets: {', '.join(PRESETS)}.")
        for name, t in PRESETS[preset_name]["systems"].items():
            specs[name] = validate(name, t, f"preset {preset_name}: {name}")
    for name, t in table.items():
        if name == "preset":
            continue
        specs[name] = validate(name, t, f"{where}.{name}]")
    return specs


def sync(project: Project) -> list[str]:
    """Bring the database's systems in line with preceptor.toml; return the names created or changed."""
    store = project.store
    changed = []
    for name, spec in declared(project).items():
        current = q_systems.by_name(store, name)
        if current is not None and current.imported:
            raise PreceptorError("System name taken", f"{project.config_path}: [systems.{name}] clashes with imported outputs named {name!r}",
                                 "Rename the system in preceptor.toml.")
        wanted = (spec.role, spec.backend, spec.model, spec.adapter, spec.db_params())
        if current is None or (current.role, current.backend, current.model, current.adapter, current.params) != wanted:
            meta = dict(current.meta) if current else {}
            meta.update({"source": "preceptor.toml"})
            if spec.description:
                meta["description"] = spec.description
            q_systems.upsert(store, name, role=spec.role, backend=spec.backend, model=spec.model, adapter=spec.adapter,
                             params=spec.db_params(), run_id=current.run_id if current else None, meta=meta)
            changed.append(name)
    return changed


def ensure_default_systems(project: Project) -> list[str]:
    """Sync preceptor.toml, then add the offline defaults where a role has no generating system.

    Returns the names created or changed. Defaults: ``smollm2`` (role base, the packaged
    student through transformers) and ``grounded-teacher`` (role teacher, the packaged
    student prompted with each item's reference facts).
    """
    from preceptor.engine.models import PACKAGED_STUDENT

    changed = sync(project)
    store = project.store
    have = {(s.role) for s in q_systems.all_systems(store) if not s.imported and s.backend in GENERATING_BACKENDS}
    if "base" not in have and q_systems.by_name(store, DEFAULT_BASE) is None:
        q_systems.upsert(store, DEFAULT_BASE, role="base", backend="hf", model=PACKAGED_STUDENT, params={},
                         meta={"source": "default", "description": "the packaged student (SmolLM2-135M-Instruct), offline"})
        changed.append(DEFAULT_BASE)
    if "teacher" not in have and q_systems.by_name(store, DEFAULT_TEACHER) is None:
        q_systems.upsert(store, DEFAULT_TEACHER, role="teacher", backend="grounded", model=PACKAGED_STUDENT, params={},
                         meta={"source": "default", "description": "grounded teacher: the packaged model prompted with "
                               "each item's reference facts (offline; not an independent teacher)"})
        changed.append(DEFAULT_TEACHER)
    return changed


def resolve(project: Project, name_or_role: str) -> Any:
    """A system by name or role (after the defaults exist)."""
    ensure_default_systems(project)
    return q_systems.resolve(project.store, name_or_role)


# -- writing definitions -------------------------------------------------------------

def _replace_tables(project: Project, updates: dict[str, Any], drop: dict[str, list[str]] | None = None) -> None:
    """Write ``updates`` into preceptor.toml replacing (not merging) the named sub-tables."""
    nested: dict[str, Any] = {}
    for dotted, value in updates.items():
        node = nested
        parts = dotted.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    cfg.update_file(project.config_path, nested, replace=tuple(updates), drop=drop)
    project.reload()


def add(project: Project, name: str, *, role: str, backend: str, model: str | None = None, adapter: str | None = None,
        api_base: str | None = None, params: dict[str, Any] | None = None, description: str = "",
        save: bool = True) -> Any:
    """Declare (or redefine) a system: validated, written to preceptor.toml (``save``) and the database."""
    existing = q_systems.by_name(project.store, name)
    if existing is not None and existing.imported:
        raise PreceptorError("System name taken", f"{name!r} holds imported outputs", "Choose another name.")
    if existing is not None and existing.run_id is not None:
        raise PreceptorError("System name taken", f"{name!r} was registered by training run {existing.run_id}",
                             "Choose another name; trained systems are kept as they were made.")
    table: dict[str, Any] = {"role": role, "backend": backend}
    if model:
        table["model"] = model
    if adapter:
        table["adapter"] = adapter
    if api_base:
        table["api_base"] = api_base
    if params:
        table["params"] = dict(params)
    if description:
        table["description"] = description
    spec = validate(name, table, f"system {name}")
    if save:
        _replace_tables(project, {f"systems.{name}": spec.as_table()})
    meta = {"source": "preceptor.toml" if save else "command line"}
    if description:
        meta["description"] = description
    return q_systems.upsert(project.store, name, role=spec.role, backend=spec.backend, model=spec.model,
                            adapter=spec.adapter, params=spec.db_params(), meta=meta)


def preset(project: Project, name: str) -> dict[str, Any]:
    """Apply a named preset: its systems (written to preceptor.toml and the database) and its judge."""
    if name not in PRESETS:
        raise PreceptorError("Unknown preset", f"no preset named {name!r}", f"Known presets: {', '.join(PRESETS)}.")
    p = PRESETS[name]
    created = []
    for sname, table in p["systems"].items():
        spec = validate(sname, table, f"preset {name}: {sname}")
        _replace_tables(project, {f"systems.{sname}": spec.as_table()})
        q_systems.upsert(project.store, sname, role=spec.role, backend=spec.backend, model=spec.model, adapter=spec.adapter,
                         params=spec.db_params(), meta={"source": f"preset {name}"})
        created.append(sname)
    judge = p.get("judge")
    if judge:
        current = dict(project.table("judge"))
        current.pop("system", None)
        current.pop("api_base", None)
        current.update(judge)
        _replace_tables(project, {"judge": current})
    return {"preset": name, "systems": created, "judge": judge, "description": p["description"]}


def describe_system(project: Project, system: Any) -> dict[str, Any]:
    """A system as a JSON-able dict (for `systems show` and the TUI)."""
    counts = q_systems.output_counts(project.store).get(system.name, {"ok": 0, "failed": 0})
    params = dict(system.params or {})
    out = {
        "name": system.name, "role": system.role, "backend": system.backend, "model": system.model,
        "adapter": system.adapter, "api_base": params.pop("api_base", None), "params": params,
        "imported": system.imported, "run_id": system.run_id, "meta": system.meta,
        "outputs": counts.get("ok", 0), "failed": counts.get("failed", 0),
    }
    latest = q_systems.latest_with_role(project.store, system.role) if system.role in q_systems.ROLES else None
    out["answers_for_role"] = bool(latest and latest.id == system.id)
    return out
