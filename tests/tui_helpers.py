"""Helpers for the TUI tests (no tests here): a project with two systems' answers and pairs."""

from __future__ import annotations

from typing import Any

from preceptor.db import outputs as q_outputs
from preceptor.db import prompts as q_prompts
from preceptor.db import systems as q_systems
from preceptor.db.store import now


def judged_project(project: Any, n: int = 12, *, settings: dict[str, Any] | None = None,
                   experts: tuple[str, ...] = ()) -> dict[str, Any]:
    """``n`` prompts answered by systems ``alpha`` and ``beta``, paired; no repeats or overlap;
    ``[judge] min_seconds = 0`` (keys count at once); ``experts`` registered."""
    import hashlib

    from preceptor.engine.events import run
    from preceptor.engine.judging.experts import add_expert
    from preceptor.engine.judging.pairs import PairMakeOptions, make_pairs

    project.update_settings({"judge": {"repeat_share": 0.0, "overlap_share": 0.0, "min_seconds": 0, **(settings or {})}})
    store = project.store
    sx = q_systems.upsert(store, "alpha", role="custom", backend="imported", imported=True)
    sy = q_systems.upsert(store, "beta", role="custom", backend="imported", imported=True)
    ts = now()
    rows = []
    for i in range(n):
        text = f"Question {i}: how does drug D{i} interact with drug E{i}?"
        rows.append((text, hashlib.sha256(text.encode()).hexdigest(), f"D{i} inhibits CYP3A; E{i} rises.",
                     ("train", "val", "test")[i % 3] if n > 3 else "train", "ddi", f"g{i}", "items", None, "test", ts))
    with store.tx():
        q_prompts.ensure_collection(store, "items")
        q_prompts.insert_many(store, rows)
    ids = [r["id"] for r in store.all("SELECT id FROM prompts ORDER BY id")]
    outs = []
    for k, pid in enumerate(ids):
        outs.append(dict(prompt_id=pid, system_id=sx.id, text=f"**Alpha {k}**: D{k} raises E{k} via CYP3A inhibition."))
        outs.append(dict(prompt_id=pid, system_id=sy.id, text=f"*Beta {k}*: no interaction expected between D{k} and E{k}."))
    q_outputs.record_many(store, outs)
    summary = run(make_pairs(project, PairMakeOptions(systems=("alpha", "beta"))))
    project.reload()
    for name in experts:
        add_expert(project.store, name)
    return {"prompt_ids": ids, "systems": (sx, sy), "pairs": summary["created"]}


def plain(widget: Any, width: int = 100) -> str:
    """The text a Static shows (Rich renderables rendered without styles)."""
    from rich.console import Console

    console = Console(width=width, record=True, file=open("/dev/null", "w"), color_system=None)  # noqa: SIM115
    content = widget.content
    console.print(content)
    return console.export_text()


async def wait_for(pilot, cond, timeout: float = 10.0, step: float = 0.05) -> None:
    """Wait until ``cond()`` holds, pausing the app between checks.

    A query on a screen that is pushed but not yet composed raises ``NoMatches``: that
    counts as "not yet". Once the condition holds, one more pause lets the screen finish
    mounting before the test looks at it.
    """
    import time

    from textual.css.query import NoMatches

    end = time.monotonic() + timeout
    while True:
        try:
            if cond():
                break
        except NoMatches:
            pass
        if time.monotonic() > end:
            raise AssertionError("condition not reached in time")
        await pilot.pause(step)
    await pilot.pause()
