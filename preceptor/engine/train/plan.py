"""One launch path for every training run: :func:`plan` then :func:`start`.

Both faces call exactly these two functions (the CLI from ``preceptor train sft|dpo|embed``,
the app from its Generate / Train forms), so a run started from either is the same run:

* :func:`plan` resolves the settings (preset → ``[train.sft|dpo]`` / ``[embed]`` table →
  overrides), runs the data pre-flight (SFT: the prompt/answer rows exist; DPO: the
  adapter to refine and the preference pairs; embed: every stage has training pairs),
  resolves the launcher from ``[train.accelerate]`` and the caller's launch options, and
  builds the worker's command line. Nothing is written: a mistake is reported before
  anything starts.
* :func:`start` creates the run and starts its worker process, detached (its own session),
  so closing the terminal or the app never stops it. An embedding curriculum is its first
  stage's run; each stage, when it succeeds, starts the next one from its own process.

``overrides`` are settings fields (the keys of the table, underscores; ``None`` = not
given), plus ``preset`` (sft / dpo), ``pairs`` (a TRL-format file) or ``from_db`` (dpo),
and ``demo`` (embed: import the packaged demo curriculum first). ``launch`` holds
``launcher`` ("python" | "accelerate" | "inline"), ``num_processes``, ``config_file`` and
``deepspeed_config``; unset ones come from ``[train.accelerate]``.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from preceptor.errors import PreceptorError

if TYPE_CHECKING:
    from preceptor.project import Project

KINDS = ("sft", "dpo", "embed")
LAUNCH_KEYS = ("launcher", "num_processes", "config_file", "deepspeed_config")
RUN_PLACEHOLDER = 0  # the run id in a plan's command (the real id exists once the run is created)


@dataclass(frozen=True)
class LaunchPlan:
    """Everything a training run will be, resolved and checked, before it exists."""

    kind: str  # the run kind: "sft" | "dpo" | "embed" (an embedding curriculum starts with its first stage)
    settings: Any  # SFTSettings | DPOSettings | EmbedSettings, resolved
    config: dict[str, Any]  # the run's config as it will be recorded
    launcher: str  # "python" | "accelerate" | "inline" (a thread of this process: tests, debugging)
    accelerate: dict[str, Any]  # options of `accelerate launch`
    command: list[str]  # the worker's command line (run id 0 stands for the id the run will get)
    data: dict[str, Any] = field(default_factory=dict)  # the pre-flight's counts and sources
    notes: tuple[str, ...] = ()  # what the faces show before starting
    demo: bool = False  # embed: import the packaged demo curriculum when starting

    @property
    def command_line(self) -> str:
        return " ".join(shlex.quote(p) for p in self.command)


# -- launcher -------------------------------------------------------------------------------

def resolve_launch(project: Project, launch: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    """(launcher, accelerate options) from the caller's launch options over ``[train.accelerate]``.

    Relative file paths are taken from the current folder when they exist there, else from
    the project folder.
    """
    launch = {k: v for k, v in (launch or {}).items() if v is not None}
    unknown = sorted(set(launch) - set(LAUNCH_KEYS))
    if unknown:
        raise PreceptorError("Invalid launch option", f"unknown launch option {unknown[0]!r}", f"Known: {', '.join(LAUNCH_KEYS)}.")
    table = dict(project.table("train.accelerate"))
    launcher = launch.pop("launcher", None) or table.pop("launcher", None) or "python"
    table.pop("launcher", None)
    opts = {**table, **launch}
    for key in ("config_file", "deepspeed_config"):
        value = opts.get(key)
        if value and not Path(value).expanduser().is_absolute():
            here = Path.cwd() / value
            opts[key] = str(here.resolve()) if here.exists() else str(project.root / value)
    return str(launcher), opts


# -- per kind ---------------------------------------------------------------------------------

def _split(overrides: dict[str, Any] | None, extra: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, Any]]:
    values = dict(overrides or {})
    special = {k: values.pop(k) for k in extra if k in values}
    return {k: v for k, v in values.items() if v is not None}, special


def _sync_systems(project: Project) -> None:
    """The systems of preceptor.toml (and the packaged student where no base is defined) in
    the store, so the ``base`` role names the configured student, whatever was imported first."""
    from preceptor.engine.generation.systems import ensure_default_systems

    ensure_default_systems(project)


def _plan_sft(project: Project, overrides: dict[str, Any] | None) -> tuple[Any, dict[str, Any], dict[str, Any], list[str], bool]:
    from preceptor.engine.train import settings as tsettings
    from preceptor.engine.train.settings import SFTSettings
    from preceptor.engine.train.sft import prepare_data

    flags, special = _split(overrides, ("preset",))
    _sync_systems(project)
    s = tsettings.resolve(project, SFTSettings, special.get("preset"), **flags)
    data = prepare_data(project, s)
    summary = {"train": len(data.train), "val": len(data.val), "sources": dict(data.sources)}
    note = (f"SFT data: {len(data.train)} train / {len(data.val)} val examples from "
            + ", ".join(f"{k} ({v})" for k, v in data.sources.items()) + f"; preset {s.preset}.")
    return s, {"settings": tsettings.to_dict(s)}, summary, [note], False


def _plan_dpo(project: Project, overrides: dict[str, Any] | None) -> tuple[Any, dict[str, Any], dict[str, Any], list[str], bool]:
    from preceptor.engine.train import dpo
    from preceptor.engine.train import settings as tsettings
    from preceptor.engine.train.settings import DPOSettings

    flags, special = _split(overrides, ("preset", "pairs", "from_db"))
    pairs, from_db = special.get("pairs"), bool(special.get("from_db"))
    if pairs and from_db:
        raise PreceptorError("Choose the pairs", "give exactly one of --pairs FILE or --from-db",
                             "--pairs reads a TRL-format file; --from-db uses the project's judgments.")
    _sync_systems(project)
    s = tsettings.resolve(project, DPOSettings, special.get("preset"), **flags)
    start_from = dpo.start_system(project, s)
    config: dict[str, Any] = {"settings": tsettings.to_dict(s)}
    if pairs:
        rows, val = dpo.read_pairs(pairs, (start_from.params or {}).get("system_prompt"))
        config["pairs"] = str(Path(pairs).expanduser().resolve())
        source = config["pairs"]
    else:  # the project's judged pairs (the app's form and `--from-db`)
        rows, val, _ = dpo.db_pairs(project, s)
        config["from_db"] = True
        source = f"the project's judgments (source {s.source})"
    note = f"DPO data: {len(rows)} train / {len(val)} val pairs; starting from {start_from.name}; preset {s.preset}."
    return s, config, {"train": len(rows), "val": len(val), "source": source, "start_system": start_from.name}, [note], False


def _plan_embed(project: Project, overrides: dict[str, Any] | None) -> tuple[Any, dict[str, Any], dict[str, Any], list[str], bool]:
    from preceptor.engine.train import curriculum

    flags, special = _split(overrides, ("demo",))
    demo = bool(special.get("demo"))
    s, stages, counts = curriculum.plan_stages(project, flags, demo=demo)
    config = curriculum.first_stage_config(s, stages)
    note = (f"Embedding curriculum: {len(stages)} stage(s) {', '.join(stages)} from {s.base}"
            + ("; the demo curriculum is imported first." if demo else "; each stage starts from the previous one's model."))
    return s, config, {"stages": stages, "pairs": counts}, [note], demo


PLANNERS = {"sft": _plan_sft, "dpo": _plan_dpo, "embed": _plan_embed}


def plan(project: Project, kind: str, overrides: dict[str, Any] | None = None, *,
         launch: dict[str, Any] | None = None) -> LaunchPlan:
    """Resolve and check a ``kind`` run (settings, data, launcher, command); nothing is written."""
    from preceptor.engine.train import runner

    if kind not in PLANNERS:
        raise PreceptorError("Unknown run kind", f"no training job of kind {kind!r}", f"Known kinds: {', '.join(KINDS)}.")
    settings, config, data, notes, demo = PLANNERS[kind](project, overrides)
    launcher, accelerate = resolve_launch(project, launch)
    if launcher == "inline":
        command = ["(in this process)"]
    else:
        command = runner.build_command(project.root, RUN_PLACEHOLDER, launcher, accelerate)
    if launcher == "accelerate":
        notes = [*notes, f"Launcher: accelerate ({', '.join(f'{k}={v}' for k, v in accelerate.items()) or 'its defaults'})."]
    return LaunchPlan(kind, settings, config, launcher, accelerate, command, data, tuple(notes), demo)


def start(project: Project, launch_plan: LaunchPlan, *, wait: bool = False) -> Any:
    """Create the planned run and start its worker (detached); return the run (``db.runs.Run``)."""
    from preceptor.engine.train import runner

    config = launch_plan.config
    if launch_plan.demo:
        from preceptor.engine.embed.data import import_demo
        from preceptor.engine.events import run as consume

        consume(import_demo(project))
        project.reload()
    return runner.start(project, launch_plan.kind, dict(config), launcher=launch_plan.launcher,
                        accelerate=launch_plan.accelerate, wait=wait)

