"""The training runner's process contract, settings and CLI — no model is trained here."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from preceptor.db import runs as q_runs
from preceptor.engine import events
from preceptor.engine.train import registry, runner, settings, worker
from preceptor.engine.train.context import RunContext, latest_checkpoint
from preceptor.engine.train.settings import DPOSettings, SFTSettings
from preceptor.errors import Cancelled, PreceptorError


def _queued(project, kind="sft", config=None):
    run = q_runs.create(project.store, kind, config or {})
    q_runs.update(project.store, run.id, dir=str(project.runs_dir() / f"{run.id}-{kind}"))
    return q_runs.get(project.store, run.id)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# -- settings ------------------------------------------------------------------------

def test_seed000_preset_is_the_seed_run(project):
    s = settings.resolve(project, SFTSettings, "seed000")
    assert (s.lora_r, s.lora_alpha, s.lora_targets, s.lora_dropout) == (8, 32, ["q_proj", "v_proj"], 0.05)
    assert (s.batch_size, s.grad_accum, s.epochs, s.lr, s.warmup_ratio) == (2, 4, 3.0, 2e-5, 0.1)
    assert (s.max_length, s.seed, s.keep_checkpoints, s.batching) == (2048, 42, 2, "pad_max")
    d = settings.resolve(project, SFTSettings)
    assert d.preset == "default" and d.lora_r == 16 and "o_proj" in d.lora_targets and d.lr == 2e-4


def test_settings_file_then_flags(project):
    project.update_settings({"train": {"sft": {"preset": "seed000", "lora_r": 12, "lr": 1e-4}}})
    s = settings.resolve(project, SFTSettings, max_steps=5, lr=3e-4)
    assert (s.preset, s.lora_r, s.lr, s.max_steps, s.batch_size) == ("seed000", 12, 3e-4, 5, 2)
    with pytest.raises(PreceptorError) as err:
        settings.resolve(project, SFTSettings, lr=-1)
    assert err.value.message == "flags: lr must be > 0"
    project.update_settings({"train": {"dpo": {"betta": 0.2}}})
    with pytest.raises(PreceptorError) as err:
        settings.resolve(project, DPOSettings)
    assert err.value.message == f"{project.config_path}: [train.dpo]: unknown key 'betta' (did you mean 'beta'?)"
    with pytest.raises(PreceptorError, match="preset 'seed001' is not one of default, seed000"):
        settings.resolve(project, SFTSettings, "seed001")


def test_every_setting_is_a_cli_flag():
    from click.testing import CliRunner

    from preceptor.cli import cli

    for kind, cls in (("sft", SFTSettings), ("dpo", DPOSettings)):
        out = CliRunner().invoke(cli, ["train", kind, "--help"]).output
        for name, _, _ in __import__("preceptor.config", fromlist=["describe"]).describe(cls):
            assert f"--{name.replace('_', '-')}" in out, (kind, name)
    assert "--pairs" in CliRunner().invoke(cli, ["train", "dpo", "--help"]).output


# -- accelerate ----------------------------------------------------------------------

def test_python_and_accelerate_command_lines(tmp_path):
    cmd = runner.build_command(tmp_path, 7)
    assert cmd == [sys.executable, "-m", "preceptor.engine.train.worker", "--project", str(tmp_path), "--run", "7"]
    ds = tmp_path / "ds.json"
    ds.write_text("{}")
    acc = tmp_path / "fsdp.yaml"
    acc.write_text("distributed_type: FSDP\n")
    cmd = runner.build_command(tmp_path, 7, "accelerate", {"num_processes": 4, "config_file": str(acc),
                                                           "mixed_precision": "bf16", "extra_args": ["--dynamo_backend", "no"]})
    assert cmd == [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(acc.resolve()),
                   "--num_processes", "4", "--mixed_precision", "bf16", "--dynamo_backend", "no",
                   "-m", "preceptor.engine.train.worker", "--project", str(tmp_path), "--run", "7"]
    cmd = runner.build_command(tmp_path, 7, "accelerate", {"num_processes": 2})
    assert cmd[3:7] == ["--num_processes", "2", "--multi_gpu", "-m"]
    cmd = runner.build_command(tmp_path, 3, "accelerate", {"num_processes": 2, "deepspeed_config": str(ds)})
    assert cmd[3:9] == ["--num_processes", "2", "--use_deepspeed", "--deepspeed_config_file", str(ds.resolve()), "-m"]
    with pytest.raises(PreceptorError) as err:
        runner.build_command(tmp_path, 3, "accelerate", {"deepspeed_config": str(tmp_path / "nope.json")})
    assert err.value.message == f"[train.accelerate] deepspeed_config = '{tmp_path / 'nope.json'}': no such file"
    with pytest.raises(PreceptorError, match="launcher 'slurm' is not one of python, accelerate"):
        runner.build_command(tmp_path, 3, "slurm")


def test_cli_accelerate_launch_records_the_launcher(project, monkeypatch):
    seen = {}

    def fake_spawn(project_, run, wait):
        seen["cmd"] = runner.build_command(project_.root, run.id, run.config["launch"]["launcher"], run.config["launch"]["accelerate"])
        return run

    monkeypatch.setattr(runner, "_spawn", fake_spawn)
    run = runner.start(project, "sft", {"settings": {}}, launcher="accelerate", accelerate={"num_processes": 2})
    assert run.status == "queued" and run.config["launch"] == {"launcher": "accelerate", "accelerate": {"num_processes": 2}}
    assert seen["cmd"][1:3] == ["-m", "accelerate.commands.launch"] and "--multi_gpu" in seen["cmd"]
    assert Path(run.dir).name == f"{run.id}-sft"


# -- dead processes, watch, cancel/resume errors ---------------------------------------

def test_dead_processes_are_marked_interrupted_on_open(project):
    from preceptor.project import Project

    running = _queued(project)
    q_runs.update(project.store, running.id, status="running", pid=_dead_pid())
    queued = _queued(project)
    q_runs.set_launch_pid(project.store, queued.id, _dead_pid())
    waiting = _queued(project)  # no process yet: left alone
    with Project.open(project.root) as again:
        assert q_runs.get(again.store, running.id).status == "interrupted"
        assert q_runs.get(again.store, running.id).error == "the process ended without recording a result"
        assert q_runs.get(again.store, queued.id).status == "interrupted"
        assert q_runs.get(again.store, waiting.id).status == "queued"


def test_watch_streams_events_then_done(project):
    run = _queued(project)
    ctx = RunContext(project, run, {}, Path(run.dir))
    ctx.progress(1, 4, "step 1")
    ctx.metrics(1, {"loss": 2.5, "bad": float("nan"), "note": "text"})
    ctx.log("hello")
    ctx.warn("careful")
    ctx.close()
    q_runs.set_status(project.store, run.id, "succeeded")
    evs = list(runner.watch(project, run.id, poll=0.01))
    assert events.Progress(1, 4, "step 1") in evs
    assert [e for e in evs if isinstance(e, events.Metric)] == [events.Metric(1, "loss", 2.5)]
    logs = [(e.level, e.text) for e in evs if isinstance(e, events.Log)]
    assert ("info", "hello") in logs and ("warning", "careful") in logs
    assert ("warning", "bad is nan at step 1: not recorded") in logs
    done = evs[-1]
    assert isinstance(done, events.Done) and done.summary["status"] == "succeeded"
    assert done.summary["metrics"] == {"loss": 2.5} and done.summary["warning"] == "careful"


def test_watch_cancel_stops_watching_only(project):
    run = _queued(project)
    q_runs.set_status(project.store, run.id, "running")  # this process: alive
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        list(runner.watch(project, run.id, cancel, poll=0.01))
    assert q_runs.get(project.store, run.id).status == "running"


def test_cancel_and_resume_refuse_finished_runs(project):
    run = _queued(project)
    q_runs.set_status(project.store, run.id, "succeeded")
    with pytest.raises(PreceptorError) as err:
        runner.resume(project, run.id)
    assert (err.value.title, err.value.message) == ("Cannot resume", f"run {run.id} is succeeded")
    with pytest.raises(PreceptorError) as err:
        runner.cancel(project, run.id)
    assert err.value.message == f"run {run.id} is already succeeded"
    with pytest.raises(PreceptorError, match="no run 999 in"):
        runner.cancel(project, 999)
    queued = _queued(project)
    runner.cancel(project, queued.id)  # never started: cancelled at once
    assert q_runs.get(project.store, queued.id).status == "cancelled"


# -- the worker's outcome handling (in-process, with stand-in jobs) ---------------------

def _job_ok(ctx):
    ctx.metric(3, "loss", 1.5)
    return {"system": None, "answer": 42}


def _job_user_error(ctx):
    raise PreceptorError("Bad setting", "lora_r = 0 in [train.sft]", "Use a rank of at least 1.")


def _job_crash(ctx):
    raise RuntimeError("boom")


def _job_cancelled(ctx):
    ctx.cancel.set()
    raise Cancelled()


@pytest.mark.parametrize("job,status,error", [
    ("_job_ok", "succeeded", None),
    ("_job_user_error", "failed", "Bad setting: lora_r = 0 in [train.sft]\nHint: Use a rank of at least 1."),
    ("_job_crash", "failed", "RuntimeError: boom"),
    ("_job_cancelled", "cancelled", "cancelled before the first checkpoint"),
])
def test_worker_records_the_outcome(project, monkeypatch, job, status, error):
    monkeypatch.setitem(registry.KINDS, "probe", f"tests.test_runner:{job}")
    run = _queued(project, "probe")
    code = worker.execute(project.root, run.id)
    got = q_runs.get(project.store, run.id)
    assert (got.status, got.error) == (status, error)
    assert code == {"succeeded": 0, "failed": 1, "cancelled": 3}[status]
    log = (Path(run.dir) / "train.log").read_text()
    if job == "_job_crash":
        assert "Traceback" in log and "RuntimeError: boom" in log
    if status == "succeeded":
        assert json.loads((Path(run.dir) / "summary.json").read_text())["answer"] == 42
        assert q_runs.metrics(project.store, run.id) == [(3, "loss", 1.5)]
    assert worker.execute(project.root, run.id) == worker.EXIT_USAGE  # not queued any more: nothing done


def test_latest_checkpoint_needs_trainer_state(tmp_path):
    for step, complete in ((2, True), (4, True), (6, False)):
        d = tmp_path / "checkpoints" / f"checkpoint-{step}"
        d.mkdir(parents=True)
        if complete:
            (d / "trainer_state.json").write_text("{}")
    assert latest_checkpoint(tmp_path).name == "checkpoint-4"
    assert latest_checkpoint(tmp_path / "none") is None


# -- DPO data ---------------------------------------------------------------------------

def test_dpo_pairs_from_the_db_use_the_export(project, monkeypatch):
    from preceptor.engine.export import dpo as export
    from preceptor.engine.train import dpo

    calls = []

    def fake_records(project_, opts):
        calls.append(opts)
        if opts.split == "val":
            raise PreceptorError("No DPO pairs", "nothing judged in val", "")
        row = {"prompt": [{"role": "user", "content": "q"}], "chosen": [{"role": "assistant", "content": "good"}],
               "rejected": [{"role": "assistant", "content": "bad"}], "pair_id": 3, "confidence": 0.9}
        return [row], {"excluded": {"tie": 2}}

    monkeypatch.setattr(export, "dpo_records", fake_records)
    s = settings.resolve(project, DPOSettings, source="expert", min_confidence=0.5)
    train, val, stats = dpo.db_pairs(project, s)
    assert train == [{"prompt": [{"role": "user", "content": "q"}], "chosen": [{"role": "assistant", "content": "good"}],
                      "rejected": [{"role": "assistant", "content": "bad"}]}]
    assert val == [] and stats == {"excluded": {"tie": 2}}
    assert [(o.split, o.source, o.min_confidence, o.style) for o in calls] == [
        ("train", "expert", 0.5, "conversational"), ("val", "expert", 0.5, "conversational")]


def test_pairs_file_errors_name_the_line(tmp_path):
    from preceptor.engine.train import dpo

    f = tmp_path / "pairs.jsonl"
    f.write_text('{"prompt": "q", "chosen": "a", "rejected": "b"}\n{"prompt": "q2", "chosen": "a"}\n')
    with pytest.raises(PreceptorError) as err:
        dpo.read_pairs(f)
    assert err.value.message == f"{f}:2: missing 'rejected'"
    f.write_text('{"prompt": "q", "chosen": "a", "rejected": "b"}\n{"prompt": [{"role": "user", "content": "x"}], '
                 '"chosen": [{"role": "assistant", "content": "y"}], "rejected": "z", "split": "val"}\n')
    train, val = dpo.read_pairs(f)
    assert train[0]["chosen"] == [{"role": "assistant", "content": "a"}] and train[0]["prompt"][-1]["content"] == "q"
    assert val == [{"prompt": [{"role": "user", "content": "x"}], "chosen": [{"role": "assistant", "content": "y"}],
                    "rejected": [{"role": "assistant", "content": "z"}]}]


def test_cli_lists_and_shows_runs(project, capsys):
    from preceptor.cli import main

    done = _queued(project)
    q_runs.add_metrics(project.store, done.id, [(1, "loss", 2.0), (2, "loss", 1.5), (2, "eval_loss", 1.25),
                                                  (2, "perplexity", 3.49)])
    q_runs.set_status(project.store, done.id, "succeeded")
    broken = _queued(project, "dpo")
    q_runs.set_status(project.store, broken.id, "failed", error="LoRA targets not found: nope\nHint: use q_proj")
    assert main(["--project", str(project.root), "train", "list"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith(f"{done.id} "))
    assert row.split()[:3] == [str(done.id), "sft", "succeeded"] and row.split()[-3:] == ["1.5", "1.25", "3.49"]
    assert f"  run {broken.id}: LoRA targets not found: nope" in out
    assert main(["--project", str(project.root), "train", "show", str(done.id), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["status"] == "succeeded" and shown["metrics"] == {"loss": 1.5, "eval_loss": 1.25, "perplexity": 3.49}
    assert main(["--project", str(project.root), "train", "resume", str(done.id)]) == 2
    assert capsys.readouterr().err == (f"Error: Cannot resume\nrun {done.id} is succeeded\n"
                                       "Hint: It finished; start a new run instead.\n")
