"""Is a process still there? One answer for the runner and the judging queue (psutil)."""

from __future__ import annotations


def alive(pid: int | None) -> bool:
    """True while process ``pid`` exists and has not exited (a zombie counts as gone).

    A process under SIGSTOP is alive (it may be continued): the run's heartbeat tells
    whether it makes progress (see ``engine.views`` / ``db.runs.liveness``).
    """
    if not pid:
        return False
    import psutil

    try:
        return psutil.Process(int(pid)).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except (psutil.AccessDenied, psutil.Error):  # another user's live process
        return True


BULK_NICE = 5  # how much a command-line bulk import lowers its own CPU priority


def yield_cpu(step: int = BULK_NICE) -> int:
    """Lower this process's CPU priority by ``step`` (a bulk import on the command line), so
    experts voting on the same machine keep their share of the cores; returns the new niceness.
    Never raises: a platform without niceness keeps running as it was."""
    import psutil

    try:
        proc = psutil.Process()
        current = int(proc.nice())
        if current < 19:
            proc.nice(min(19, current + step))
        return int(proc.nice())
    except (psutil.Error, OSError, ValueError, TypeError):  # pragma: no cover - e.g. Windows priority classes
        return 0
