"""Measuring an encoder: retrieval metrics, collapse diagnostics and hard-negative mining.

Everything here works on an :class:`TextEncoder` (a sentence-transformers model plus the
query / passage prefixes it wants) and plain numpy arrays of L2-normalised embeddings, so
the same code serves the training stages, the benchmark and the tests.

Definitions (binary relevance; a query may have several relevant documents):

* ``recall@k`` — relevant documents in the top k / relevant documents, averaged over queries;
* ``mrr@10`` — 1 / rank of the first relevant document within the top 10 (0 if none);
* ``ndcg@10`` — DCG of the top 10 over the ideal DCG.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from preceptor.text import identity

KS = (1, 5, 10)
E5_PREFIXES = ("query: ", "passage: ")




# -- the encoder -----------------------------------------------------------------------

def load_model(path: str | Path, max_seq_length: int | None = None) -> Any:
    """A SentenceTransformer on CPU from a local folder (never downloads for a folder)."""
    from sentence_transformers import SentenceTransformer

    from preceptor.errors import PreceptorError

    p = Path(path)
    try:
        if p.is_dir():
            model = SentenceTransformer(str(p), device="cpu", local_files_only=True)
        else:
            model = SentenceTransformer(str(path), device="cpu")
    except (OSError, ValueError) as exc:
        raise PreceptorError("Cannot load encoder", f"{path}: {exc}",
                             "Give a sentence-transformers folder, or `all-minilm-l6-v2` for the packaged encoder.")
    if max_seq_length:
        model.max_seq_length = max_seq_length
    return model


def detect_prefixes(model: Any, name: str, mode: str = "auto") -> tuple[str, str]:
    """(query prefix, passage prefix) the model wants.

    ``auto``: the prompts saved with the model (``config_sentence_transformers.json``) if it
    names a query prompt, else e5-style ``query: `` / ``passage: `` when the model's name or
    folder says e5, else none. ``e5`` forces them, ``none`` disables them.
    """
    if mode == "none":
        return "", ""
    if mode == "e5":
        return E5_PREFIXES
    prompts = dict(getattr(model, "prompts", None) or {})
    if prompts.get("query"):
        return prompts["query"], prompts.get("document") or prompts.get("passage") or ""
    if re.search(r"(^|[^a-z0-9])(multilingual-)?e5([^a-z0-9]|$)", name.lower()) or "e5-" in name.lower():
        return E5_PREFIXES
    return "", ""


class TextEncoder:
    """Encodes queries and passages with the right prefixes into normalised numpy arrays."""

    def __init__(self, model: Any, query_prefix: str = "", passage_prefix: str = "", batch_size: int = 32) -> None:
        self.model = model
        self.query_prefix = query_prefix
        self.passage_prefix = passage_prefix
        self.batch_size = batch_size
        self._memo: dict[tuple[str, tuple[str, ...]], Any] = {}  # the last two large calls (a corpus), reused

    def _encode(self, texts: Sequence[str], prefix: str) -> Any:
        """Normalised embeddings. The last two calls of 64+ texts are remembered, so evaluation
        and mining with the same (unchanged) model encode a stage's corpus once; build a new
        TextEncoder after the weights change."""
        import numpy as np

        if not texts:
            dim = self.model.get_embedding_dimension() if hasattr(self.model, "get_embedding_dimension") else 1
            return np.zeros((0, dim or 1), dtype=np.float32)
        key = (prefix, tuple(texts))
        if key in self._memo:
            return self._memo[key]
        emb = self.model.encode(list(texts), prompt=prefix or None, batch_size=self.batch_size,
                                normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
        if len(texts) >= 64:
            self._memo[key] = emb
            while len(self._memo) > 2:
                self._memo.pop(next(iter(self._memo)))
        return emb

    def queries(self, texts: Sequence[str]) -> Any:
        return self._encode(texts, self.query_prefix)

    def passages(self, texts: Sequence[str]) -> Any:
        return self._encode(texts, self.passage_prefix)


# -- retrieval metrics -----------------------------------------------------------------

def top_k(q_emb: Any, d_emb: Any, k: int) -> tuple[Any, Any]:
    """(indices, scores) of the k best documents per query, best first."""
    import numpy as np

    sims = q_emb @ d_emb.T
    k = min(k, sims.shape[1])
    idx = np.argpartition(-sims, kth=k - 1, axis=1)[:, :k] if k < sims.shape[1] else np.tile(np.arange(sims.shape[1]), (sims.shape[0], 1))
    part = np.take_along_axis(sims, idx, axis=1)
    order = np.argsort(-part, axis=1, kind="stable")
    return np.take_along_axis(idx, order, axis=1), np.take_along_axis(part, order, axis=1)


def retrieval_metrics(q_emb: Any, d_emb: Any, relevant: Sequence[set[int]], ks: Sequence[int] = KS) -> dict[str, float]:
    """Recall@k, MRR@10 and nDCG@10 of ranking ``d_emb`` for each query (see the module docstring).

    The ranking is ours (one matrix product over embeddings already computed, so a stage's
    corpus is encoded once for evaluation and mining); the measures are sentence-transformers'
    ``InformationRetrievalEvaluator.compute_metrics``. Queries with no relevant document are
    left out (``build_eval_set`` never makes one).
    """
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            from sentence_transformers.sentence_transformer.evaluation import (
                InformationRetrievalEvaluator,
            )
        except ImportError:  # older layout
            from sentence_transformers.evaluation import InformationRetrievalEvaluator

    kept = [i for i, rel in enumerate(relevant) if rel]
    if not kept:
        return {"n_queries": 0.0}
    depth = max(max(ks), 10)
    idx, scores = top_k(q_emb[kept], d_emb, depth)
    n_docs = int(d_emb.shape[0])
    evaluator = InformationRetrievalEvaluator(
        queries={str(i): "" for i in kept}, corpus={str(j): "" for j in range(n_docs)},
        relevant_docs={str(i): {str(j) for j in relevant[i]} for i in kept},
        mrr_at_k=[10], ndcg_at_k=[10], accuracy_at_k=[1], precision_recall_at_k=list(ks), map_at_k=[10],
        write_csv=False, show_progress_bar=False)
    results = [[{"corpus_id": str(j), "score": float(sc)} for j, sc in zip(row, srow, strict=True)]
               for row, srow in zip(idx.tolist(), scores.tolist(), strict=True)]
    m = evaluator.compute_metrics(results)
    out = {f"recall@{k}": float(m["recall@k"][k]) for k in ks}
    out["mrr@10"] = float(m["mrr@k"][10])
    out["ndcg@10"] = float(m["ndcg@k"][10])
    out["n_queries"] = float(len(kept))
    out["n_docs"] = float(n_docs)
    return out


@dataclass(frozen=True)
class EvalSet:
    """Held-out queries of a stage, the corpus they search, and which documents are relevant."""

    queries: list[str]
    docs: list[str]
    relevant: list[set[int]]


def build_eval_set(held_out: Sequence[tuple[str, str]], all_pairs: Sequence[tuple[str, str]], docs: Sequence[str],
                   max_queries: int = 500, seed: int = 0) -> EvalSet:
    """Queries = distinct held-out anchors; relevant = every positive of that anchor in the stage."""
    doc_index = {identity(d): i for i, d in enumerate(docs)}
    positives: dict[str, set[int]] = {}
    for a, p in all_pairs:
        if identity(p) in doc_index:
            positives.setdefault(identity(a), set()).add(doc_index[identity(p)])
    seen: dict[str, str] = {}
    for a, _ in held_out:
        seen.setdefault(identity(a), a)
    keys = sorted(seen)
    if len(keys) > max_queries:
        keys = sorted(random.Random(seed).sample(keys, max_queries))
    keys = [k for k in keys if positives.get(k)]
    return EvalSet([seen[k] for k in keys], list(docs), [positives[k] for k in keys])


def measure(encoder: TextEncoder, es: EvalSet, doc_emb: Any | None = None) -> dict[str, float]:
    if not es.queries:
        return {"n_queries": 0.0}
    if doc_emb is None:
        doc_emb = encoder.passages(es.docs)
    return retrieval_metrics(encoder.queries(es.queries), doc_emb, es.relevant)


# -- collapse diagnostics --------------------------------------------------------------

@dataclass(frozen=True)
class CollapseReport:
    true_mean: float
    true_std: float
    unrelated_mean: float
    unrelated_std: float
    unrelated_p05: float
    unrelated_p95: float
    gap: float
    n_true: int
    n_unrelated: int
    alarm: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        return (f"true pairs {self.true_mean:.3f} ± {self.true_std:.3f} (n={self.n_true}), unrelated "
                f"{self.unrelated_mean:.3f} ± {self.unrelated_std:.3f} (p05–p95 {self.unrelated_p05:.3f}–"
                f"{self.unrelated_p95:.3f}, n={self.n_unrelated}), gap {self.gap:.3f}")


def sample_pairs(pairs: Sequence[tuple[str, str, str]], n: int, seed: int = 0,
                 known_positives: dict[str, set[str]] | None = None) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(true pairs, unrelated pairs) from (anchor, positive, group) rows.

    An unrelated pair joins an anchor with the positive of a row from another group that is
    not a positive of that anchor anywhere in the data (nor in ``known_positives``).
    """
    rng = random.Random(seed)
    rows = list(pairs)
    true = rows if len(rows) <= n else rng.sample(rows, n)
    pos_of: dict[str, set[str]] = {}
    for a, p, _ in rows:
        pos_of.setdefault(identity(a), set()).add(identity(p))
    for a, ps in (known_positives or {}).items():
        pos_of.setdefault(identity(a), set()).update(identity(p) for p in ps)
    unrelated: list[tuple[str, str]] = []
    if len(rows) > 1:
        tries = 0
        while len(unrelated) < n and tries < n * 20:
            tries += 1
            a, _, ga = rows[rng.randrange(len(rows))]
            _, p, gb = rows[rng.randrange(len(rows))]
            if ga == gb or identity(p) in pos_of.get(identity(a), ()):
                continue
            unrelated.append((a, p))
    return [(a, p) for a, p, _ in true], unrelated


def _cos_rows(encoder: TextEncoder, pairs: Sequence[tuple[str, str]]) -> Any:
    import numpy as np

    if not pairs:
        return np.zeros(0, dtype=np.float32)
    q = encoder.queries([a for a, _ in pairs])
    d = encoder.passages([p for _, p in pairs])
    return (q * d).sum(axis=1)


def collapse_diagnostics(encoder: TextEncoder, pairs: Sequence[tuple[str, str, str]], *, sample: int = 500,
                         max_unrelated: float = 0.85, min_gap: float = 0.05, base_gap: float | None = None,
                         seed: int = 0, known_positives: dict[str, set[str]] | None = None) -> CollapseReport:
    """Cosine similarity over true vs random unrelated pairs, and an alarm when they look alike.

    The alarm fires when (1) unrelated pairs average at least ``max_unrelated`` — seed 002's
    collapsed model scored unrelated ingredients 0.91–0.94 —, or (2) the gap between true and
    unrelated pairs is below ``min_gap`` and (when known) below the base model's gap — a
    base model that barely separates the pairs is ignorant, not collapsed, and training
    that leaves it so is not flagged twice —, or (3) the gap shrank to less than half of
    the base model's gap on the same data (``base_gap``).
    """
    import numpy as np

    true, unrelated = sample_pairs(pairs, sample, seed, known_positives)
    t = _cos_rows(encoder, true)
    u = _cos_rows(encoder, unrelated)
    tm = float(t.mean()) if len(t) else float("nan")
    um = float(u.mean()) if len(u) else float("nan")
    gap = tm - um if len(t) and len(u) else float("nan")
    reasons = []
    if len(u) and um >= max_unrelated:
        reasons.append(f"unrelated pairs score {um:.2f} on average (alarm at {max_unrelated:.2f})")
    if len(t) and len(u) and gap < min_gap and (base_gap is None or gap < base_gap):
        reasons.append(f"true pairs score only {gap:.3f} above unrelated ones (alarm below {min_gap:.2f})")
    if base_gap is not None and len(t) and len(u) and base_gap > min_gap and gap < 0.5 * base_gap:
        reasons.append(f"the true-vs-unrelated gap fell from {base_gap:.3f} (base model) to {gap:.3f}")
    alarm = None
    if reasons:
        alarm = ("embedding collapse suspected: " + "; ".join(reasons) +
                 ". Unrelated texts look alike to this model; add negatives or more varied data, "
                 "prefer MultipleNegativesRankingLoss, and keep the previous stage's model.")
    return CollapseReport(
        true_mean=tm, true_std=float(t.std()) if len(t) else float("nan"),
        unrelated_mean=um, unrelated_std=float(u.std()) if len(u) else float("nan"),
        unrelated_p05=float(np.percentile(u, 5)) if len(u) else float("nan"),
        unrelated_p95=float(np.percentile(u, 95)) if len(u) else float("nan"),
        gap=gap, n_true=len(t), n_unrelated=len(u), alarm=alarm,
    )


# -- hard-negative mining --------------------------------------------------------------

def mine_hard_negatives(encoder: TextEncoder | Callable[..., Any], pairs: Sequence[tuple[str, str]], corpus: Sequence[str],
                        *, known_positives: dict[str, set[str]] | None = None, num_negatives: int = 1,
                        max_ratio: float = 0.95, seed: int = 0) -> list[list[str]]:
    """For each (anchor, positive), the ``num_negatives`` corpus documents the encoder ranks
    highest for the anchor that are **not** a true positive of it.

    True positives are every positive of the anchor in ``pairs`` plus ``known_positives``
    (compared case- and whitespace-insensitively), and the anchor's own text. A candidate
    scoring above ``max_ratio`` × the positive's score is skipped as a likely unlabelled
    positive. When too few remain, random non-positive documents fill the list; a pair
    gets fewer negatives only when the corpus holds no other documents.
    """
    rng = random.Random(seed)
    docs: list[str] = []
    doc_norm: list[str] = []
    index: dict[str, int] = {}
    for d in corpus:
        k = identity(d)
        if k not in index:
            index[k] = len(docs)
            docs.append(d)
            doc_norm.append(k)
    for _, p in pairs:
        k = identity(p)
        if k not in index:
            index[k] = len(docs)
            docs.append(p)
            doc_norm.append(k)
    positives: dict[str, set[str]] = {}
    for a, p in pairs:
        positives.setdefault(identity(a), set()).add(identity(p))
    for a, ps in (known_positives or {}).items():
        positives.setdefault(identity(a), set()).update(identity(p) for p in ps)
    anchors: list[str] = []
    a_index: dict[str, int] = {}
    for a, _ in pairs:
        k = identity(a)
        if k not in a_index:
            a_index[k] = len(anchors)
            anchors.append(a)
    if isinstance(encoder, TextEncoder):
        a_emb = encoder.queries(anchors)
        d_emb = encoder.passages(docs)
    else:
        a_emb = encoder(anchors, "query")
        d_emb = encoder(docs, "passage")
    sims = a_emb @ d_emb.T
    depth = min(len(docs), max(num_negatives * 10 + 10, 50))
    order, _ = top_k(a_emb, d_emb, depth)
    out: list[list[str]] = []
    for a, p in pairs:
        ak = identity(a)
        ai = a_index[ak]
        banned = positives.get(ak, set()) | {ak}
        pos_score = float(sims[ai, index[identity(p)]])
        limit = pos_score * max_ratio if pos_score > 0 else math.inf
        chosen: list[int] = []
        for di in order[ai].tolist():
            if len(chosen) >= num_negatives:
                break
            if doc_norm[di] in banned or float(sims[ai, di]) > limit:
                continue
            chosen.append(di)
        if len(chosen) < num_negatives:
            rest = [i for i in range(len(docs)) if doc_norm[i] not in banned and i not in chosen]
            rng.shuffle(rest)
            chosen.extend(rest[: num_negatives - len(chosen)])
        out.append([docs[i] for i in chosen])
    return out
