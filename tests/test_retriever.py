"""Retriever systems: an encoder + a corpus answering queries with a rendered top-k list."""

from __future__ import annotations

import pytest

from preceptor.db import embed as q_embed
from preceptor.db import systems as q_systems
from preceptor.engine.embed import retrievers as retriever
from preceptor.engine.embed.retrievers import RetrieverBackend, parse_ranked, rank_of, render_ranked
from preceptor.errors import PreceptorError
from tests.test_embed import DOCS, encoder  # noqa: F401  (session fixture)


def add_corpus(project, name: str, docs: list[str]) -> None:
    from preceptor.engine.embed.data import doc_key

    with project.store.tx():
        q_embed.ensure_corpus(project.store, name)
    q_embed.add_docs(project.store, name, [(doc_key(d), d, None) for d in docs])


def test_render_and_parse_round_trip_and_rank_of():
    text = render_ranked([(0.91234, "Statin\nlowers  cholesterol"), (0.5, "Proton pump inhibitor"), (-0.1, "x")])
    assert text.splitlines() == ["1. [0.912] Statin lowers cholesterol", "2. [0.500] Proton pump inhibitor", "3. [-0.100] x"]
    assert parse_ranked(text) == [(1, 0.912, "Statin lowers cholesterol"), (2, 0.5, "Proton pump inhibitor"), (3, -0.1, "x")]
    assert rank_of(text, "proton PUMP inhibitor") == 2
    assert rank_of(text, ["nothing", "X"]) == 3
    assert rank_of(text, "absent") is None


def test_backend_answers_queries_with_the_top_k_of_its_corpus(project, encoder):  # noqa: F811
    add_corpus(project, "toy", DOCS)
    system = retriever.register(project.store, "tiny@toy", model=str(encoder), corpus="toy", k=3)
    assert (system.role, system.backend) == ("retriever", "retriever")
    backend = RetrieverBackend(project, q_systems.by_name(project.store, "tiny@toy"))
    out = backend.generate(["lazy dog jumps", {"text": "quick brown fox"}, "   "])
    assert len(out) == 3
    first = parse_ranked(out[0]["text"])
    assert len(first) == 3 and first[0][2] == "lazy dog jumps"  # the exact text is its own best match
    assert [r[1] for r in first] == sorted((r[1] for r in first), reverse=True)
    assert {r[2] for r in first} <= set(DOCS)
    assert rank_of(out[1]["text"], "quick brown fox") == 1
    assert out[0]["error"] is None and out[0]["latency_ms"] > 0
    assert out[2] == {"text": None, "error": "empty query", "latency_ms": 0.0}
    # a second backend on the same system reuses the encoded corpus
    again = RetrieverBackend(project, q_systems.by_name(project.store, "tiny@toy"))
    assert again.generate(["lazy dog jumps"])[0]["text"] == out[0]["text"]


def test_backend_accepts_prompt_objects(project, encoder):  # noqa: F811
    from preceptor.db.prompts import Prompt

    add_corpus(project, "toy", DOCS)
    retriever.register(project.store, "r", model=str(encoder), corpus="toy", k=2)
    p = Prompt(1, "hepatic glucose production", None, "val", "retrieval", "g", "c", {}, None, None)
    text = RetrieverBackend(project, q_systems.by_name(project.store, "r")).generate([p])[0]["text"]
    assert rank_of(text, "hepatic glucose production") == 1


def test_unknown_or_empty_corpus_is_a_clear_error(project, encoder):  # noqa: F811
    with pytest.raises(PreceptorError) as err:
        retriever.register(project.store, "r", model=str(encoder), corpus="nope")
    assert err.value.message == "no corpus named 'nope'"
    with project.store.tx():
        q_embed.ensure_corpus(project.store, "empty")
    retriever.register(project.store, "r", model=str(encoder), corpus="empty")
    with pytest.raises(PreceptorError) as err:
        RetrieverBackend(project, q_systems.by_name(project.store, "r"))
    assert err.value.message == "corpus 'empty' of system 'r' holds no documents"


def test_reciprocal_rank_scorer_reads_the_rank_of_the_reference():
    from preceptor.engine.embed.retrievers import ReciprocalRank

    lists = [render_ranked([(0.9, "a"), (0.8, "b"), (0.7, "c")])] * 3 + ["a prose answer about b"]
    assert ReciprocalRank().score(lists, ["a", "c", "zzz", "b"]) == [1.0, pytest.approx(1 / 3), 0.0, None]
