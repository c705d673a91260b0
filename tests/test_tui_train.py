"""Generate / Train screen: launch a tiny SFT run from the form and watch its loss curve."""

from __future__ import annotations

import pytest

from tests.tui_helpers import wait_for

pytestmark = pytest.mark.anyio


def sft_project(project, tiny_lm):
    import hashlib

    from preceptor.db import outputs as q_outputs
    from preceptor.db import prompts as q_prompts
    from preceptor.db import systems as q_systems
    from preceptor.db.store import now

    store = project.store
    base = q_systems.upsert(store, "base", role="base", backend="hf", model=str(tiny_lm))
    teacher = q_systems.upsert(store, "teacher", role="teacher", backend="imported", imported=True)
    rows = []
    for i in range(10):
        text = f"Explain the interaction between clarithromycin and drug {i}."
        rows.append((text, hashlib.sha256(text.encode()).hexdigest(), None, "val" if i >= 8 else "train", "ddi",
                     f"g{i}", "items", None, "test", now()))
    with store.tx():
        q_prompts.ensure_collection(store, "items")
        q_prompts.insert_many(store, rows)
    ids = [r["id"] for r in store.all("SELECT id FROM prompts ORDER BY id")]
    q_outputs.record_many(store, [dict(prompt_id=pid, system_id=teacher.id,
                                       text="Clarithromycin is a strong CYP3A inhibitor and raises exposure.")
                                  for pid in ids])
    return base




@pytest.mark.timeout(180)
async def test_launch_tiny_sft_and_watch_the_curve(project, tiny_lm, anyio_backend):
    from textual.widgets import Input, Select

    from preceptor.db import runs as q_runs
    from preceptor.tui.app import PreceptorApp
    from preceptor.tui.screens.train import RunForm

    sft_project(project, tiny_lm)
    app = PreceptorApp(project, start="train")
    async with app.run_test(size=(100, 32)) as pilot:
        screen = app.screen
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, RunForm), 5)
        form = app.screen
        # the form is pre-filled from the defaults: the base system and the teacher
        assert form.query_one("#f-base_system", Input).value == "base"
        assert form.query_one("#f-from_system", Input).value == "teacher"
        assert form.query_one("#f-preset", Select).value == "default"
        # an invalid value is refused before anything is launched
        form.query_one("#f-lr", Input).value = "-1"
        await pilot.press("ctrl+s")
        await pilot.pause(0.2)
        assert [e.message for e in app.errors][-1].endswith("lr must be > 0")
        await pilot.press("escape")  # close the error modal
        await pilot.pause(0.1)
        assert q_runs.list_runs(project.store) == []
        for field, value in {"lr": "0.001", "max_steps": "4", "batch_size": "2", "grad_accum": "1",
                             "max_length": "96", "device": None, "threads": "1", "lora_r": "4",
                             "name": "ft-tui"}.items():
            if value is not None:
                form.query_one(f"#f-{field}", Input).value = value
        form.query_one("#f-device", Select).value = "cpu"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: app.screen is screen and screen.watching is not None, 15)
        run_id = screen.watching
        await wait_for(pilot, lambda: len(screen.series.get("loss", ([], []))[0]) >= 1, 150)
        xs, ys = screen.series["loss"]
        assert xs[0] == 1.0 and ys[0] > 0
    # the app is closed: the run goes on in its own process
    assert q_runs.get(project.store, run_id).status in ("running", "succeeded")

    app = PreceptorApp(project, start="train")
    async with app.run_test(size=(100, 32)) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: screen.watching == run_id, 10)  # reopening follows the run
        await wait_for(pilot, lambda: q_runs.get(project.store, run_id).status in ("succeeded", "failed"), 150)
        # the run's Done event: its status and the system it registered
        await wait_for(pilot, lambda: "succeeded, registered system ft-tui" in str(screen.query_one("#run-head").render()), 60)
        xs, ys = screen.series["loss"]
        assert xs == [float(i) for i in range(1, len(xs) + 1)] and len(xs) >= 4 and all(y > 0 for y in ys)
        plot = screen.query_one("#run-plot")
        assert "loss" in str(plot.render())
    run = q_runs.get(project.store, run_id)
    assert run.status == "succeeded", run.error
    assert run.config["settings"]["max_steps"] == 4 and run.config["settings"]["lr"] == 0.001
    assert app.errors == []


@pytest.mark.timeout(120)
async def test_generate_from_the_form(project, tiny_lm, anyio_backend):
    from textual.widgets import Input, Select

    from preceptor.db import outputs as q_outputs
    from preceptor.tui.app import PreceptorApp
    from preceptor.tui.screens.train import RunForm

    base = sft_project(project, tiny_lm)
    app = PreceptorApp(project, start="train")
    async with app.run_test(size=(100, 32)) as pilot:
        screen = app.screen
        await pilot.press("g")
        await wait_for(pilot, lambda: isinstance(app.screen, RunForm), 5)
        form = app.screen
        assert form.query_one("#f-system", Select).value == "base"
        form.query_one("#f-split", Select).value = "val"
        form.query_one("#f-limit", Input).value = "0"
        await pilot.press("ctrl+s")
        await pilot.pause(0.2)
        assert app.errors[-1].message == "--limit must be at least 1, got 0"
        await pilot.press("escape")
        form.query_one("#f-limit", Input).value = "2"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: app.screen is screen, 5)
        await wait_for(pilot, lambda: "finished" in "\n".join(str(line.text) for line in screen.query_one("#run-log").lines), 90)
    done = [o for o in q_outputs.for_system(project.store, base.id)]
    assert len(done) == 2 and all(o.text is not None for o in done)
    assert len(app.errors) == 1
