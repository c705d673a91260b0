"""``preceptor train``: LoRA SFT, DPO, (embedder: ``train embed``); follow, cancel, resume runs.

Each training command resolves and checks its settings and data here (so a mistake is
reported before anything starts), then starts the run in its own process and follows it.
Ctrl-C while following asks the run to stop with a checkpoint (``train resume`` continues
it); ``--detach`` returns at once and leaves the run going.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from preceptor.cli.common import (
    LazySubgroup,
    ProgressPrinter,
    drive,
    echo_json,
    open_project,
    project_option,
    say,
    table,
)
from preceptor.engine.events import Done, Metric
from preceptor.engine.train.settings import DPOSettings, SFTSettings  # light: dataclasses only
from preceptor.errors import Cancelled, PreceptorError

if TYPE_CHECKING:
    from preceptor.project import Project

SHOWN_METRICS = {"loss", "eval_loss", "perplexity", "rewards/margins", "rewards/accuracies", "eval_rewards/margins",
                 "eval_rewards/accuracies"}


@click.group("train", cls=LazySubgroup, lazy={"embed": "preceptor.cli.embed:train_embed_cmd"})
def train_group() -> None:
    """Train students (LoRA SFT, DPO) and embedders; list, follow, cancel and resume runs."""


# -- settings as flags -----------------------------------------------------------------

def _option_for(f: dataclasses.Field, typ: Any) -> Any:
    flag = "--" + f.name.replace("_", "-")
    help_text = f.metadata.get("help", "")
    origin, args = typing.get_origin(typ), typing.get_args(typ)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        typ = inner[0] if len(inner) == 1 else str
        origin, args = typing.get_origin(typ), typing.get_args(typ)
    if typ is bool:
        return click.option(f"{flag}/--no-{flag[2:]}", f.name, default=None, help=help_text)
    if origin is typing.Literal:
        return click.option(flag, f.name, type=click.Choice([str(a) for a in args]), default=None, help=help_text)
    if origin in (list, tuple):
        return click.option(flag, f.name, type=str, default=None, help=help_text + " (comma-separated)")
    click_type = {int: int, float: float}.get(typ, str)
    return click.option(flag, f.name, type=click_type, default=None, help=help_text)


def settings_options(cls: type, skip: tuple[str, ...] = ()) -> Any:
    """One ``--flag`` per settings field (None = not given, so the preset / file value stays)."""
    hints = typing.get_type_hints(cls)

    def deco(fn: Any) -> Any:
        for f in reversed(dataclasses.fields(cls)):
            if f.name not in skip:
                fn = _option_for(f, hints[f.name])(fn)
        return fn

    return deco


def launcher_options(fn: Any) -> Any:
    for opt in reversed([
        click.option("--launcher", type=click.Choice(["python", "accelerate"]), default=None,
                     help="python: one process (default); accelerate: `accelerate launch` (multi-GPU, DeepSpeed/FSDP)."),
        click.option("--num-processes", type=int, default=None, help="With --launcher accelerate: processes (GPUs)."),
        click.option("--accelerate-config", type=click.Path(dir_okay=False), default=None,
                     help="With --launcher accelerate: an accelerate config file (e.g. FSDP)."),
        click.option("--deepspeed-config", type=click.Path(dir_okay=False), default=None,
                     help="With --launcher accelerate: a DeepSpeed JSON config."),
        click.option("--detach", is_flag=True, help="Start the run and return; follow it later with `train show RUN --follow`."),
        click.option("--json", "as_json", is_flag=True, help="Print the final summary as JSON."),
    ]):
        fn = opt(fn)
    return fn


def follow(project: Project, run_id: int, label: str, as_json: bool = False) -> dict[str, Any]:
    """Follow a run; the first Ctrl-C cancels it gracefully (checkpoint), then keeps following."""
    from preceptor.cli.common import cancel_on_sigint
    from preceptor.engine.train import runner

    printer = ProgressPrinter(label, quiet=as_json)
    summary: dict[str, Any] = {}

    def consume(events: Any) -> None:
        nonlocal summary
        for ev in events:
            if isinstance(ev, Done):
                summary = ev.summary
            elif isinstance(ev, Metric) and ev.name not in SHOWN_METRICS:
                continue
            printer(ev)

    try:
        consume(runner.watch(project, run_id, cancel_on_sigint()))
    except Cancelled:
        printer._break()
        click.echo(f"Cancelling run {run_id}: it saves a checkpoint and stops (`preceptor train resume {run_id}` continues it)...", err=True)
        try:
            runner.cancel(project, run_id)
        except PreceptorError:
            pass
        consume(runner.watch(project, run_id))
    finally:
        printer._break()
    return summary


def report(summary: dict[str, Any], as_json: bool) -> None:
    if as_json:
        echo_json(summary)
    else:
        status = summary.get("status")
        click.echo(f"Run {summary.get('run_id')} {status}.")
        metrics = summary.get("metrics") or {}
        shown = {k: metrics[k] for k in ("loss", "eval_loss", "perplexity", "rewards/margins", "rewards/accuracies") if k in metrics}
        if shown:
            click.echo("  " + "  ".join(f"{k} {v:.4g}" for k, v in shown.items()))
        if summary.get("warning"):
            say(f"  warning: {summary['warning']}", "yellow")
        if summary.get("system"):
            click.echo(f"Registered system {summary['system']!r}. Try: preceptor generate --system {summary['system']}")
        if status in ("cancelled", "interrupted"):
            click.echo(f"Continue with: preceptor train resume {summary.get('run_id')}")
    if summary.get("status") == "failed":
        raise PreceptorError("Training failed", f"run {summary.get('run_id')}: {summary.get('error')}",
                             f"The full log is in {summary.get('dir')}/train.log.")
    if summary.get("status") in ("cancelled", "interrupted"):
        raise click.exceptions.Exit(130 if summary.get("status") == "cancelled" else 1)


def launch_options(launcher: str | None, num_processes: int | None, accelerate_config: str | None,
                   deepspeed_config: str | None) -> dict[str, Any]:
    return {"launcher": launcher, "num_processes": num_processes, "config_file": accelerate_config,
            "deepspeed_config": deepspeed_config}


def plan_and_start(project: Project, kind: str, overrides: dict[str, Any], launch: dict[str, Any], detach: bool,
                   as_json: bool) -> dict[str, Any] | None:
    """The one launch path (``engine.train.plan``): plan, print the pre-flight, start, follow."""
    from preceptor.engine.train import plan as launch_plan

    p = launch_plan.plan(project, kind, overrides, launch=launch)
    if not as_json:
        for note in p.notes:
            click.echo(note, err=True)
    run = launch_plan.start(project, p)
    if not as_json:
        where = f"process {run.pid}" if p.launcher != "inline" else "this process"
        click.echo(f"Started {kind} run {run.id} ({where}); log: {Path(run.dir) / 'train.log'}", err=True)
    if detach:
        if as_json:
            echo_json({"run_id": run.id, "status": run.status, "pid": run.pid, "dir": run.dir})
        else:
            click.echo(f"Follow it with `preceptor train show {run.id} --follow`; stop it with `preceptor train cancel {run.id}`.")
        return None
    if kind == "embed":
        return {"run_id": run.id}
    report(follow(project, run.id, kind, as_json), as_json)
    return None


# -- commands --------------------------------------------------------------------------


@train_group.command("sft")
@settings_options(SFTSettings)
@launcher_options
@project_option
def sft_cmd(project_dir: str | None, launcher: str | None, num_processes: int | None, accelerate_config: str | None,
            deepspeed_config: str | None, detach: bool, as_json: bool, preset: str | None, **flags: Any) -> None:
    """LoRA fine-tuning of the student on another system's train-split answers (default: the teacher's)."""
    with open_project(project_dir) as project:
        plan_and_start(project, "sft", {"preset": preset, **flags},
                       launch_options(launcher, num_processes, accelerate_config, deepspeed_config), detach, as_json)


@train_group.command("dpo")
@click.option("--pairs", type=click.Path(dir_okay=False), default=None, help="A TRL-format preference file (JSONL or JSON).")
@click.option("--from-db", is_flag=True, help="Use the project's judged train-split pairs (as `preceptor export dpo` would).")
@settings_options(DPOSettings)
@launcher_options
@project_option
def dpo_cmd(project_dir: str | None, pairs: str | None, from_db: bool, launcher: str | None, num_processes: int | None,
            accelerate_config: str | None, deepspeed_config: str | None, detach: bool, as_json: bool,
            preset: str | None, **flags: Any) -> None:
    """DPO on preference pairs, starting from an SFT adapter (reference = the adapter switched off)."""
    if bool(pairs) == bool(from_db):
        raise PreceptorError("Choose the pairs", "give exactly one of --pairs FILE or --from-db",
                             "--pairs reads a TRL-format file; --from-db uses the project's judgments.")
    with open_project(project_dir) as project:
        plan_and_start(project, "dpo", {"preset": preset, "pairs": pairs, "from_db": from_db, **flags},
                       launch_options(launcher, num_processes, accelerate_config, deepspeed_config), detach, as_json)


@train_group.command("resume")
@click.argument("run_id", type=int)
@click.option("--detach", is_flag=True, help="Return at once; the run goes on.")
@click.option("--json", "as_json", is_flag=True)
@project_option
def resume_cmd(project_dir: str | None, run_id: int, detach: bool, as_json: bool) -> None:
    """Continue an interrupted or cancelled run from its last checkpoint (same run, same config)."""
    from preceptor.engine.train import context, runner

    with open_project(project_dir) as project:
        run = runner.resume(project, run_id)
        ckpt = context.latest_checkpoint(Path(run.dir))
        if not as_json:
            click.echo(f"Resuming run {run.id} ({run.kind}) from {ckpt.name if ckpt else 'the start (no checkpoint yet)'}.")
        if detach:
            return
        report(follow(project, run.id, run.kind, as_json), as_json)


@train_group.command("cancel")
@click.argument("run_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@project_option
def cancel_cmd(project_dir: str | None, run_id: int, as_json: bool) -> None:
    """Stop a run gracefully: it saves a checkpoint and ends 'cancelled'."""
    from preceptor.engine.train import runner

    with open_project(project_dir) as project:
        runner.cancel(project, run_id)
    if as_json:
        echo_json({"run_id": run_id, "cancel_requested": True})
        return
    click.echo(f"Asked run {run_id} to stop; it saves a checkpoint first. Continue later with `preceptor train resume {run_id}`.")


def _duration(run: Any) -> str:
    from datetime import datetime

    if not run.started_at:
        return ""
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ"
    try:
        end = datetime.strptime(run.ended_at, fmt) if run.ended_at else datetime.utcnow()
        secs = int((end - datetime.strptime(run.started_at, fmt)).total_seconds())
    except ValueError:
        return ""
    return f"{secs // 3600}h{secs % 3600 // 60:02d}m" if secs >= 3600 else f"{secs // 60}m{secs % 60:02d}s"


@click.command("runs")
@click.option("--kind", help="Only runs of this kind (sft, dpo, embed).")
@click.option("--limit", type=int, default=30, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@project_option
def list_cmd(project_dir: str | None, kind: str | None, limit: int, as_json: bool) -> None:
    """Training runs, newest first, with status, duration, last losses and the system they registered."""
    from preceptor.db import runs as q_runs
    from preceptor.db import systems as q_systems

    with open_project(project_dir) as project:
        q_runs.mark_dead_runs(project.store)
        runs = q_runs.list_runs(project.store, kind, limit)
        rows = []
        for r in runs:
            last = {k: v for k, (_, v) in q_runs.last_values(project.store, r.id).items()}
            system = q_systems.get(project.store, r.system_id) if r.system_id else None
            shown, age = q_runs.liveness(r)
            rows.append({"id": r.id, "kind": r.kind, "status": shown if shown != "stalled" else f"stalled ({age:.0f} s)",
                         "heartbeat_age_s": age, "created": r.created_at, "duration": _duration(r),
                         "loss": last.get("loss"), "eval_loss": last.get("eval_loss"), "perplexity": last.get("perplexity"),
                         "system": system.name if system else None, "error": (r.error or "").splitlines()[0] if r.error else None})
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("No training runs yet. Start one with `preceptor train sft`.")
        return
    fmt = lambda v: "" if v is None else f"{v:.4g}"  # noqa: E731
    click.echo(table([[r["id"], r["kind"], r["status"], r["created"][:16].replace("T", " "), r["duration"], fmt(r["loss"]),
                       fmt(r["eval_loss"]), fmt(r["perplexity"]), r["system"] or ""] for r in rows],
                     ["run", "kind", "status", "created", "time", "loss", "eval loss", "ppl", "system"]))
    for r in rows:
        if r["error"] and r["status"] in ("failed", "interrupted"):
            click.echo(f"  run {r['id']}: {r['error'][:150]}")


train_group.add_command(list_cmd, "list")
train_group.add_command(list_cmd, "runs")


@train_group.command("show")
@click.argument("run_id", type=int)
@click.option("--follow", "follow_", is_flag=True, help="Follow a running run until it ends.")
@click.option("--json", "as_json", is_flag=True)
@project_option
def show_cmd(project_dir: str | None, run_id: int, follow_: bool, as_json: bool) -> None:
    """One run: status, error, settings, data, library versions, metrics."""
    from preceptor.db import runs as q_runs
    from preceptor.engine.train import runner

    with open_project(project_dir) as project:
        run = runner.get_run(project, run_id)
        if follow_ and run.status not in q_runs.TERMINAL:
            report(follow(project, run.id, run.kind, as_json), as_json)
            return
        summary = runner.summary_of(project, run)
        summary["config"] = run.config
        summary.update(created_at=run.created_at, started_at=run.started_at, ended_at=run.ended_at, pid=run.pid,
                       parent_id=run.parent_id)
    if as_json:
        echo_json(summary)
        return
    click.echo(f"Run {run.id}  {run.kind}  {run.status}  (created {run.created_at}, {_duration(run) or 'not started'})")
    click.echo(f"Folder: {run.dir}")
    if run.error:
        say(f"Error: {run.error}", "red")
    if run.warning:
        say(f"Warning: {run.warning}", "yellow")
    if summary.get("system"):
        click.echo(f"System: {summary['system']}")
    s = run.config.get("settings") or {}
    if s:
        click.echo("Settings: " + ", ".join(f"{k}={v}" for k, v in s.items()))
    if run.config.get("data"):
        click.echo(f"Data: {run.config['data']}")
    if run.config.get("versions"):
        click.echo("Versions: " + ", ".join(f"{k} {v}" for k, v in run.config["versions"].items() if v))
    if summary.get("metrics"):
        click.echo("Last values: " + ", ".join(f"{k} {v:.4g}" for k, v in sorted(summary["metrics"].items()) if v is not None))


@click.command("export")
@click.argument("system")
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--merge", is_flag=True, help="Fold the adapter into the base weights and write a full model.")
@click.option("--json", "as_json", is_flag=True)
@project_option
def models_export_cmd(project_dir: str | None, system: str, out: str, merge: bool, as_json: bool) -> None:
    """Write a trained system's adapter (or the merged model) to OUT with a model card."""
    from preceptor.engine.train.ship import export_system

    with open_project(project_dir) as project:
        summary = drive(export_system(project, system, Path(out), merge=merge), "export", quiet=as_json)
    if as_json:
        echo_json(summary)
    else:
        click.echo(f"Wrote {summary['what']} of {summary['system']!r} to {summary['path']} (model card: README.md).")
