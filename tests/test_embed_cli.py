"""The embedding track end to end: CLI commands, the real runner, retrieval judging, negatives export."""

from __future__ import annotations

import json

import pytest

from preceptor.cli import main
from preceptor.db import embed as q_embed
from preceptor.engine.events import run as consume
from preceptor.errors import PreceptorError
from tests.test_embed import (  # noqa: F401  (session fixtures)
    DOCS,
    encoder,
    import_file,
    toy_rows,
    trained_toy,
    write_jsonl,
)


def test_import_pairs_command(tmp_path, capsys):
    proj = tmp_path / "p"
    assert main(["init", str(proj)]) == 0
    f = write_jsonl(tmp_path / "toy.jsonl", toy_rows(4))
    capsys.readouterr()
    assert main(["import-pairs", str(f), "--stage", "toy", "--val-ratio", "0.25", "--project", str(proj)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Imported 32 of 32 pairs into stage 'toy': train ")
    assert f"Corpus 'toy': {len(DOCS)} documents." in out
    bad = tmp_path / "bad.csv"
    bad.write_text("anchor,positive\nwarfarin,\n", encoding="utf-8")
    assert main(["import-pairs", str(bad), "--stage", "toy", "--project", str(proj)]) == 2
    err = capsys.readouterr().err
    assert "Error: Empty field" in err and f"{bad}:2: field 'positive' is empty" in err


def test_train_embed_through_the_runner_prints_metrics_and_diagnostics(tmp_path, capsys, encoder):  # noqa: F811
    """The one test through the real runner: each stage runs in a worker process."""
    proj = tmp_path / "p"
    assert main(["init", str(proj)]) == 0
    f = write_jsonl(tmp_path / "toy.jsonl", toy_rows(6))
    assert main(["import-pairs", str(f), "--stage", "toy", "--val-ratio", "0.3", "--project", str(proj)]) == 0
    capsys.readouterr()
    code = main(["train", "embed", "--project", str(proj), "--base", str(encoder), "--max-steps", "15",
                 "--batch-size", "8", "--lr", "1e-3"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "Retrieval on held-out queries (base model; start = the previous stage's model; after the stage):" in out
    assert "Collapse diagnostics (cosine similarity; true pairs vs random unrelated pairs):" in out
    lines = out.splitlines()
    base_row = next(i for i, x in enumerate(lines) if x.startswith("toy ") and " base " in x)
    after = lines[base_row + 1].split()
    assert after[:3] == ["run", "1", "15"] and len(after) == 8  # run 1, 15 steps, five metrics
    assert max(len(x) for x in lines if not x.startswith(("Registered", "Judge", "Retrieval"))) <= 80
    assert "Registered retriever systems: embed-toy-r1 (and model@toy for the base encoder)." in out
    from preceptor.db import runs as q_runs
    from preceptor.project import Project

    with Project.open(proj) as project:
        run = q_runs.get(project.store, 1)
        assert (run.kind, run.status) == ("embed", "succeeded")
        assert run.config["versions"]["sentence-transformers"]
        assert run.config["data_sha256"] == q_embed.data_fingerprint(project.store, "toy")[1]
        names = {n for _, n, _ in q_runs.metrics(project.store, 1)}
        assert {"eval/recall@1", "base/ndcg@10", "collapse/gap", "train/loss"} <= names


def test_retrieval_outputs_are_paired_judged_and_exported_as_negatives(trained_toy, tmp_path):  # noqa: F811
    """Two retrievers answer the held-out queries; their ranked lists are ordinary outputs,
    paired and judged by the existing code, then exported as (query, positive, hard negative)."""
    from preceptor.engine.embed.retrievers import parse_ranked
    from preceptor.engine.export.negatives import NegativesOptions, export_negatives
    from preceptor.engine.generation.generate import GenerateOptions, generate
    from preceptor.engine.judging.experts import ExpertSession
    from preceptor.engine.judging.pairs import PairMakeOptions, make_pairs

    project, summary, _ = trained_toy
    base_sys, ft_sys = summary["base_system"], summary["system"]
    for name in (base_sys, ft_sys):
        g = consume(generate(project, GenerateOptions(system=name, collection="retrieval-toy")))
        assert g["done"] == summary["held_out_queries"] and g["failed"] == 0
    made = consume(make_pairs(project, PairMakeOptions(systems=(base_sys, ft_sys), collection="retrieval-toy")))
    assert made["created"] > 0
    # an "expert" who prefers the list whose top document is the relevant one
    with ExpertSession(project, "Dr Rank", create=True) as session:
        voted = 0
        skipped: set[int] = set()
        while (pair := session.next()) is not None:
            if pair.pair_id in skipped:  # skipped pairs come back at the end of the queue: all seen
                break
            ref = pair.reference
            left_top = parse_ranked(pair.left.text)[0][2]
            right_top = parse_ranked(pair.right.text)[0][2]
            if (left_top == ref) == (right_top == ref):
                session.skip(pair)
                skipped.add(pair.pair_id)
                continue
            session.record(pair, pair.left.label if left_top == ref else pair.right.label)
            voted += 1
    assert voted > 0
    # the split of the queries is val/test; export them all for this check
    out = tmp_path / "neg.jsonl"
    s = consume(export_negatives(project, out, NegativesOptions(stage="toy-hard", split="all")))
    rows = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == s["n"] == voted
    from preceptor.db import prompts as q_prompts

    refs = {p.text: p.reference for p in q_prompts.select(project.store, q_prompts.PromptFilter(collections=["retrieval-toy"]))}
    for r in rows:
        assert r["positive"] == refs[r["anchor"]] and r["negative"] != r["positive"] and r["negative"] in DOCS
        assert r["stage"] == "toy-hard" and r["source"].startswith("judgment:")
    manifest = json.loads((tmp_path / "neg.jsonl.manifest.json").read_text())
    assert manifest["n"] == len(rows) and manifest["import"] == f"preceptor import-pairs {out} --stage toy-hard"
    # the file imports back as a stage with hard negatives
    back = import_file(project, out, "toy-hard")
    assert back["imported"] == len(rows) and back["with_negative"] == len(rows)
    with pytest.raises(PreceptorError) as err:
        consume(export_negatives(project, out, NegativesOptions(stage="toy-hard", split="all")))
    assert err.value.message == f"{out} already exists"


def test_export_negatives_with_nothing_judged_explains_why(project, tmp_path, capsys):
    capsys.readouterr()
    code = main(["export", "negatives", str(tmp_path / "n.jsonl"), "--stage", "s", "--project", str(project.root)])
    err = capsys.readouterr().err
    assert code == 2
    assert ("no judged pair with a winner matches source 'all' and split 'train' (judgments in the project: "
            "no judgments at all; excluded: none)") in err
