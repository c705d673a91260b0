"""Generation: hf batched path (tiny model), grounded teacher, litellm with faults, provenance."""

from __future__ import annotations

import json
import threading

import pytest

from preceptor.cli import main
from preceptor.db import outputs as q_outputs
from preceptor.db import systems as q_systems
from preceptor.engine import events
from preceptor.engine.generation import systems as eng_systems
from preceptor.engine.generation.generate import (
    GenerateOptions,
    LocalGenerator,
    LocalSettings,
    generate,
)
from preceptor.engine.ingest.prompts import ImportOptions, import_prompts
from preceptor.engine.models import preferred_dtype
from preceptor.errors import Cancelled, PreceptorError
from preceptor.prompts import templates
from preceptor.testing.llm_server import StubServer

ROWS = [
    ("Explain the interaction between clarithromycin and midazolam.", "Clarithromycin inhibits CYP3A4 and raises midazolam exposure."),
    ("State the mechanism of action of atorvastatin in one sentence.", "Atorvastatin inhibits HMG-CoA reductase."),
    ("Create a concise clinical card for omeprazole.", "Omeprazole inhibits the proton pump and CYP2C19."),
    ("What does rifampin do to CYP3A substrates?", ""),
    ("Mechanism of warfarin?", "Warfarin inhibits vitamin K epoxide reductase."),
    ("Why is sertraline with tramadol risky?", "Both raise serotonin; serotonin syndrome risk."),
]


def _import(project, tmp_path, rows=ROWS):
    path = tmp_path / "items.jsonl"
    path.write_text("\n".join(json.dumps({"prompt": p, "reference": r or None}) for p, r in rows) + "\n")
    return events.run(import_prompts(project, path, ImportOptions(val_ratio=0.0)))


def _tiny_system(project, tiny_lm, name="tiny", role="base", backend="hf", **params):
    params = {"max_new_tokens": 6, "batch_size": 4, "dtype": "fp32", "threads": 1, **params}
    return eng_systems.add(project, name, role=role, backend=backend, model=str(tiny_lm), params=params)


def _run(project, **kw):
    return events.run(generate(project, GenerateOptions(**kw)))


def test_hf_generation_stores_provenance_and_resumes(project, tmp_path, tiny_lm):
    _import(project, tmp_path)
    system = _tiny_system(project, tiny_lm)
    summary = _run(project, system="tiny")
    assert summary["done"] == 6 and summary["failed"] == 0 and summary["skipped"] == 0
    assert summary["threads"] == 1 and summary["batch_size"] == 4
    outs = q_outputs.for_system(project.store, system.id)
    assert len(outs) == 6
    for o in outs:
        prompt = project.store.one("SELECT text FROM prompts WHERE id = ?", (o.prompt_id,))[0]
        msgs, h = templates.student_messages(prompt)
        assert o.messages == msgs and o.template_hash == h
        assert o.params["model"] == str(tiny_lm) and o.params["backend"] == "hf" and o.params["adapter"] is None
        assert o.params["max_new_tokens"] == 6 and o.params["do_sample"] is False and o.params["threads"] == 1
        assert o.params["dtype"] == "fp32" and o.params["batch_size"] == 4
        assert o.prompt_tokens > 5 and 0 <= o.completion_tokens <= 6 and o.latency_ms > 0 and o.cost == 0.0
        assert o.text is not None and o.error is None
    assert summary["completion_tokens"] == sum(o.completion_tokens for o in outs)

    again = _run(project, system="base")  # the role name resolves to the latest base: tiny
    assert again["system"] == "tiny" and again["done"] == 0 and again["skipped"] == 6

    ids = {o.prompt_id: o.id for o in outs}
    forced = _run(project, system="tiny", force=True, limit=2)
    assert forced["done"] == 2 and forced["selected"] == 2
    after = q_outputs.for_system(project.store, system.id)
    assert len(after) == 6 and {o.prompt_id: o.id for o in after} == ids  # replaced in place, never duplicated


def test_batched_generation_matches_one_by_one(tiny_lm):
    gen, _ = LocalGenerator.load(str(tiny_lm), adapter=None, settings=LocalSettings(batch_size=4, max_new_tokens=8, dtype="fp32", threads=1))
    prompts = [templates.student_messages(p)[0] for p, _ in ROWS]
    batched: dict[int, str | None] = {}
    for idx, results in gen.generate(prompts):
        batched.update({i: r.text for i, r in zip(idx, results, strict=True)})
    single = {i: gen.run_batch([gen.encode(m)])[0].text for i, m in enumerate(prompts)}
    assert batched == single
    # longest first, batches of 4
    order = gen.batches([gen.encode(m) for m in prompts])
    lengths = [len(gen.encode(prompts[i])) for b in order for i in b]
    assert lengths == sorted(lengths, reverse=True) and [len(b) for b in order] == [4, 2]


def test_grounded_teacher_uses_references_and_stores_failures(project, tmp_path, tiny_lm):
    _import(project, tmp_path)
    system = _tiny_system(project, tiny_lm, name="gt", role="teacher", backend="grounded")
    summary = _run(project, system="gt")
    assert summary["done"] == 5 and summary["failed"] == 1
    outs = {o.prompt_id: o for o in q_outputs.for_system(project.store, system.id, ok_only=False)}
    failed = [o for o in outs.values() if o.error]
    assert len(failed) == 1 and failed[0].text is None
    assert failed[0].error.startswith("No reference facts: the grounded teacher needs the item's reference")
    good = next(o for o in outs.values() if o.error is None)
    assert good.template_hash == templates.get("teacher_grounded").hash
    assert "Use these facts:" in good.messages[-1]["content"]
    # the next run retries the failed item only (and it fails again the same way, still one row)
    again = _run(project, system="gt")
    assert again["skipped"] == 5 and again["failed"] == 1
    assert len(q_outputs.for_system(project.store, system.id, ok_only=False)) == 6


def test_new_project_defaults_are_offline(project):
    eng_systems.ensure_default_systems(project)
    base = q_systems.resolve(project.store, "base")
    teacher = q_systems.resolve(project.store, "teacher")
    assert (base.name, base.backend, base.model) == ("smollm2", "hf", "smollm2-135m-instruct")
    assert (teacher.name, teacher.backend, teacher.model) == ("grounded-teacher", "grounded", "smollm2-135m-instruct")


def _stub_system(project, server, **params):
    return eng_systems.add(project, "api", role="teacher", backend="litellm", model="openai/stub", api_base=server.url,
                           params={"api_key_env": "STUB_KEY", "max_retries": 2, "temperature": 0.0, **params})


def test_litellm_generation_with_faults_never_drops_or_duplicates(project, tmp_path, monkeypatch):
    monkeypatch.setenv("STUB_KEY", "test")
    _import(project, tmp_path)
    with StubServer(hang=1.0) as server:
        system = _stub_system(project, server, timeout=0.3, concurrency=1)
        # one at a time: the first item gets 429, 500, 500 and exhausts its 1 + 2 attempts;
        # the second gets a timeout and a malformed reply, then its answer
        for kind, n in (("429", 1), ("500", 2), ("timeout", 1), ("malformed", 1)):
            server.fail_next(kind, n)
        evs = list(generate(project, GenerateOptions(system="api")))
        summary = evs[-1].summary
        assert summary["done"] == 5 and summary["failed"] == 1 and summary["retries"] == 4
        assert len(server.requests) == 10  # 6 items + 4 retries
        warnings = [e.text for e in evs if isinstance(e, events.Log) and e.level == "warning"]
        assert any("retry 1/2" in w for w in warnings)
        rows = q_outputs.for_system(project.store, system.id, ok_only=False)
        assert len(rows) == 6 and len({r.prompt_id for r in rows}) == 6
        bad = [r for r in rows if r.error]
        assert all(r.text is None and "InternalServerError (HTTP 500)" in r.error for r in bad)
        good = [r for r in rows if r.error is None]
        msgs, h = templates.teacher_messages("x")
        for r in good:
            assert r.template_hash == h and r.messages[0] == msgs[0]
            assert r.params["model"] == "openai/stub" and r.params["temperature"] == 0.0
            assert "api_key" not in json.dumps(r.params) and "STUB_KEY" not in json.dumps(r.params)
            assert r.prompt_tokens > 0 and r.completion_tokens > 0 and r.latency_ms > 0

        sent = len(server.requests)
        retry = _run(project, system="api")  # only the failed ones are asked again
        assert retry["skipped"] == summary["done"] and retry["done"] == summary["failed"] and retry["failed"] == 0
        assert len(server.requests) == sent + summary["failed"]

        forced = _run(project, system="teacher", force=True)  # role -> api; everything from the cache
        assert forced["system"] == "api" and forced["done"] == 6 and forced["calls"] == 0 and forced["cache_hits"] == 6
        assert len(server.requests) == sent + summary["failed"]
        assert len(q_outputs.for_system(project.store, system.id)) == 6


def test_litellm_budget_stops_cleanly_and_leaves_the_rest_to_do(project, tmp_path, monkeypatch):
    monkeypatch.setenv("STUB_KEY", "test")
    _import(project, tmp_path)
    with StubServer(responder=lambda body: "CYP3A4 inhibition raises exposure") as server:
        # each call reserves max_tokens (20) at $0.001 = $0.02 before it is sent; 4 tokens are paid: the cap
        # ($0.05) is never passed, and a request whose worst case no longer fits is not sent
        system = _stub_system(project, server, input_cost_per_token=0.0, output_cost_per_token=0.001,
                              budget_usd=0.05, max_tokens=20, concurrency=4)
        evs = list(generate(project, GenerateOptions(system="api")))
        summary = evs[-1].summary
        assert 1 <= summary["done"] < 6 and summary["failed"] == 0 and summary["budget_stopped"] == 6 - summary["done"]
        assert summary["calls"] == summary["done"] == len(server.requests) and summary["cost"] <= 0.05
        assert any("budget of $0.0500 reached" in e.text for e in evs if isinstance(e, events.Log))
        assert len(q_outputs.for_system(project.store, system.id, ok_only=False)) == summary["done"]


def test_cancel_keeps_what_was_answered(project, tmp_path, tiny_lm):
    _import(project, tmp_path)
    system = _tiny_system(project, tiny_lm, batch_size=2)
    cancel = threading.Event()
    stream = generate(project, GenerateOptions(system="tiny"), cancel)
    with pytest.raises(Cancelled):
        for ev in stream:
            if isinstance(ev, events.Progress) and ev.done >= 2:
                cancel.set()
    stored = q_outputs.for_system(project.store, system.id)
    assert len(stored) == 2
    rest = _run(project, system="tiny")
    assert rest["done"] == 4 and rest["skipped"] == 2


def test_clear_errors_for_bad_requests(project, tmp_path):
    _import(project, tmp_path)
    with pytest.raises(PreceptorError) as err:
        _run(project, system="nobody")
    assert err.value.title == "Unknown system"
    with pytest.raises(PreceptorError) as err:
        _run(project, system="base", collection="nope")
    assert err.value.message == "no collection named 'nope'"
    assert err.value.hint == "Known collections: items."
    with pytest.raises(PreceptorError) as err:
        GenerateOptions(system="base", split="training")
    assert err.value.message == "--split 'training' is not train, val, test or all"


def test_generate_cli_prints_a_summary(project, tmp_path, tiny_lm, capsys):
    _import(project, tmp_path)
    _tiny_system(project, tiny_lm)
    capsys.readouterr()
    assert main(["generate", "--project", str(project.root), "--system", "tiny", "--limit", "3"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("tiny: 3 answered, 0 failed, 0 already done (of 3 selected) in ")
    assert "1 thread(s), batch 4, fp32" in out
    assert main(["generate", "--project", str(project.root), "--system", "tiny", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["done"] == 3 and data["skipped"] == 3


@pytest.mark.slow
def test_packaged_student_and_grounded_teacher_answer_offline(project, tmp_path):
    _import(project, tmp_path, ROWS[:3])
    project.update_settings({"generate": {"max_new_tokens": 12, "batch_size": 3}})
    base = _run(project, system="base")
    teacher = _run(project, system="teacher")
    assert base["done"] == 3 and teacher["done"] == 3 and base["failed"] == teacher["failed"] == 0
    for name, tpl in (("smollm2", "passthrough"), ("grounded-teacher", "teacher_grounded")):
        s = q_systems.by_name(project.store, name)
        outs = q_outputs.for_system(project.store, s.id)
        assert len(outs) == 3
        for o in outs:
            assert o.text and o.template_hash == templates.get(tpl).hash
            assert o.params["model"] == "smollm2-135m-instruct" and o.params["dtype"] == preferred_dtype("cpu")
            assert o.params["max_new_tokens"] == 12 and 0 < o.completion_tokens <= 12


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_lora_adapter_systems_generate_with_the_adapter_merged(project, tmp_path, tiny_lm):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(str(tiny_lm))
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)  # a non-trivial adapter
    adapter = tmp_path / "adapter"
    peft_model.save_pretrained(str(adapter))
    _import(project, tmp_path, ROWS[:2])
    s = eng_systems.add(project, "ft-1", role="ft", backend="hf", model=str(tiny_lm), adapter=str(adapter),
                        params={"max_new_tokens": 4, "dtype": "fp32", "threads": 1})
    summary = _run(project, system="ft")
    assert summary["system"] == "ft-1" and summary["done"] == 2
    outs = q_outputs.for_system(project.store, s.id)
    assert all(o.params["adapter"] == str(adapter) for o in outs)


def test_retriever_systems_go_through_their_backend(project, tmp_path, monkeypatch):
    import preceptor.engine.embed.retrievers as retriever

    seen: list[list[str]] = []

    class FakeBackend:
        def __init__(self, project, system):
            self.system = system

        def generate(self, prompts):
            seen.append([p.text for p in prompts])
            return [{"text": None, "error": "empty query", "latency_ms": 0.0} if "rifampin" in p.text else
                    {"text": f"1. [0.900] doc for {p.id}", "error": None, "latency_ms": 1.5} for p in prompts]

    monkeypatch.setattr(retriever, "RetrieverBackend", FakeBackend)
    _import(project, tmp_path)
    s = q_systems.upsert(project.store, "ret", role="retriever", backend="retriever", model="enc", params={"corpus": "c", "k": 1})
    summary = _run(project, system="ret")
    assert summary["done"] == 5 and summary["failed"] == 1 and len(seen) == 1 and len(seen[0]) == 6
    outs = q_outputs.for_system(project.store, s.id, ok_only=False)
    ok = [o for o in outs if o.error is None]
    assert all(o.text.startswith("1. [0.900] doc for") and o.latency_ms == 1.5 and o.params["k"] == 1 for o in ok)
    assert [o.error for o in outs if o.error] == ["empty query"]


def test_forced_rerun_failures_keep_earlier_answers(project, tmp_path, monkeypatch):
    monkeypatch.setenv("STUB_KEY", "test")
    _import(project, tmp_path, ROWS[:2])
    with StubServer() as server:
        system = _stub_system(project, server, max_retries=0)
        assert _run(project, system="api")["done"] == 2
        before = {o.prompt_id: o.text for o in q_outputs.for_system(project.store, system.id)}
        _stub_system(project, server, max_retries=0, temperature=0.5)  # new params: the cache cannot answer
        server.fail_next("500", 10)
        evs = list(generate(project, GenerateOptions(system="api", force=True)))
        summary = evs[-1].summary
    assert summary["failed"] == 2 and summary["calls"] == 2
    assert any(e.text == "2 items failed this time; their earlier answers were kept" for e in evs if isinstance(e, events.Log))
    after = q_outputs.for_system(project.store, system.id, ok_only=False)
    assert {o.prompt_id: o.text for o in after} == before and all(o.error is None for o in after)
