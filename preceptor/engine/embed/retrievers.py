"""Retriever systems: an encoder plus a corpus, answering a query with its ranked top-k list.

A retriever is a row in ``systems`` with role ``retriever`` and backend ``retriever``:
``model`` is the encoder folder and ``params`` hold ``corpus`` (a name in ``corpora``),
``k``, ``query_prefix`` and ``passage_prefix``. The generation engine calls
:class:`RetrieverBackend` for it like any other backend; each output is the rendered
ranked list (``render_ranked``), stored as an ordinary output, so pairs of two retrievers
(e.g. the base encoder vs the last curriculum stage) are made, judged, counted and exported
by the same code as LLM answers. :func:`rank_of` reads back the rank of a known relevant
document from such an output (a metric judge's signal).
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from preceptor.errors import PreceptorError

if TYPE_CHECKING:
    from preceptor.project import Project

DEFAULT_K = 5
_LINE = re.compile(r"^\s*(\d+)\.\s+\[(-?\d+(?:\.\d+)?)\]\s?(.*)$")
_CACHE: OrderedDict[tuple[Any, ...], tuple[Any, Any, list[str]]] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 4


def render_ranked(items: list[tuple[float, str]]) -> str:
    """``1. [0.812] text`` per line, best first (newlines inside a document become spaces)."""
    return "\n".join(f"{i}. [{score:.3f}] {' '.join(text.split())}" for i, (score, text) in enumerate(items, 1))


def parse_ranked(text: str) -> list[tuple[int, float, str]]:
    """(rank, score, document) from a rendered list; lines that are not list items are ignored."""
    out = []
    for line in text.splitlines():
        m = _LINE.match(line)
        if m:
            out.append((int(m.group(1)), float(m.group(2)), m.group(3).strip()))
    return out


def rank_of(text: str, relevant: str | list[str]) -> int | None:
    """1-based rank of the first relevant document in a rendered list (None if absent)."""
    from preceptor.text import identity

    wanted = {identity(r) for r in ([relevant] if isinstance(relevant, str) else relevant)}
    for rank, _, doc in parse_ranked(text):
        if identity(doc) in wanted:
            return rank
    return None


def register(store: Any, name: str, *, model: str, corpus: str, k: int = DEFAULT_K, query_prefix: str = "",
             passage_prefix: str = "", run_id: int | None = None, meta: dict[str, Any] | None = None) -> Any:
    """Create or update a retriever system (role and backend ``retriever``)."""
    from preceptor.db import embed as q_embed
    from preceptor.db import systems as q_systems

    if not q_embed.corpus_exists(store, corpus):
        known = ", ".join(q_embed.corpora(store)) or "none yet"
        raise PreceptorError("Unknown corpus", f"no corpus named {corpus!r}",
                             f"Known corpora: {known}. Import pairs for a stage (`preceptor import-pairs FILE --stage NAME`) to make one.")
    params = {"corpus": corpus, "k": int(k), "query_prefix": query_prefix, "passage_prefix": passage_prefix}
    return q_systems.upsert(store, name, role="retriever", backend="retriever", model=str(model), params=params,
                            run_id=run_id, meta=meta or {})


def _prompt_text(p: Any) -> str | None:
    if isinstance(p, str):
        return p
    if isinstance(p, dict):
        return p.get("text") or p.get("prompt")
    return getattr(p, "text", None)


class RetrieverBackend:
    """Answers query prompts with a retriever system's ranked top-k documents."""

    def __init__(self, project: Project, system: Any, *, batch_size: int = 32) -> None:
        from preceptor.db import embed as q_embed

        self.project = project
        self.system = system
        params = dict(system.params or {})
        self.corpus = params.get("corpus")
        self.k = int(params.get("k") or DEFAULT_K)
        self.query_prefix = params.get("query_prefix") or ""
        self.passage_prefix = params.get("passage_prefix") or ""
        self.batch_size = batch_size
        if not system.model:
            raise PreceptorError("Retriever without a model", f"system {system.name!r} names no encoder folder",
                                 "Re-create it with `preceptor train embed`, or set its model to a sentence-transformers folder.")
        if not self.corpus:
            raise PreceptorError("Retriever without a corpus", f"system {system.name!r} has no 'corpus' parameter",
                                 "Give it params.corpus naming a corpus (one exists per embedding stage).")
        self.docs = [t for _, t in q_embed.corpus_docs(project.store, self.corpus)]
        if not self.docs:
            raise PreceptorError("Empty corpus", f"corpus {self.corpus!r} of system {system.name!r} holds no documents",
                                 f"Import pairs into stage {self.corpus!r} with `preceptor import-pairs FILE --stage {self.corpus}`.")
        self._encoder: Any = None
        self._doc_emb: Any = None

    def _path(self) -> str:
        p = Path(self.system.model)
        if p.is_dir():
            return str(p)
        from preceptor.engine import models

        return str(models.encoder_path(self.system.model))

    def _prepare(self) -> None:
        if self._encoder is not None:
            return
        from preceptor.engine.embed.retrieval import TextEncoder, load_model

        path = self._path()
        try:
            stamp = Path(path, "config.json").stat().st_mtime
        except OSError:
            stamp = 0.0
        key = (path, stamp, self.corpus, len(self.docs), self.query_prefix, self.passage_prefix)
        with _CACHE_LOCK:
            hit = _CACHE.get(key)
            if hit is not None:
                _CACHE.move_to_end(key)
        if hit is not None and hit[2] == self.docs:
            self._encoder, self._doc_emb = hit[0], hit[1]
            return
        enc = TextEncoder(load_model(path), self.query_prefix, self.passage_prefix, self.batch_size)
        emb = enc.passages(self.docs)
        with _CACHE_LOCK:
            _CACHE[key] = (enc, emb, list(self.docs))
            while len(_CACHE) > _CACHE_SIZE:
                _CACHE.popitem(last=False)
        self._encoder, self._doc_emb = enc, emb

    def generate(self, prompts: list[Any]) -> list[dict[str, Any]]:
        """One result per prompt: ``{"text": ranked list, "error": None, "latency_ms": ...}``."""
        from preceptor.engine.embed.retrieval import top_k

        self._prepare()
        results: list[dict[str, Any]] = [{"text": None, "error": "empty query", "latency_ms": 0.0} for _ in prompts]
        todo = [(i, t) for i, t in enumerate(_prompt_text(p) for p in prompts) if t and t.strip()]
        if not todo:
            return results
        t0 = time.perf_counter()
        q = self._encoder.queries([t for _, t in todo])
        idx, scores = top_k(q, self._doc_emb, self.k)
        per = (time.perf_counter() - t0) * 1000.0 / len(todo)
        for row, (i, _) in enumerate(todo):
            items = [(float(s), self.docs[d]) for d, s in zip(idx[row].tolist(), scores[row].tolist(), strict=True)]
            results[i] = {"text": render_ranked(items), "error": None, "latency_ms": per}
        return results


class ReciprocalRank:
    """Metric scorer: 1 / rank of the reference document in a retriever's ranked list.

    0.0 when the reference is not listed; None for an answer that is not a ranked list
    (an LLM's prose is not scored). Meant for the metric judge (``retrieval_rr``): of two
    retrievers, the one that ranks the known relevant document higher wins.
    """

    name = "retrieval_rr"
    signature = "retrieval_rr:v1"

    def __init__(self, **_: Any) -> None:
        pass

    def score(self, predictions: list[str], references: list[str]) -> list[float | None]:
        out: list[float | None] = []
        for pred, ref in zip(predictions, references, strict=True):
            if not pred or not parse_ranked(pred) or not ref:
                out.append(None)
                continue
            rank = rank_of(pred, ref)
            out.append(0.0 if rank is None else 1.0 / rank)
        return out
