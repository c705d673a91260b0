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
