"""What a training job sees while it runs in the worker process: :class:`RunContext`.

A job (``fn(ctx) -> summary``) reports through the context only: ``log`` lines go to the
run's log file (``train.log``, human-readable) and to ``events.jsonl`` (read by
:func:`preceptor.engine.train.runner.watch`), metrics go straight into ``run_metrics``,
progress into ``events.jsonl``. ``cancel`` is set when the process receives SIGTERM; jobs
check it between units of work (trainers through a ``TrainerCallback``).
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from preceptor.db import runs as q_runs

if TYPE_CHECKING:
    from preceptor.project import Project

LOG_NAME = "train.log"
EVENTS_NAME = "events.jsonl"
SUMMARY_NAME = "summary.json"
CHECKPOINTS = "checkpoints"

log = logging.getLogger("preceptor.train")


def library_versions() -> dict[str, str | None]:
    """Versions of the libraries a training result depends on (read from metadata, no import)."""
    out: dict[str, str | None] = {"python": sys.version.split()[0]}
    for name in ("preceptor", "torch", "transformers", "peft", "trl", "accelerate", "datasets", "sentence-transformers"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def is_main_process() -> bool:
    """False on the non-zero ranks of a multi-process (accelerate) launch."""
    return os.environ.get("RANK", "0") in ("", "0")


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest ``checkpoints/checkpoint-N`` folder of a run, if any."""
    folder = Path(run_dir) / CHECKPOINTS
    best: tuple[int, Path] | None = None
    if folder.is_dir():
        for p in folder.iterdir():
            if p.is_dir() and p.name.startswith("checkpoint-") and p.name[11:].isdigit():
                if (p / "trainer_state.json").exists() and (best is None or int(p.name[11:]) > best[0]):
                    best = (int(p.name[11:]), p)
    return best[1] if best else None


def checkpoint_step(path: Path | None) -> int:
    return int(Path(path).name.split("-")[-1]) if path else 0


@dataclass
class RunContext:
    project: Project
    run: q_runs.Run
    config: dict[str, Any]
    run_dir: Path
    cancel: threading.Event = field(default_factory=threading.Event)
    resume_from: Path | None = None
    main: bool = field(default_factory=is_main_process)

    def __post_init__(self) -> None:
        self.run_dir = Path(self.run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._events = open(self.run_dir / EVENTS_NAME, "a", encoding="utf-8") if self.main else None

    @property
    def store(self):
        return self.project.store

    # -- reporting ----------------------------------------------------------------------
    def _event(self, record: dict[str, Any]) -> None:
        if self._events is None:
            return
        record["t"] = round(time.time(), 3)
        with self._lock:
            self._events.write(json.dumps(record, ensure_ascii=False) + "\n")
            self._events.flush()

    def log(self, text: str, level: str = "info") -> None:
        """A line in the run log (and a Log event for whoever watches the run)."""
        log.log({"warning": logging.WARNING, "error": logging.ERROR}.get(level, logging.INFO), text)
        self._event({"type": "log", "level": level, "text": text})

    def warn(self, text: str) -> None:
        """A warning the user should see afterwards too (stored in ``runs.warning``)."""
        self.log(text, "warning")
        if self.main:
            q_runs.append_warning(self.store, self.run.id, text)

    def metric(self, step: int, name: str, value: float) -> None:
        self.metrics(step, {name: value})

    def metrics(self, step: int, values: dict[str, Any]) -> None:
        """Record finite numeric values at ``step`` (NaN/inf are logged as a warning, never stored)."""
        if not self.main:
            return
        items = []
        for name, value in values.items():
            try:
                v = float(value)
            except (TypeError, ValueError):
                continue
            if not math.isfinite(v):
                self.log(f"{name} is {v} at step {step}: not recorded", "warning")
                continue
            items.append((step, name, v))
        if items:
            q_runs.add_metrics(self.store, self.run.id, items)

    def progress(self, done: int, total: int | None, note: str = "") -> None:
        self._event({"type": "progress", "done": int(done), "total": None if total is None else int(total), "note": note})

    def record_config(self, **values: Any) -> None:
        """Add facts to the run's recorded config (data sha256, sizes, resolved model...)."""
        self.config.update(values)
        if self.main:
            q_runs.merge_config(self.store, self.run.id, values)

    def close(self) -> None:
        if self._events is not None:
            self._events.close()
            self._events = None
