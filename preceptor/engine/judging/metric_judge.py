"""The metric judge: per pair, the answer scoring higher on an automatic metric wins.

``preceptor judge metric --metric rougeL [--pairs FILTER]`` scores both answers of each
pair against the prompt's reference with :func:`preceptor.engine.evaluation.metrics.scorer` and
records a vote of judge kind ``metric`` (``judge_id`` = the metric name): ``win`` for the
better score, ``tie`` when the scores are equal. The confidence is the normalised score
gap ``|a - b| / max(|a|, |b|)``. Nothing is shown to a metric, so ``left_output_id`` is
empty. Pairs without a reference (for metrics that need one) or with an unscorable answer
are counted, not voted.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from preceptor.db import judging as q
from preceptor.engine.events import Done, EventStream, Log, Progress, bulk_writes, check_cancel
from preceptor.engine.judging.pairs import PairFilter, pairs_to_judge

if TYPE_CHECKING:
    from preceptor.project import Project

BATCH = 256
EPS = 1e-9


@dataclass(frozen=True)
class MetricJudgeOptions:
    metric: str = "rougeL"
    pairs: PairFilter = PairFilter()
    force: bool = False
    limit: int | None = None


def metric_vote(score_a: float, score_b: float, higher_is_better: bool = True) -> tuple[str, int | None, float]:
    """("win", 0 for a / 1 for b, confidence) or ("tie", None, 0.0)."""
    if abs(score_a - score_b) <= EPS:
        return "tie", None, 0.0
    a_wins = (score_a > score_b) == higher_is_better
    scale = max(abs(score_a), abs(score_b))
    conf = min(1.0, abs(score_a - score_b) / scale) if scale > 0 else 0.0
    return "win", 0 if a_wins else 1, conf


@bulk_writes
def judge_metric(project: Project, opts: MetricJudgeOptions = MetricJudgeOptions(),
                 cancel: threading.Event | None = None) -> EventStream:
    from preceptor.engine.evaluation import metrics
    from preceptor.engine.evaluation.evaluate import build_scorer
    from preceptor.engine.evaluation.evaluate import settings as eval_settings

    t0 = time.monotonic()
    info = metrics.info(opts.metric)
    store = project.store
    pairs, skipped, existing = pairs_to_judge(store, opts.pairs, "metric", info.name, force=opts.force)
    no_ref = [p for p in pairs if info.needs_reference and not (p["reference"] or "").strip()]
    pairs = [p for p in pairs if not (info.needs_reference and not (p["reference"] or "").strip())]
    if opts.limit:
        pairs = pairs[: opts.limit]
    yield Log("info", f"metric judge {info.name}: {len(pairs)} pairs" + (f", {skipped} already judged" if skipped else ""))
    if no_ref:
        yield Log("warning", f"{len(no_ref)} pairs have no reference answer: not judged by {info.name}")
    counts = {"decisive": 0, "tie": 0, "unscored": 0}
    total = len(pairs)
    yield Progress(0, total, info.name)
    scorer = build_scorer(info.name, eval_settings(project)) if pairs else None
    signature = getattr(scorer, "signature", info.name)
    for start in range(0, total, BATCH):
        check_cancel(cancel)
        chunk = pairs[start:start + BATCH]
        preds = [p["text_a"] or "" for p in chunk] + [p["text_b"] or "" for p in chunk]
        refs = [p["reference"] or "" for p in chunk] * 2
        scores = scorer.score(preds, refs)
        rows = []
        for i, p in enumerate(chunk):
            sa, sb = scores[i], scores[i + len(chunk)]
            if sa is None or sb is None:
                counts["unscored"] += 1
                continue
            kind, winner, conf = metric_vote(float(sa), float(sb), info.higher_is_better)
            counts["decisive" if kind == "win" else "tie"] += 1
            rows.append(dict(pair_id=p["id"], judge_kind="metric", judge_id=info.name, left_output_id=None,
                             winner_output_id=(p["output_a"], p["output_b"])[winner] if winner is not None else None,
                             verdict=kind, confidence=conf, supersedes=existing.get(p["id"]) if opts.force else None,
                             meta={"score_a": float(sa), "score_b": float(sb), "signature": signature}))
        q.insert_judgments(store, rows)
        yield Progress(min(start + BATCH, total), total, info.name)
    if pairs:
        from preceptor.engine.judging.queue import refresh_priorities
        from preceptor.engine.judging.settings import JudgeSettings

        refresh_priorities(store, project.section("judge", JudgeSettings), [p["id"] for p in pairs])
    yield Done({"metric": info.name, "pairs": counts["decisive"] + counts["tie"], **counts, "no_reference": len(no_ref),
                "skipped_existing": skipped, "seconds": round(time.monotonic() - t0, 2)})
