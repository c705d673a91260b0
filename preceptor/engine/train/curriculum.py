"""The embedding curriculum: stages trained in order, each a run started by the one before.

A curriculum is an ordered list of stages (``[embed] stages`` in ``preceptor.toml``), each a
set of (anchor, positive[, negative][, score]) pairs imported with ``preceptor import-pairs
FILE --stage NAME`` (:mod:`preceptor.engine.embed.data`). ``preceptor train embed`` (and the
app's "New embed" form) plan it with :func:`preceptor.engine.train.plan.plan` and start the
**first stage's run**; one stage is the job of run kind ``embed``
(:mod:`preceptor.engine.train.embed_stage`). When a stage succeeds, its own worker process
starts the next stage's run from the model it just saved (:func:`next_stage`,
:func:`start_next`), so the
curriculum goes on with nobody watching: closing the terminal or the app stops nothing.
A failed or cancelled stage ends the chain; ``preceptor train resume RUN`` continues that
stage and, once it succeeds, the stages after it.

:func:`follow` watches a curriculum from any of its stage runs to the end and gathers each
stage's :func:`stage_report` (what the CLI prints and the app shows).
"""

from __future__ import annotations

import dataclasses
import json
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from preceptor import config as cfgmod
from preceptor.db import embed as q_embed
from preceptor.db import runs as q_runs
from preceptor.engine.embed.settings import (
    COLLAPSE_METRICS,
    MODEL_DIR,
    RETRIEVAL_METRICS,
    EmbedSettings,
    load_settings,
    resolve_encoder,
)
from preceptor.engine.events import Done, EventStream, Log, Progress
from preceptor.errors import Cancelled, PreceptorError

if TYPE_CHECKING:
    from preceptor.project import Project


def plan_stages(project: Project, overrides: dict[str, Any], *, demo: bool = False) -> tuple[EmbedSettings, list[str], dict[str, int]]:
    """The effective settings, the stages to train and their training-pair counts (nothing is written).

    ``demo``: the packaged demo curriculum (imported when the run starts) unless stages are named.
    """
    settings = cfgmod.override(load_settings(project), "flags", **overrides)
    if demo and not overrides.get("stages"):
        from preceptor.engine.embed.data import DEMO_STAGES

        settings = dataclasses.replace(settings, stages=[s for s, _, _ in DEMO_STAGES])
    stages = list(settings.stages)
    if not stages:
        raise PreceptorError("No stages", f"{project.config_path}: [embed] stages is empty and no --stages given",
                             "Import pairs with `preceptor import-pairs FILE --stage NAME`, or run `preceptor train embed --demo`.")
    counts = q_embed.stage_counts(project.store)
    train_pairs = {s: int(counts.get(s, {}).get("train") or 0) for s in stages}
    if not demo:
        for s in stages:
            if not train_pairs[s]:
                known = ", ".join(f"{k} ({sum(v.values())} pairs)" for k, v in counts.items()) or "none yet"
                raise PreceptorError("Stage has no data", f"stage {s!r} has no training pairs",
                                     f"Stages with data: {known}. Import pairs with `preceptor import-pairs FILE --stage {s}`.")
    if settings.base == "auto":
        settings = dataclasses.replace(settings, base=auto_base(project, stages))
    resolve_encoder(settings.base)  # an unknown encoder is refused now, not in the worker
    return settings, stages, train_pairs


def auto_base(project: Any, stages: list[str], sample: int = 400) -> str:
    """``[embed] base = "auto"``: the English MiniLM for a Latin-script curriculum, the multilingual
    e5 encoder when most of a sample of its pairs' letters are in another script (Thai, Hangul...)."""
    from preceptor.engine import models
    from preceptor.engine.evaluation.language import script_of

    texts: list[str] = []
    for s in stages:
        texts.extend(f"{p.anchor} {p.positive}" for p in q_embed.pairs(project.store, s)[:sample])
    latin = sum(1 for t in texts if script_of(t) == "en")
    return models.PACKAGED_E5 if texts and latin * 2 < len(texts) else models.PACKAGED_ENCODER


def first_stage_config(settings: EmbedSettings, stages: list[str]) -> dict[str, Any]:
    """The config of the curriculum's first stage run (the base encoder resolved to its folder)."""
    base = str(resolve_encoder(settings.base))
    return stage_config(settings, stages, 1, init=base, base=base, base_name=settings.base, parent_encoder=None)


def stage_config(settings: EmbedSettings | dict[str, Any], stages: list[str], position: int, *, init: str, base: str,
                 base_name: str, parent_encoder: int | None) -> dict[str, Any]:
    values = settings if isinstance(settings, dict) else dataclasses.asdict(settings)
    return {"stage": stages[position - 1], "init": init, "base": base, "base_name": base_name,
            "settings": dict(values), "parent_encoder": parent_encoder, "position": position, "of": len(stages),
            "curriculum": list(stages), "threads": values.get("threads") or None}


def next_stage(config: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any] | None:
    """The follow-up run of a finished stage (``{"kind", "config"}``), or None after the last stage."""
    stages = list(config.get("curriculum") or [config["stage"]])
    position = int(config.get("position") or 1)
    if position >= len(stages):
        return None
    nxt = stage_config(config.get("settings") or {}, stages, position + 1, init=str(summary["model_path"]),
                       base=str(config.get("base") or config["init"]), base_name=str(config.get("base_name") or ""),
                       parent_encoder=summary.get("encoder_id"))
    return {"kind": "embed", "config": nxt}


def start_next(ctx: Any, follow_up: dict[str, Any]) -> int:
    """Start the next stage's run from a finishing stage (same launcher); return its id."""
    from preceptor.engine.train import runner

    launch = ctx.run.config.get("launch") or {}
    nxt = runner.start(ctx.project, follow_up["kind"], follow_up["config"], parent_id=ctx.run.id,
                       launcher=launch.get("launcher", "python"), accelerate=launch.get("accelerate"))
    ctx.log(f"started run {nxt.id} for stage {follow_up['config']['stage']} next")
    return int(nxt.id)


def follow(project: Project, run_id: int, cancel: threading.Event | None = None) -> EventStream:
    """Watch a curriculum from stage run ``run_id`` to its last stage.

    Yields the stage runs' Progress / Metric / Log events; ends with Done({"stages": [stage
    report, ...], "runs": [ids], "alarms": n}). A stage that fails or is cancelled ends it
    with a titled error (the stages before it stay registered). Setting ``cancel`` asks the
    running stage to stop with a checkpoint and raises ``Cancelled``.
    """
    from preceptor.engine.train import runner

    reports: list[dict[str, Any]] = []
    current: int | None = run_id
    while current is not None:
        run = runner.get_run(project, current)
        stage = run.config.get("stage")
        yield Log("info", f"stage {run.config.get('position', '?')}/{run.config.get('of', '?')}: {stage} (run {run.id})")
        try:
            for ev in runner.watch(project, run.id, cancel, poll=0.3):
                if not isinstance(ev, Done):  # the stage's own summary is read back below
                    yield ev
        except Cancelled:
            try:
                runner.cancel(project, run.id)
            except PreceptorError:
                pass
            final = runner.wait(project, run.id, timeout=600)
            yield Log("warning", f"stage {stage} stopped: run {run.id} {final.status}; `preceptor train resume {run.id}` continues it")
            raise
        report = stage_report(project, run.id)
        reports.append(report)
        if report["status"] != "succeeded":
            raise PreceptorError(f"Stage {stage} {report['status']}", f"run {run.id}: {report.get('error') or 'no error recorded'}",
                                 f"See {report.get('dir')}/train.log; fix the cause and `preceptor train resume {run.id}` "
                                 "(the stages after it follow).")
        yield Progress(len(reports), int(run.config.get("of") or len(reports)), f"stage {stage} done")
        current = report.get("next_run")
        if current is None and int(run.config.get("position") or 1) < int(run.config.get("of") or 1):
            raise PreceptorError("Curriculum stopped", f"stage {stage} (run {run.id}) succeeded but the next stage did not start",
                                 f"See the warning of run {run.id} (`preceptor train show {run.id}`).")
    yield Done({"stages": reports, "runs": [r["run_id"] for r in reports],
                "alarms": sum(1 for r in reports if r.get("warning"))})


def stage_report(project: Project, run_id: int) -> dict[str, Any]:
    """A finished stage run as shown by the CLI and the TUI: metrics, diagnostics, warning."""
    run = q_runs.get(project.store, run_id)
    if run is None:
        raise PreceptorError("Unknown run", f"no run {run_id}", "See `preceptor train list`.")
    last = q_runs.last_values(project.store, run_id)
    summary: dict[str, Any] = {}
    if run.dir and (Path(run.dir) / "summary.json").exists():
        try:
            summary = json.loads((Path(run.dir) / "summary.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            summary = {}

    def group(prefix: str, names: tuple[str, ...]) -> dict[str, float | None]:
        return {n: (last[f"{prefix}/{n}"][1] if f"{prefix}/{n}" in last else None) for n in names}

    return {
        "run_id": run.id, "stage": run.config.get("stage"), "status": run.status, "error": run.error,
        "warning": run.warning, "dir": run.dir, "system": summary.get("system"),
        "base_system": summary.get("base_system"), "encoder_id": summary.get("encoder_id"),
        "model_path": summary.get("model_path") or (str(Path(run.dir) / MODEL_DIR) if run.dir else None),
        "steps": summary.get("steps"), "steps_per_s": summary.get("steps_per_s"),
        "base": group("base", RETRIEVAL_METRICS), "start": group("start", RETRIEVAL_METRICS),
        "eval": group("eval", RETRIEVAL_METRICS), "collapse": group("collapse", COLLAPSE_METRICS),
        "base_collapse": group("base_collapse", COLLAPSE_METRICS),
        "held_out_queries": summary.get("held_out_queries"), "next_run": summary.get("next_run"),
    }
