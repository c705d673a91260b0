"""The embedding track's engine: pair import, one stage, chaining, mining, collapse alarm, demo data."""

from __future__ import annotations

import dataclasses
import json
import random
import re
from pathlib import Path

import pytest

from preceptor.db import embed as q_embed
from preceptor.db import runs as q_runs
from preceptor.db import systems as q_systems
from preceptor.engine.events import Done
from preceptor.engine.events import run as consume
from preceptor.errors import PreceptorError

# A toy curriculum the tiny encoder cannot solve before training and must solve after:
# each anchor is a drug word between two noise words; its document shares no word with it,
# so only training can tie them. Held-out anchors are new noise combinations of the same drugs.
SIGNALS = ["clarithromycin", "rifampin", "warfarin", "atorvastatin", "fluconazole", "sertraline", "amiodarone", "omeprazole"]
DOCS = ["quick brown fox", "lazy dog jumps", "potassium can raise", "cholesterol synthesis lowers",
        "serotonin syndrome risk", "platelet aggregation inhibits", "hepatic glucose production", "proton pump exposure"]
NOISE = ["one", "sentence", "the", "explain", "state", "mechanism", "action", "two", "between", "interaction",
         "create", "concise", "clinical", "card", "answer", "better"]


def toy_rows(n_per: int = 12, seed: int = 0) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows = []
    for s, d in zip(SIGNALS, DOCS, strict=True):
        seen: set[str] = set()
        while len(seen) < n_per:
            w = rng.sample(NOISE, 2)
            a = f"{w[0]} {s} {w[1]}"
            if a not in seen:
                seen.add(a)
                rows.append({"anchor": a, "positive": d, "group": a})
    return rows


def seed_template_rows() -> list[dict[str, object]]:
    """Seed 002's extra stage: positive-only, template-like sentences, every score 1.0."""
    rows = []
    for drug in SIGNALS:
        for kind in ("clinical card", "one sentence", "concise answer"):
            rows.append({"anchor": f"{drug} is a drug used in {kind}", "positive": f"the {kind} drug is {drug}",
                         "score": 1.0, "group": drug})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


# Session fixtures are imported by test_embed_cli.py and test_retriever.py; pytest then
# treats them as separate fixtures, so their values are kept here and built once.
_SHARED: dict[str, object] = {}


@pytest.fixture(scope="session")
def encoder(tiny_encoder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    if "encoder" not in _SHARED:
        _SHARED["encoder"] = _working_encoder(tiny_encoder, tmp_path_factory)
    return _SHARED["encoder"]  # type: ignore[return-value]


def _working_encoder(tiny_encoder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny encoder — rebuilt here if the shared fixture's tokenizer lost its vocabulary.

    ``preceptor.testing.tiny.build_encoder`` passes ``vocab_file=`` to ``BertTokenizerFast``,
    which transformers 5 ignores (every word becomes [UNK] and the model has 5 embeddings).
    Until that is fixed there, build the same model with ``vocab=``.
    """
    from transformers import AutoTokenizer

    if len(AutoTokenizer.from_pretrained(str(tiny_encoder))) > 100:
        return tiny_encoder
    import transformers

    from preceptor.testing import tiny

    orig = transformers.BertTokenizerFast

    def fixed(*args, vocab_file=None, **kwargs):
        return orig(*args, vocab=vocab_file, **kwargs)

    transformers.BertTokenizerFast = fixed
    try:
        return tiny.build_encoder(tmp_path_factory.mktemp("tiny_encoder_fixed") / "model")
    finally:
        transformers.BertTokenizerFast = orig


def import_file(project, path: Path, stage: str, **kw) -> dict:
    from preceptor.engine.embed.data import PairImportOptions, import_pairs

    return consume(import_pairs(project, path, PairImportOptions(stage=stage, **kw)))


def stage_config(stage: str, init: Path | str, base: Path | str, **settings) -> dict:
    from preceptor.engine.embed.settings import EmbedSettings

    st = EmbedSettings(**{"batch_size": 8, "learning_rate": 1e-3, "max_steps": 60, "save_steps": 1000, **settings})
    return {"stage": stage, "init": str(init), "base": str(base), "base_name": str(base), "settings": dataclasses.asdict(st)}


def run_inline(project, config: dict, parent_id: int | None = None) -> tuple[dict, object]:
    """run_stage in this process through a RunContext built here (no worker process)."""
    from preceptor.engine.train.context import RunContext
    from preceptor.engine.train.embed_stage import run_stage

    run = q_runs.create(project.store, "embed", config, parent_id=parent_id)
    run_dir = project.runs_dir() / f"{run.id}-embed"
    q_runs.update(project.store, run.id, dir=str(run_dir))
    q_runs.set_status(project.store, run.id, "running")
    ctx = RunContext(project, q_runs.get(project.store, run.id), dict(config), run_dir)
    try:
        summary = run_stage(ctx)
    finally:
        ctx.close()
    (run_dir / "summary.json").write_text(json.dumps(summary, default=str), encoding="utf-8")
    q_runs.set_status(project.store, run.id, "succeeded")
    return summary, q_runs.get(project.store, run.id)


@pytest.fixture(scope="session")
def trained_toy(encoder: Path, tmp_path_factory: pytest.TempPathFactory):
    """One toy stage trained from the tiny encoder (shared: training is the slow part)."""
    if "trained_toy" in _SHARED:
        yield _SHARED["trained_toy"]
        return
    from preceptor.project import Project

    root = tmp_path_factory.mktemp("trained_toy")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PRECEPTOR_HOME", str(root / "home"))
        project = Project.init(root / "proj")
        import_file(project, write_jsonl(root / "toy.jsonl", toy_rows()), "toy", val_ratio=0.25, queries=True)
        summary, run = run_inline(project, stage_config("toy", encoder, encoder))
        _SHARED["trained_toy"] = (project, summary, run)
        yield project, summary, run
        project.close()


def weights(path: Path | str):
    from safetensors.torch import load_file

    return load_file(str(Path(path) / "model.safetensors"))


# -- import --------------------------------------------------------------------------

def test_import_pairs_is_grouped_deduplicated_and_registers_the_stage(project, tmp_path):
    rows = toy_rows()
    f = write_jsonl(tmp_path / "toy.jsonl", rows + rows[:5])  # 5 exact duplicates
    s = import_file(project, f, "toy", val_ratio=0.3)
    assert s["rows"] == len(rows) + 5 and s["imported"] == len(rows) and s["duplicates"] == 5
    assert s["splits"]["val"] > 0 and s["splits"]["train"] > 0
    assert s["corpus_docs"] == len(DOCS)
    project.reload()
    assert project.table("embed")["stages"] == ["toy"]
    # a group keeps its split when more of its pairs arrive later, even at another ratio
    before = q_embed.group_splits(project.store, "toy")
    g = next(k for k, v in before.items() if v == "val")
    f2 = write_jsonl(tmp_path / "more.jsonl", [{"anchor": "card rifampin one", "positive": "a new document", "group": g}])
    s2 = import_file(project, f2, "toy", val_ratio=0.0)
    assert s2["imported"] == 1 and s2["splits"]["val"] == 1 and s2["groups_kept_split"] == 1
    assert s2["corpus_docs"] == len(DOCS) + 1


def test_import_pairs_reads_csv_negatives_scores_and_publishes_queries(project, tmp_path):
    f = tmp_path / "seed.csv"
    f.write_text("dur_type,description,label,neg\n"
                 "pregnancy,Not for use in pregnancy,1.0,Safe with food\n"
                 "elderly,Use with care in older adults,0.8,\n"
                 "combination,Do not combine with these drugs,0.9,Safe with food\n", encoding="utf-8")
    s = import_file(project, f, "dur", anchor_col="dur_type", positive_col="description", score_col="label",
                    negative_col="neg", val_ratio=0.5, queries=True)
    assert s["imported"] == 3 and s["with_score"] == 3 and s["with_negative"] == 2
    pairs = q_embed.pairs(project.store, "dur")
    assert sorted(p.score for p in pairs) == [0.8, 0.9, 1.0]
    assert {p.negative for p in pairs} == {None, "Safe with food"}
    # held-out anchors became prompts (reference = the relevant document) for retrieval judging
    from preceptor.db import prompts as q_prompts

    prompts = q_prompts.select(project.store, q_prompts.PromptFilter(collections=["retrieval-dur"]))
    assert len(prompts) == s["queries_published"] == s["splits"]["val"] + s["splits"]["test"] > 0
    held = {p.anchor: p.positive for p in pairs if p.split != "train"}
    assert {p.text: p.reference for p in prompts} == held
    assert all(p.task == "retrieval" and p.meta["relevant"] == [held[p.text]] for p in prompts)


@pytest.mark.parametrize("content, name, message", [
    ("anchor,text\nwarfarin,VKOR inhibitor\n", "a.csv",
     "{f}:2: no positive column (positive / document / passage / answer / sentence2 / text2 / description / definition / summary / details / explanation / content); columns found: anchor, text"),
    ('{"anchor": "warfarin", "positive": "VKOR inhibitor"}\n{"anchor": "  ", "positive": "x"}\n', "b.jsonl",
     "{f}:2: field 'anchor' is empty"),
    ('{"anchor": "warfarin", "positive": "VKOR inhibitor", "score": "high"}\n', "c.jsonl",
     "{f}:1: 'score' is 'high', not a number"),
    ('{"anchor": "warfarin", "positive": "VKOR inhibitor", "score": 4}\n', "d.jsonl",
     "{f}:1: 'score' = 4 is outside [-1, 1]"),
    ('{"anchor": "a", "positive": "b"}\n{"anchor": "c", "positive": "d"\n', "e.jsonl",
     "{f}:2:"),
    ('{"anchor": "warfarin", "positive": "VKOR inhibitor", "negative": "vkor  INHIBITOR"}\n', "g.jsonl",
     "{f}:1: the negative is the same text as the positive"),
])
def test_bad_pair_files_name_file_and_line_and_import_nothing(project, tmp_path, content, name, message):
    f = tmp_path / name
    f.write_text(content, encoding="utf-8")
    with pytest.raises(PreceptorError) as err:
        import_file(project, f, "s1")
    assert err.value.message.startswith(message.format(f=f))
    assert q_embed.pairs(project.store, "s1") == []
    assert q_embed.stage_names(project.store) == []


def test_import_pairs_rejects_a_bad_stage_name(project, tmp_path):
    f = write_jsonl(tmp_path / "x.jsonl", toy_rows(1))
    with pytest.raises(PreceptorError) as err:
        import_file(project, f, "drug class")
    assert err.value.message == "--stage 'drug class' contains a space, comma or slash"


# -- metrics, mining, collapse --------------------------------------------------------

def test_retrieval_metrics_match_hand_computed_values():
    import numpy as np

    from preceptor.engine.embed.retrieval import retrieval_metrics

    docs = np.eye(4, dtype=np.float32)
    # query 0 ranks doc 0 first (relevant); query 1 ranks doc 3, 2, 1 — relevant doc 1 at rank 3
    q = np.array([[1, 0.1, 0, 0], [0, 0.2, 0.5, 0.9]], dtype=np.float32)
    m = retrieval_metrics(q, docs, [{0}, {1}], ks=(1, 5, 10))
    assert m["recall@1"] == pytest.approx(0.5)
    assert m["recall@5"] == pytest.approx(1.0)
    assert m["mrr@10"] == pytest.approx((1 + 1 / 3) / 2)
    assert m["ndcg@10"] == pytest.approx((1 + 1 / np.log2(4)) / 2)


def test_mining_never_returns_a_true_positive():
    import numpy as np

    from preceptor.engine.embed.retrieval import mine_hard_negatives

    # An encoder that scores every true positive of an anchor highest (worst case for mining):
    # texts are embedded by their topic letter; anchors with several positives share topics.
    topics = {"alpha": 0, "beta": 1, "gamma": 2, "delta": 3}

    def enc(texts, kind):
        out = np.zeros((len(texts), 4), dtype=np.float32)
        for i, t in enumerate(texts):
            for name, j in topics.items():
                if name in t.lower():
                    out[i, j] = 1.0
            out[i] += 0.01 * (i + 1)
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    pairs = [("alpha query", "alpha doc one"), ("alpha query", "alpha doc two"), ("beta query", "beta doc"),
             ("gamma query", "gamma doc"), ("delta query", "delta doc")]
    corpus = ["ALPHA  doc one", "alpha doc three", "beta doc", "beta doc two", "gamma doc", "delta doc", "alpha query"]
    known = {"alpha query": {"alpha doc three"}, "beta query": {"beta doc two"}}
    negs = mine_hard_negatives(enc, pairs, corpus, known_positives=known, num_negatives=3, max_ratio=1.0)
    positives = {"alpha query": {"alpha doc one", "alpha doc two", "alpha doc three", "alpha query"},
                 "beta query": {"beta doc", "beta doc two", "beta query"}, "gamma query": {"gamma doc", "gamma query"},
                 "delta query": {"delta doc", "delta query"}}
    for (a, _), ns in zip(pairs, negs, strict=True):
        assert len(ns) == 3
        assert not {" ".join(n.lower().split()) for n in ns} & positives[a]


def test_mining_with_a_real_model_excludes_positives_and_prefers_close_documents(encoder):
    from preceptor.engine.embed.retrieval import TextEncoder, load_model, mine_hard_negatives

    enc = TextEncoder(load_model(encoder))
    rows = toy_rows(3)
    pairs = [(r["anchor"], r["positive"]) for r in rows]
    negs = mine_hard_negatives(enc, pairs, DOCS, num_negatives=2)
    for (_, p), ns in zip(pairs, negs, strict=True):
        assert len(ns) == 2 and p not in ns and len(set(ns)) == 2 and set(ns) <= set(DOCS)


class FixedSimilarity:
    """An encoder where anchor i and positive j score ``t`` when i == j and ``u`` otherwise."""

    def __init__(self, n: int, t: float, u: float) -> None:
        self.n, self.t, self.u = n, t, u

    def _vec(self, i: int, own: bool):
        import numpy as np

        v = np.zeros(1 + 2 * self.n)
        v[0] = self.u ** 0.5
        a = (self.t - self.u) / (1 - self.u) if own else 1.0
        v[1 + i] = (1 - self.u) ** 0.5 * a
        v[1 + self.n + i] = (1 - self.u) ** 0.5 * (max(0.0, 1 - a * a)) ** 0.5
        return v

    def queries(self, texts):
        import numpy as np

        out = []
        for x in texts:
            v = np.zeros(1 + 2 * self.n)
            v[0], v[1 + int(x[1:])] = self.u ** 0.5, (1 - self.u) ** 0.5
            out.append(v)
        return np.array(out)

    def passages(self, texts):
        import numpy as np

        return np.array([self._vec(int(x[1:]), True) for x in texts])


@pytest.mark.parametrize("t, u, base_gap, expected", [
    (0.60, 0.10, None, None),
    (0.95, 0.92, None, "embedding collapse suspected: unrelated pairs score 0.92 on average (alarm at 0.85); "
                       "true pairs score only 0.030 above unrelated ones (alarm below 0.05)."),
    (0.50, 0.48, None, "embedding collapse suspected: true pairs score only 0.020 above unrelated ones (alarm below 0.05)."),
    (0.60, 0.40, 0.50, "embedding collapse suspected: the true-vs-unrelated gap fell from 0.500 (base model) to 0.200."),
    (0.60, 0.40, 0.30, None),
    (0.50, 0.48, 0.01, None),  # no worse than a base model that never separated them: not a collapse
])
def test_collapse_alarm_rules(t, u, base_gap, expected):
    from preceptor.engine.embed.retrieval import collapse_diagnostics

    rows = [(f"a{i}", f"p{i}", f"g{i}") for i in range(40)]
    rep = collapse_diagnostics(FixedSimilarity(40, t, u), rows, sample=200, base_gap=base_gap)
    assert rep.true_mean == pytest.approx(t, abs=1e-6) and rep.unrelated_mean == pytest.approx(u, abs=1e-6)
    assert rep.gap == pytest.approx(t - u, abs=1e-6) and rep.n_true == 40 and rep.n_unrelated == 200
    if expected is None:
        assert rep.alarm is None
    else:
        assert rep.alarm.startswith(expected)


def test_a_stage_trains_improves_recall_and_registers_a_retriever(trained_toy, encoder):
    project, summary, run = trained_toy
    # weights changed
    before, after = weights(encoder), weights(summary["model_path"])
    changed = [k for k in before if not before[k].equal(after.get(k, before[k]))]
    assert len(changed) > len(before) // 2
    # held-out retrieval: the untrained encoder is near chance, the trained one must find them
    assert summary["held_out_queries"] > 5
    assert summary["base"]["recall@1"] < 0.5
    assert summary["eval"]["recall@1"] >= summary["base"]["recall@1"] + 0.4
    assert summary["eval"]["mrr@10"] > summary["base"]["mrr@10"]
    stored = {name: value for _, name, value in q_runs.metrics(project.store, run.id)}
    for m in ("recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10"):
        assert stored[f"eval/{m}"] == pytest.approx(summary["eval"][m])
        assert stored[f"base/{m}"] == pytest.approx(summary["base"][m])
    assert "train/loss" in stored and "collapse/gap" in stored and "base_collapse/gap" in stored
    # healthy after training: no alarm, a clear gap between true and unrelated pairs
    assert summary["alarm"] is None and run.warning is None
    assert summary["collapse"]["gap"] > 0.2
    assert summary["negatives"] == "mined"
    # registered: an encoder row chained to the base, a retriever system on the stage corpus
    sysrow = q_systems.by_name(project.store, summary["system"])
    assert (sysrow.role, sysrow.backend, sysrow.model, sysrow.run_id) == ("retriever", "retriever", summary["model_path"], run.id)
    assert sysrow.params["corpus"] == "toy"
    base_sys = q_systems.by_name(project.store, summary["base_system"])
    assert base_sys.model == str(encoder) and base_sys.role == "retriever"
    enc = q_embed.encoder_by_name(project.store, summary["encoder"])
    assert enc.stage == "toy" and enc.run_id == run.id and enc.parent_id is not None
    assert q_embed.encoders(project.store)[0].path == str(encoder)


def test_the_seed_recipe_collapses_and_the_alarm_fires(project, tmp_path, encoder, trained_toy):
    """Seed 002's extra stage: CosineSimilarityLoss on positive-only template sentences (score 1.0)
    drives unrelated pairs to ~0.9+; the alarm must fire and be stored as the run's warning."""
    _, healthy, _ = trained_toy
    assert healthy["alarm"] is None
    f2 = write_jsonl(tmp_path / "template.jsonl", seed_template_rows())
    import_file(project, f2, "template", val_ratio=0.25)
    summary, run = run_inline(project, stage_config("template", healthy["model_path"], encoder, loss="cosine",
                                                    max_steps=80, learning_rate=2e-3))
    c = summary["collapse"]
    assert c["unrelated_mean"] >= 0.85, c
    assert summary["alarm"] and summary["alarm"].startswith("embedding collapse suspected: unrelated pairs score")
    assert "embedding collapse suspected" in run.warning
    assert "positive-only data with CosineSimilarityLoss" in run.warning
    # the same diagnostics on the healthy first stage's model stay quiet on the template data
    from preceptor.engine.embed.retrieval import TextEncoder, collapse_diagnostics, load_model

    triples = [(r["anchor"], r["positive"], r["group"]) for r in seed_template_rows()]
    quiet = collapse_diagnostics(TextEncoder(load_model(healthy["model_path"])), [(a, p, g) for a, p, g in
                                 [(r["anchor"], r["positive"], r["group"]) for r in toy_rows()]])
    assert quiet.alarm is None and quiet.unrelated_mean < 0.85
    loud = collapse_diagnostics(TextEncoder(load_model(summary["model_path"])), triples)
    assert loud.alarm is not None and loud.unrelated_mean > quiet.unrelated_mean


def test_stages_chain_each_from_the_previous_model(project, tmp_path, encoder):
    """The curriculum through the one launch path (inline: the worker's code in threads) —
    stage 1's run starts stage 2's, which starts from stage 1's output."""
    from preceptor.engine.train import curriculum
    from preceptor.engine.train.plan import plan, start

    import_file(project, write_jsonl(tmp_path / "a.jsonl", toy_rows(8, seed=1)), "first", val_ratio=0.25)
    import_file(project, write_jsonl(tmp_path / "b.jsonl", toy_rows(8, seed=2)), "second", val_ratio=0.25)
    project.update_settings({"embed": {"base": str(encoder), "batch_size": 8, "learning_rate": 1e-3, "save_steps": 1000}})
    first = start(project, plan(project, "embed", {"max_steps": 20}, launch={"launcher": "inline"}))
    events = list(curriculum.follow(project, first.id))
    done = events[-1]
    assert isinstance(done, Done)
    r1, r2 = done.summary["stages"]
    assert (r1["stage"], r2["stage"], r1["status"], r2["status"]) == ("first", "second", "succeeded", "succeeded")
    run1, run2 = q_runs.get(project.store, r1["run_id"]), q_runs.get(project.store, r2["run_id"])
    assert run1.config["init"] == str(encoder)
    assert run2.config["init"] == r1["model_path"] and run2.parent_id == run1.id
    assert run2.config["base"] == str(encoder)
    e1 = q_embed.encoder_by_name(project.store, f"first-r{run1.id}")
    e2 = q_embed.encoder_by_name(project.store, f"second-r{run2.id}")
    assert e2.parent_id == e1.id
    # stage 2's starting point is stage 1's model, not the base: its start metrics differ from base
    w1, w2 = weights(r1["model_path"]), weights(r2["model_path"])
    assert any(not w1[k].equal(w2[k]) for k in w1)
    assert r2["start"] != r2["base"]
    assert r1["eval"]["recall@1"] is not None and r2["collapse"]["gap"] is not None


def test_train_embed_refuses_a_stage_without_data(project):
    from preceptor.engine.train.plan import plan

    with pytest.raises(PreceptorError) as err:
        plan(project, "embed", {"stages": ["nothing"]})
    assert err.value.message == "stage 'nothing' has no training pairs"
    with pytest.raises(PreceptorError) as err:
        plan(project, "embed", {})
    assert err.value.message.endswith("[embed] stages is empty and no --stages given")


def test_e5_prefixes_are_detected():
    from preceptor.engine.embed.retrieval import detect_prefixes

    class M:
        prompts: dict = {}

    assert detect_prefixes(M(), "intfloat/multilingual-e5-small") == ("query: ", "passage: ")
    assert detect_prefixes(M(), "/models/e5-small-v2") == ("query: ", "passage: ")
    assert detect_prefixes(M(), "all-MiniLM-L6-v2") == ("", "")
    assert detect_prefixes(M(), "multilingual-e5-small", "none") == ("", "")
    m = M()
    m.prompts = {"query": "q: ", "document": "d: "}
    assert detect_prefixes(m, "anything") == ("q: ", "d: ")


# -- the shipped demo curriculum --------------------------------------------------------

def test_demo_curriculum_queries_never_name_the_drug_they_should_find():
    from preceptor.engine.embed.data import demo_files

    files = {stage: path for stage, path, _ in demo_files()}
    rows = [json.loads(line) for line in files["consumer_query"].read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(rows) >= 100
    for r in rows:
        q, drug = r["anchor"].lower(), r["positive"].lower()
        assert drug not in q, r
        for word in re.findall(r"[a-z]{4,}", drug):
            assert not re.search(rf"\b{re.escape(word)}\b", q), (word, r)


def test_demo_import_sets_the_stage_order_and_publishes_stage3_queries(project):
    from preceptor.engine.embed.data import import_demo

    s = consume(import_demo(project))
    assert s["stages"] == ["drug_class", "safety_type", "consumer_query"]
    project.reload()
    assert project.table("embed")["stages"] == s["stages"]
    counts = q_embed.stage_counts(project.store)
    assert all(counts[st].get("train", 0) > 0 and counts[st].get("val", 0) + counts[st].get("test", 0) > 0 for st in s["stages"])
    # a second call imports nothing again
    assert consume(import_demo(project))["imported"] == {}
    from preceptor.db import prompts as q_prompts

    qs = q_prompts.select(project.store, q_prompts.PromptFilter(collections=["retrieval-consumer_query"]))
    assert qs and all(p.split in ("val", "test") and p.reference.lower() not in p.text.lower() for p in qs)
    # the demo's queries are kept out of every default selection: the project's own prompts stay its own
    assert q_prompts.select(project.store, q_prompts.PromptFilter(split="all")) == []


def test_report_section_lists_stage_metrics_and_alarms(trained_toy):
    from preceptor.engine.results.report import ReportOptions
    from preceptor.engine.results.report.embedding import embedding_section

    project, summary, run = trained_toy
    sec = embedding_section(project, ReportOptions())
    assert sec is not None and sec.key == "embedding"
    row = next(line for line in sec.markdown.splitlines() if line.startswith(f"| toy | {run.id} | succeeded |"))
    assert f"{summary['base']['recall@1']:.3f} → {summary['eval']['recall@1']:.3f}" in row
    assert sec.csv_rows[0]["recall@1"] == pytest.approx(summary["eval"]["recall@1"])
    assert sec.csv_rows[0]["alarm"] == ""


def test_a_cancelled_stage_keeps_a_checkpoint_and_resumes_to_the_end(project, tmp_path, encoder):
    from preceptor.engine.train.context import RunContext, latest_checkpoint
    from preceptor.engine.train.embed_stage import run_stage
    from preceptor.errors import Cancelled

    import_file(project, write_jsonl(tmp_path / "toy.jsonl", toy_rows(6)), "toy", val_ratio=0.25)
    config = stage_config("toy", encoder, encoder, max_steps=12)
    run = q_runs.create(project.store, "embed", config)
    run_dir = project.runs_dir() / f"{run.id}-embed"
    ctx = RunContext(project, run, dict(config), run_dir)
    progress = ctx.progress

    def stop_at_5(done, total, note=""):  # what SIGTERM does in the worker: set the cancel event
        progress(done, total, note)
        if done >= 5:
            ctx.cancel.set()

    ctx.progress = stop_at_5
    with pytest.raises(Cancelled):
        run_stage(ctx)
    ctx.close()
    ckpt = latest_checkpoint(run_dir)
    assert ckpt is not None and ckpt.name == "checkpoint-5"
    assert not (run_dir / "model").exists()
    resumed = RunContext(project, run, dict(config), run_dir, resume_from=ckpt)
    summary = run_stage(resumed)
    resumed.close()
    assert summary["steps"] == 12 and Path(summary["model_path"]).is_dir()
    steps = [s for s, n, _ in q_runs.metrics(project.store, run.id) if n == "eval/recall@1"]
    assert steps == [12]


@pytest.mark.slow
def test_the_packaged_minilm_is_healthy_on_the_demo_safety_stage():
    """The real encoder separates true from unrelated pairs: the alarm stays quiet."""
    from preceptor.engine import models
    from preceptor.engine.embed.data import demo_files
    from preceptor.engine.embed.retrieval import TextEncoder, collapse_diagnostics, load_model

    path = {s: p for s, p, _ in demo_files()}["safety_type"]
    rows = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    rep = collapse_diagnostics(TextEncoder(load_model(models.encoder_path())),
                               [(r["anchor"], r["positive"], r["group"]) for r in rows], sample=150)
    assert rep.alarm is None
    assert rep.gap > 0.15 and rep.unrelated_mean < 0.5
