"""Generate / Train screen: launch a tiny SFT run from the form and watch its loss curve."""

from __future__ import annotations

import pytest

from tests.test_embed import encoder  # noqa: F401  (session fixture)
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


@pytest.mark.timeout(120)
async def test_the_app_launches_through_the_plan_with_the_accelerate_table(project, tiny_lm, anyio_backend, monkeypatch):
    """A project set to train with accelerate trains with accelerate when launched from the app:
    the app calls the same plan (pre-flight, launcher, command) as `preceptor train sft`."""
    import sys

    from preceptor.db import runs as q_runs
    from preceptor.engine.train import plan as launch_plan
    from preceptor.tui.app import PreceptorApp
    from preceptor.tui.screens.train import RunForm

    sft_project(project, tiny_lm)
    project.update_settings({"train": {"accelerate": {"launcher": "accelerate", "num_processes": 2,
                                                      "mixed_precision": "no"}}})
    planned: list = []

    def fake_start(proj, p, wait=False):  # record the plan; no accelerate process is needed
        planned.append(p)
        run = q_runs.create(proj.store, p.kind, p.config)
        q_runs.set_status(proj.store, run.id, "cancelled", error="not started (test)")
        return q_runs.get(proj.store, run.id)

    monkeypatch.setattr(launch_plan, "start", fake_start)
    app = PreceptorApp(project, start="train")
    async with app.run_test(size=(100, 32)) as pilot:
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, RunForm), 5)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: bool(planned), 15)
    p = planned[0]
    assert p.launcher == "accelerate" and p.accelerate == {"num_processes": 2, "mixed_precision": "no"}
    assert p.command[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    assert p.command[3:9] == ["--num_processes", "2", "--multi_gpu", "--mixed_precision", "no", "-m"]
    assert p.command[9:] == ["preceptor.engine.train.worker", "--project", str(project.root), "--run", "0"]
    assert p.data["train"] == 8 and p.data["sources"] == {"teacher": 8}  # the data pre-flight ran
    assert p.notes[0].startswith("SFT data: 8 train / 2 val examples from teacher (8)")
    assert app.errors == []


@pytest.mark.timeout(240)
async def test_closing_the_app_does_not_stop_a_curriculum(project, tmp_path, anyio_backend, encoder):  # noqa: F811
    """An embedding curriculum launched from the app runs in the detached runner: each stage's
    process starts the next, so the later stages run after the app is closed."""
    from preceptor.db import runs as q_runs
    from preceptor.engine.train import runner
    from preceptor.tui.app import PreceptorApp
    from preceptor.tui.screens.train import RunForm
    from tests.test_embed import import_file, toy_rows, write_jsonl

    import_file(project, write_jsonl(tmp_path / "a.jsonl", toy_rows(4, seed=1)), "first", val_ratio=0.25)
    import_file(project, write_jsonl(tmp_path / "b.jsonl", toy_rows(4, seed=2)), "second", val_ratio=0.25)
    project.update_settings({"embed": {"base": str(encoder), "batch_size": 8, "learning_rate": 1e-3,
                                       "save_steps": 1000, "max_steps": 3, "threads": 1}})
    app = PreceptorApp(project, start="train")
    async with app.run_test(size=(100, 32)) as pilot:
        screen = app.screen
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, RunForm), 5)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: screen.watching is not None, 15)
        first = screen.watching
    # the app is closed while stage 1 is (at most) still going
    assert q_runs.get(project.store, first).status in ("queued", "running", "succeeded")
    done1 = runner.wait(project, first, timeout=150)
    assert done1.status == "succeeded", done1.error
    second = next(r for r in q_runs.list_runs(project.store) if r.parent_id == first)
    assert second.config["stage"] == "second" and second.config["init"].endswith("model")
    done2 = runner.wait(project, second.id, timeout=150)
    assert done2.status == "succeeded", done2.error
    assert [r.config["stage"] for r in sorted(q_runs.list_runs(project.store), key=lambda r: r.id)] == ["first", "second"]


@pytest.mark.timeout(60)
async def test_the_runs_table_is_live_and_cancel_asks_first(project, anyio_backend, monkeypatch):
    import os

    from textual.widgets import DataTable

    from preceptor.db import runs as q_runs
    from preceptor.db import systems as q_systems
    from preceptor.engine.train import runner
    from preceptor.tui.app import PreceptorApp
    from preceptor.tui.widgets.dialogs import ConfirmModal

    store = project.store
    done = q_runs.create(store, "sft", {})
    q_runs.set_status(store, done.id, "running")
    system = q_systems.upsert(store, "ft-7", role="ft", backend="hf", model="m")
    q_runs.update(store, done.id, system_id=system.id)
    q_runs.set_status(store, done.id, "succeeded")
    live = q_runs.create(store, "dpo", {})
    q_runs.set_status(store, live.id, "running")  # this process: alive
    assert q_runs.get(store, live.id).pid == os.getpid()
    q_runs.add_metrics(store, live.id, [(1, "loss", 2.0), (2, "loss", 1.5), (3, "loss", 1.2)])
    cancelled: list[int] = []
    monkeypatch.setattr(runner, "cancel", lambda proj, run_id: cancelled.append(run_id))
    app = PreceptorApp(project, start="train")
    async with app.run_test(size=(100, 32)) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: screen.query_one("#runs-table", DataTable).row_count == 2, 10)
        table = screen.query_one("#runs-table", DataTable)
        rows = {table.get_row_at(i)[0]: table.get_row_at(i) for i in range(table.row_count)}
        assert rows[str(live.id)][2:4] == ["running", "3"]  # live status and the step reached
        assert rows[str(done.id)][2] == "succeeded" and rows[str(done.id)][5] == "ft-7"  # the system it registered
        await wait_for(pilot, lambda: screen.watching == live.id, 10)
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmModal), 5)
        await pilot.press("n")  # changed their mind: nothing is cancelled
        await pilot.pause(0.2)
        assert cancelled == []
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmModal), 5)
        await pilot.press("y")
        await wait_for(pilot, lambda: cancelled == [live.id], 5)
    assert app.errors == []
