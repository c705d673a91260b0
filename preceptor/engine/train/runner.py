"""Training runs as separate processes: start, watch, cancel, resume.

Every training job (SFT, DPO, embedder stages) is a row in ``runs`` executed by
``python -m preceptor.engine.train.worker`` in its own session, so an exception, an
out-of-memory kill or closing the terminal never takes the caller down. The caller
follows a run with :func:`watch`, an event stream built from what the worker writes:
``run_metrics`` rows (Metric events) and the run folder's ``events.jsonl`` (Log and
Progress events).

Resume semantics: :func:`resume` re-queues **the same run** (same id, same config) and
starts a worker that continues from the newest checkpoint in ``<run dir>/checkpoints``.
Metrics logged after that checkpoint's step are dropped first (the resumed trainer logs
those steps again), so the run keeps one clean metric curve. ``config.resumes`` counts
the restarts.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from preceptor.db import runs as q_runs
from preceptor.db.runs import Run
from preceptor.engine.events import Done, EventStream, Log, Metric, Progress, check_cancel
from preceptor.engine.train.context import (
    EVENTS_NAME,
    SUMMARY_NAME,
    checkpoint_step,
    latest_checkpoint,
)
from preceptor.errors import PreceptorError

if TYPE_CHECKING:
    from preceptor.project import Project

LAUNCHERS = ("python", "accelerate", "inline")
WORKER_MODULE = "preceptor.engine.train.worker"
WORKER_OUT = "worker.out"
_CHILDREN: dict[int, subprocess.Popen] = {}  # launched here; polled so they never linger as zombies
_INLINE: dict[int, tuple[threading.Thread, threading.Event]] = {}  # runs executed in a thread of this process


def build_command(project_root: Path | str, run_id: int, launcher: str = "python",
                  accelerate: dict[str, Any] | None = None) -> list[str]:
    """The command line that executes run ``run_id``.

    ``launcher="accelerate"`` wraps the worker in ``accelerate launch`` with the options in
    ``accelerate``: ``num_processes``, ``num_machines``, ``mixed_precision``,
    ``config_file`` (an accelerate config, e.g. one describing FSDP), ``deepspeed_config``
    (a DeepSpeed JSON file), ``main_process_port`` and ``extra_args`` (passed as given).
    """
    worker = ["-m", WORKER_MODULE, "--project", str(project_root), "--run", str(run_id)]
    if launcher in ("python", "inline"):  # inline runs the same worker code in a thread instead
        return [sys.executable, *worker]
    if launcher != "accelerate":
        raise PreceptorError("Unknown launcher", f"launcher {launcher!r} is not one of {', '.join(LAUNCHERS)}",
                             "Use --launcher python (one process), accelerate, or inline (a thread of this process).")
    opts = dict(accelerate or {})
    known = {"num_processes", "num_machines", "mixed_precision", "config_file", "deepspeed_config",
             "main_process_port", "extra_args"}
    unknown = sorted(set(opts) - known)
    if unknown:
        raise PreceptorError("Invalid launcher setting", f"[train.accelerate]: unknown key {unknown[0]!r}",
                             f"Known keys: {', '.join(sorted(known))}.")
    cmd = [sys.executable, "-m", "accelerate.commands.launch"]
    for key in ("config_file", "deepspeed_config"):
        if opts.get(key) and not Path(opts[key]).expanduser().is_file():
            raise PreceptorError("Launcher file not found", f"[train.accelerate] {key} = {opts[key]!r}: no such file",
                                 "Give the path of an existing file (relative paths are from the project folder).")
    if opts.get("config_file"):
        cmd += ["--config_file", str(Path(opts["config_file"]).expanduser().resolve())]
    if opts.get("num_processes"):
        cmd += ["--num_processes", str(int(opts["num_processes"]))]
        if int(opts["num_processes"]) > 1 and not opts.get("deepspeed_config") and not opts.get("config_file"):
            cmd += ["--multi_gpu"]  # plain data parallel; a config file or DeepSpeed says how to distribute
    if opts.get("num_machines"):
        cmd += ["--num_machines", str(int(opts["num_machines"]))]
    if opts.get("mixed_precision"):
        if opts["mixed_precision"] not in ("no", "fp16", "bf16", "fp8"):
            raise PreceptorError("Invalid launcher setting", f"[train.accelerate] mixed_precision = {opts['mixed_precision']!r}",
                                 "Use one of no, fp16, bf16, fp8.")
        cmd += ["--mixed_precision", opts["mixed_precision"]]
    if opts.get("deepspeed_config"):
        cmd += ["--use_deepspeed", "--deepspeed_config_file", str(Path(opts["deepspeed_config"]).expanduser().resolve())]
    if opts.get("main_process_port"):
        cmd += ["--main_process_port", str(int(opts["main_process_port"]))]
    cmd += [str(a) for a in opts.get("extra_args") or []]
    return cmd + worker


def _worker_env(config: dict[str, Any]) -> dict[str, str]:
    env = dict(os.environ)
    threads = config.get("threads") or (config.get("settings") or {}).get("threads")
    if threads:
        env["OMP_NUM_THREADS"] = str(int(threads))
    env.setdefault("OMP_NUM_THREADS", "1")
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


def _spawn_inline(project: Project, run: Run, wait: bool) -> Run:
    """Execute the run's worker code in a thread of this process (tests, debugging)."""
    from preceptor.engine.train import worker

    cancel = threading.Event()
    thread = threading.Thread(target=worker.execute, args=(project.root, run.id), kwargs={"cancel": cancel},
                              name=f"preceptor-run-{run.id}", daemon=True)
    _INLINE[run.id] = (thread, cancel)
    thread.start()
    if wait:
        thread.join()
    got = q_runs.get(project.store, run.id)
    assert got is not None
    return got


def _spawn(project: Project, run: Run, wait: bool) -> Run:
    launch = run.config.get("launch") or {}
    if launch.get("launcher") == "inline":
        return _spawn_inline(project, run, wait)
    cmd = build_command(project.root, run.id, launch.get("launcher", "python"), launch.get("accelerate"))
    run_dir = Path(run.dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / WORKER_OUT, "ab") as out:
        proc = subprocess.Popen(cmd, cwd=project.root, env=_worker_env(run.config), stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
    _CHILDREN[run.id] = proc
    q_runs.set_launch_pid(project.store, run.id, proc.pid)
    if wait:
        proc.wait()
        q_runs.mark_dead_runs(project.store)
    got = q_runs.get(project.store, run.id)
    assert got is not None
    return got


def start(project: Project, kind: str, config: dict[str, Any], *, parent_id: int | None = None,
          launcher: str = "python", wait: bool = False, accelerate: dict[str, Any] | None = None) -> Run:
    """Create a queued run of ``kind`` and start its worker process (detached); return the run."""
    from preceptor.engine.train.registry import KINDS

    if kind not in KINDS:
        raise PreceptorError("Unknown run kind", f"no training job of kind {kind!r}", f"Known kinds: {', '.join(KINDS)}.")
    config = dict(config)
    config["launch"] = {"launcher": launcher, "accelerate": dict(accelerate or {})}
    build_command(project.root, 0, launcher, accelerate)  # validate before creating the run
    run = q_runs.create(project.store, kind, config, parent_id=parent_id)
    run_dir = project.runs_dir() / f"{run.id}-{kind}"
    run_dir.mkdir(parents=True, exist_ok=True)
    q_runs.update(project.store, run.id, dir=str(run_dir))
    run = q_runs.get(project.store, run.id)
    assert run is not None
    return _spawn(project, run, wait)


def get_run(project: Project, run_id: int) -> Run:
    run = q_runs.get(project.store, run_id)
    if run is None:
        known = ", ".join(str(r.id) for r in q_runs.list_runs(project.store, limit=10)) or "none yet"
        raise PreceptorError("Unknown run", f"no run {run_id} in {project.root}", f"Recent runs: {known}. See `preceptor train list`.")
    return run


def _reap() -> None:
    for rid, proc in list(_CHILDREN.items()):
        if proc.poll() is not None:
            del _CHILDREN[rid]
    for rid, (thread, _) in list(_INLINE.items()):
        if not thread.is_alive():
            del _INLINE[rid]


def summary_of(project: Project, run: Run) -> dict[str, Any]:
    """What a finished run left: status, error, registered system, last metric values, summary.json."""
    from preceptor.db import systems as q_systems

    out: dict[str, Any] = {}
    if run.dir and (Path(run.dir) / SUMMARY_NAME).exists():
        try:
            out.update(json.loads((Path(run.dir) / SUMMARY_NAME).read_text(encoding="utf-8")))
        except (OSError, ValueError):
            pass
    system = q_systems.get(project.store, run.system_id) if run.system_id else None
    out.update({
        "run_id": run.id, "kind": run.kind, "status": run.status, "error": run.error, "warning": run.warning,
        "dir": run.dir, "system": system.name if system else out.get("system") if run.status == "succeeded" else None,
        "metrics": {k: v for k, (_, v) in q_runs.last_values(project.store, run.id).items()},
    })
    return out


def watch(project: Project, run_id: int, cancel: threading.Event | None = None, poll: float = 0.5) -> EventStream:
    """Follow a run until it ends: Progress / Metric / Log events, then Done(summary).

    Setting ``cancel`` stops *watching* (raises ``Cancelled``); the run goes on. To stop
    the run itself call :func:`cancel`.
    """
    run = get_run(project, run_id)
    events_path = Path(run.dir) / EVENTS_NAME if run.dir else None
    offset = 0
    last_rowid = 0
    buf = b""
    while True:
        _reap()
        q_runs.mark_dead_runs(project.store)
        run = get_run(project, run_id)
        finished = run.status in q_runs.TERMINAL
        for rowid, step, name, value in q_runs.metrics_after(project.store, run_id, last_rowid):
            last_rowid = rowid
            if value is not None:
                yield Metric(step, name, value)
        if events_path is not None and events_path.exists():
            with open(events_path, "rb") as fh:
                fh.seek(offset)
                chunk = fh.read()
            offset += len(chunk)
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if rec.get("type") == "progress":
                    yield Progress(rec["done"], rec.get("total"), rec.get("note", ""))
                elif rec.get("type") == "log":
                    yield Log(rec.get("level", "info"), rec.get("text", ""))
        if finished:
            if run.status == "interrupted":
                yield Log("error", f"run {run.id} was interrupted: {run.error}. Continue it with `preceptor train resume {run.id}`.")
            yield Done(summary_of(project, run))
            return
        check_cancel(cancel)
        if cancel is not None:
            cancel.wait(poll)
        else:
            time.sleep(poll)


def cancel(project: Project, run_id: int) -> None:
    """Ask a run to stop: SIGTERM → the trainer saves a checkpoint and the run ends ``cancelled``."""
    run = get_run(project, run_id)
    if run.status in q_runs.TERMINAL:
        raise PreceptorError("Run not active", f"run {run.id} is already {run.status}",
                             f"Nothing to cancel. `preceptor train resume {run.id}` continues an interrupted or cancelled run.")
    if not run.pid:
        q_runs.set_status(project.store, run.id, "cancelled", error="cancelled before it started")
        return
    launcher = (run.config.get("launch") or {}).get("launcher", "python")
    if launcher == "inline":
        inline = _INLINE.get(run.id)
        if inline is not None:
            inline[1].set()
        return
    try:
        if launcher == "accelerate":
            os.killpg(os.getpgid(run.pid), signal.SIGTERM)  # every rank stops at the same step
        else:
            os.kill(run.pid, signal.SIGTERM)
    except ProcessLookupError:
        q_runs.mark_dead_runs(project.store)


def resume(project: Project, run_id: int, *, wait: bool = False) -> Run:
    """Continue a stopped run from its newest checkpoint (same run id, same config)."""
    run = get_run(project, run_id)
    if run.status not in ("interrupted", "cancelled", "failed"):
        hint = {"succeeded": "It finished; start a new run instead.",
                "running": f"It is still running; follow it with `preceptor train show {run.id} --follow`.",
                "queued": "It is waiting to start."}.get(run.status, "")
        raise PreceptorError("Cannot resume", f"run {run.id} is {run.status}", hint)
    ckpt = latest_checkpoint(Path(run.dir)) if run.dir else None
    q_runs.delete_metrics_after(project.store, run.id, checkpoint_step(ckpt))
    config = dict(run.config)
    config["resumes"] = int(config.get("resumes", 0)) + 1
    q_runs.requeue(project.store, run.id, config)
    return _spawn(project, get_run(project, run.id), wait)


def wait(project: Project, run_id: int, timeout: float | None = None, poll: float = 0.2) -> Run:
    """Block until the run ends (used by tests and scripts); returns the final run."""
    t0 = time.monotonic()
    while True:
        _reap()
        q_runs.mark_dead_runs(project.store)
        run = get_run(project, run_id)
        if run.status in q_runs.TERMINAL:
            return run
        if timeout is not None and time.monotonic() - t0 > timeout:
            raise TimeoutError(f"run {run_id} still {run.status} after {timeout:.0f}s")
        time.sleep(poll)
