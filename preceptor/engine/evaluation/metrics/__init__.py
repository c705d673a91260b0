"""Automatic metrics: a registry of scorers, each built once and scoring in batches.

``scorer(name, **opts)`` returns an object with

* ``.name`` – the metric name stored in the ``metrics`` table;
* ``.signature`` – a string naming everything that changes its values (library version,
  encoder, layers, rescaling, domain pack version); the evaluation cache keys on it;
* ``.score(predictions, references) -> list[float | None]`` – one value per pair, in order.
  ``None`` means the metric does not apply to that item (e.g. the reference mentions no
  fact triple); it is stored as NULL and left out of means, never as NaN.

Metrics (all on a 0–1 scale except perplexity):

=================  ==========================================================  =========
name               what                                                        better
=================  ==========================================================  =========
rougeL             ROUGE-L F-measure (rouge-score; Latin script with Porter    higher
                   stemming, Thai words by pythainlp newmm, Korean morphemes
                   by kiwipiepy, other scripts by Unicode words)
bleu               sentence BLEU, exponential smoothing (sacrebleu) / 100;     higher
                   13a tokens for Latin script, Thai / Korean words as for
                   ROUGE-L, intl (char for CJK) for other scripts
chrf               chrF++ (sacrebleu, character 6-grams + word 2-grams) / 100;  higher
                   no segmentation, every language
bertscore_p/r/f1   BERTScore precision / recall / F1 (bert-score, local         higher
                   encoders: English MiniLM for Latin script, multilingual e5
                   for the others; items the encoder cannot read are refused;
                   rescaled only with a baseline)
facet_f1           macro F1 of the reference's facets (domain pack)            higher
key_terms          share of the reference's key terms the prediction mentions  higher
triple_exact       F1 of subject–relation–object triples, exact ids            higher
triple_soft        the same with synonym / group / class matching              higher
ppl                perplexity of the output under a causal LM (the student)    lower
=================  ==========================================================  =========

Text scorers also give ``.via(lang)``: the tokenizer or encoder behind that language's
figures (:mod:`preceptor.engine.evaluation.language` decides each item's language).

Heavy libraries (rouge-score, sacrebleu, bert-score, torch, pythainlp, kiwipiepy) are
imported when a scorer is built or first scores, never when this module is imported.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Protocol

from preceptor.errors import PreceptorError


class Scorer(Protocol):
    name: str
    signature: str

    def score(self, predictions: list[str], references: list[str]) -> list[float | None]: ...


@dataclass(frozen=True)
class MetricInfo:
    name: str
    label: str
    factory: str  # "module:attr"
    higher_is_better: bool = True
    needs_reference: bool = True
    family: str = "text"  # "text" | "domain" | "model"
    opts: dict[str, Any] = field(default_factory=dict)
    lower: float | None = 0.0  # the metric's range: confidence intervals are clipped to it
    upper: float | None = 1.0


_T = "preceptor.engine.evaluation.metrics.text"
_D = "preceptor.engine.evaluation.metrics.domain"
_P = "preceptor.engine.evaluation.metrics.perplexity"

METRICS: dict[str, MetricInfo] = {
    "rougeL": MetricInfo("rougeL", "ROUGE-L", f"{_T}:RougeL"),
    "bleu": MetricInfo("bleu", "BLEU", f"{_T}:Bleu"),
    "chrf": MetricInfo("chrf", "chrF++", f"{_T}:Chrf"),
    "bertscore_p": MetricInfo("bertscore_p", "BERTScore P", f"{_T}:BertScore", opts={"which": "p"}),
    "bertscore_r": MetricInfo("bertscore_r", "BERTScore R", f"{_T}:BertScore", opts={"which": "r"}),
    "bertscore_f1": MetricInfo("bertscore_f1", "BERTScore F1", f"{_T}:BertScore", opts={"which": "f1"}),
    "facet_f1": MetricInfo("facet_f1", "MOA facet F1", f"{_D}:FacetF1", family="domain"),
    "key_terms": MetricInfo("key_terms", "Key-term coverage", f"{_D}:KeyTerms", family="domain"),
    "triple_exact": MetricInfo("triple_exact", "Triple match (exact)", f"{_D}:TripleMatch", family="domain", opts={"soft": False}),
    "triple_soft": MetricInfo("triple_soft", "Triple match (soft)", f"{_D}:TripleMatch", family="domain", opts={"soft": True}),
    "retrieval_rr": MetricInfo("retrieval_rr", "Reciprocal rank of the reference document",
                               "preceptor.engine.embed.retrievers:ReciprocalRank", family="retrieval"),
    "ppl": MetricInfo("ppl", "Perplexity", f"{_P}:Perplexity", higher_is_better=False, needs_reference=False, family="model",
                      lower=1.0, upper=None),
}

# metrics computed together by one scorer (BERTScore gives P, R and F1 in one pass)
GROUPS: dict[str, tuple[str, ...]] = {"bertscore": ("bertscore_p", "bertscore_r", "bertscore_f1")}


def info(name: str) -> MetricInfo:
    try:
        return METRICS[name]
    except KeyError:
        raise PreceptorError("Unknown metric", f"no metric named {name!r}", f"Known metrics: {', '.join(METRICS)}.")


def names() -> list[str]:
    return list(METRICS)


def scorer(name: str, **opts: Any) -> Any:
    """Build the scorer for metric ``name`` once; call ``.score`` on whole batches."""
    mi = info(name)
    module, attr = mi.factory.split(":")
    cls = getattr(importlib.import_module(module), attr)
    return cls(**{**mi.opts, **opts})
