"""The training process: ``python -m preceptor.engine.train.worker --project DIR --run ID``.

Started detached by :func:`preceptor.engine.train.runner.start` (its own session, so
closing the CLI or the TUI does not stop it). It marks the run ``running``, writes a
heartbeat every few seconds, runs the job of the run's kind (see ``registry.py``) and
records the outcome:

* the job returns → ``succeeded`` (its summary in ``summary.json`` of the run folder);
* SIGTERM (``preceptor train cancel``) → the cancel event is set, the trainer saves a
  checkpoint and stops → ``cancelled``;
* a :class:`PreceptorError` → ``failed`` with its title, message and hint;
* any other exception → ``failed`` with the exception text (traceback in ``train.log``).

A process killed outright (SIGKILL, OOM killer, power loss) records nothing; the next
``Project.open`` finds its pid gone and marks the run ``interrupted``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import traceback
from pathlib import Path
from typing import Any

from preceptor.engine.train.context import (
    LOG_NAME,
    SUMMARY_NAME,
    RunContext,
    is_main_process,
    latest_checkpoint,
    library_versions,
)
from preceptor.errors import Cancelled, PreceptorError

HEARTBEAT_S = 5.0
EXIT_OK, EXIT_FAILED, EXIT_CANCELLED, EXIT_USAGE = 0, 1, 3, 2


def describe_error(exc: BaseException) -> str:
    """The text stored in ``runs.error``: readable, with a fix where one is known."""
    if isinstance(exc, PreceptorError):
        return exc.render()
    text = f"{type(exc).__name__}: {exc}".strip()
    if "out of memory" in text.lower() or isinstance(exc, MemoryError):
        text += "\nHint: lower batch_size or max_length, raise grad_accum, or turn on gradient_checkpointing."
    return text


class _Heartbeat(threading.Thread):
    """Touches ``runs.heartbeat_at`` on its own connection until stopped."""

    def __init__(self, db_path: Path, run_id: int) -> None:
        super().__init__(name="preceptor-heartbeat", daemon=True)
        self.db_path, self.run_id = db_path, run_id
        self.stop = threading.Event()

    def run(self) -> None:
        from preceptor.db import runs as q_runs
        from preceptor.db.store import Store

        store = Store(self.db_path)
        try:
            while not self.stop.wait(HEARTBEAT_S):
                try:
                    q_runs.heartbeat(store, self.run_id)
                except Exception:  # a busy database must not kill training
                    pass
        finally:
            store.close()


def _file_logging(run_dir: Path) -> logging.Handler:
    handler = logging.FileHandler(run_dir / LOG_NAME, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    return handler


def _quiet_libraries() -> None:
    """No progress bars from datasets / transformers in a process nobody watches."""
    try:
        import datasets

        datasets.disable_progress_bars()
    except ImportError:  # pragma: no cover
        pass


def execute(project_dir: str | Path, run_id: int, *, cancel: threading.Event | None = None) -> int:
    """Run queued run ``run_id`` of the project in this process; return an exit code."""
    from preceptor.db import runs as q_runs
    from preceptor.db import systems as q_systems
    from preceptor.engine.train import registry
    from preceptor.project import Project

    cancel = cancel or threading.Event()
    project = Project.open(project_dir)
    store = project.store
    run = q_runs.get(store, run_id)
    main = is_main_process()
    if run is None:
        print(f"preceptor worker: no run {run_id} in {project.root}", file=sys.stderr)
        project.close()
        return EXIT_USAGE
    if main and run.status != "queued":
        print(f"preceptor worker: run {run_id} is {run.status}, not queued; nothing to do", file=sys.stderr)
        project.close()
        return EXIT_USAGE
    run_dir = Path(run.dir or project.runs_dir() / f"{run.id}-{run.kind}")
    run_dir.mkdir(parents=True, exist_ok=True)
    handler = _file_logging(run_dir)
    _quiet_libraries()
    logger = logging.getLogger("preceptor.train")
    heart = _Heartbeat(project.db_path, run.id)
    ctx: RunContext | None = None
    code = EXIT_FAILED
    try:
        if main:
            q_runs.set_status(store, run.id, "running")
            heart.start()
        resume_from = latest_checkpoint(run_dir)
        ctx = RunContext(project, run, dict(run.config), run_dir, cancel, resume_from)
        ctx.record_config(versions=library_versions(), hostname=os.uname().nodename)
        ctx.log(f"run {run.id} ({run.kind}) started in process {os.getpid()}"
                + (f", resuming from {resume_from.name}" if resume_from else ""))
        fn = registry.resolve(run.kind)
        summary: dict[str, Any] = fn(ctx) or {}
        if main:
            (run_dir / SUMMARY_NAME).write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
            system = q_systems.by_name(store, summary["system"]) if summary.get("system") else None
            if system is not None:
                q_runs.update(store, run.id, system_id=system.id)
            q_runs.set_status(store, run.id, "succeeded")
        ctx.log(f"run {run.id} succeeded" + (f"; registered system {summary['system']!r}" if summary.get("system") else ""))
        code = EXIT_OK
    except Cancelled:
        ckpt = latest_checkpoint(run_dir)
        note = f"cancelled; last checkpoint {ckpt.name}" if ckpt else "cancelled before the first checkpoint"
        if ctx:
            ctx.log(note, "warning")
        if main:
            q_runs.set_status(store, run.id, "cancelled", error=note)
        code = EXIT_CANCELLED
    except BaseException as exc:  # noqa: BLE001 - everything is recorded, nothing escapes silently
        logger.error("run %s failed:\n%s", run.id, traceback.format_exc())
        text = describe_error(exc)
        if ctx:
            ctx._event({"type": "log", "level": "error", "text": text})
        if main:
            try:
                q_runs.set_status(store, run.id, "failed", error=text)
            except Exception:  # pragma: no cover - the database itself is gone
                logger.error("could not record the failure:\n%s", traceback.format_exc())
        code = EXIT_FAILED
        if isinstance(exc, KeyboardInterrupt):
            raise
    finally:
        heart.stop.set()
        if ctx:
            ctx.close()
        logging.getLogger().removeHandler(handler)
        logging.captureWarnings(False)
        handler.close()
        project.close()
    return code


def main(argv: list[str] | None = None) -> int:
    cancel = threading.Event()
    # First thing: a SIGTERM from now on asks for a graceful stop (checkpoint, 'cancelled').
    signal.signal(signal.SIGTERM, lambda signum, frame: cancel.set())
    parser = argparse.ArgumentParser(prog="preceptor-train-worker", description="Run one preceptor training run.")
    parser.add_argument("--project", required=True)
    parser.add_argument("--run", type=int, required=True)
    args = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("WANDB_DISABLED", "true")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    return execute(args.project, args.run, cancel=cancel)


if __name__ == "__main__":
    sys.exit(main())
