"""What the loop gained: each trained system against its parent and against the teacher.

``compute(project, GainsOptions(...))`` returns one row per comparison:

* ``ft`` vs its base (the system its run adapted), ``dpo`` vs the ``ft`` system it started
  from, and each trained system vs the teacher;
* **metric-judge win rate**: per item, the child wins when its ROUGE-L F1 against the gold
  reference is higher, loses when lower; equal scores (or identical answers) count half.
  95 % Wilson interval (scipy ``binomtest(...).proportion_ci("wilson")``; the same formula
  with a fractional count when there are odd ties);
* **each metric's mean paired difference** (child − parent, over the items both answered),
  with a percentile bootstrap over prompts (``scipy.stats.bootstrap``);
* **expert and LLM-judge win rates** from the stored votes on pairs of exactly these two
  systems (ties, both-bad and inconsistent count half; clustered votes bootstrap over prompts);
* **share of the teacher gap closed** per metric: (child − parent) / (teacher − parent) over
  the items all three answered, with a paired bootstrap CI (None with a note when the teacher
  is not ahead of the parent);
* ``regression``: the child is worse than its parent (win-rate CI entirely below 50 %);
* ``lineage``: the run behind the child (id, kind, status, data sha256, n items, which
  answers it trained on, its settings) and the parent system.

chrF is computed here with sacrebleu (``chrf`` below) unless ``eval`` registers its own.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from preceptor.errors import PreceptorError

DEFAULT_METRICS = ("rougeL", "chrf", "facet_f1")
WIN_METRIC = "rougeL"
TRAINED_ROLES = ("ft", "dpo")


@dataclass(frozen=True)
class GainsOptions:
    split: str = "val"
    collection: str | None = None
    metrics: tuple[str, ...] = DEFAULT_METRICS
    n_boot: int = 1000
    seed: int = 0
    domain: str | None = None  # None: the [eval] domain

    def __post_init__(self) -> None:
        if self.n_boot < 0:
            raise PreceptorError("Invalid option", f"--n-boot {self.n_boot} must not be negative", "Use e.g. 1000.")
        if WIN_METRIC not in self.metrics:
            raise PreceptorError("Invalid option", f"--metrics must include {WIN_METRIC} (the metric judge's metric)",
                                 f"Add {WIN_METRIC}, e.g. --metrics rougeL,chrf.")


# ----------------------------------------------------------------------------------------------
# arithmetic (pure functions, tested against independent computations)
# ----------------------------------------------------------------------------------------------

def chrf(predictions: Sequence[str], references: Sequence[str]) -> list[float | None]:
    """Sentence chrF (sacrebleu defaults: char order 6, beta 2) on a 0–1 scale."""
    from sacrebleu.metrics import CHRF

    metric = CHRF(word_order=2)  # chrF++, as eval computes it
    return [metric.sentence_score(p or "", [r or ""]).score / 100.0 for p, r in zip(predictions, references, strict=True)]


def wilson_ci(k: float, n: int) -> tuple[float, float] | None:
    """95 % Wilson interval of k successes in n (scipy's for whole k; the same formula for half ties)."""
    if n <= 0:
        return None
    if float(k).is_integer():
        from scipy.stats import binomtest

        ci = binomtest(int(k), n).proportion_ci(confidence_level=0.95, method="wilson")
        return float(ci.low), float(ci.high)
    from preceptor.engine.intervals import wilson

    return wilson(k, n)


def item_outcomes(child: Sequence[float], parent: Sequence[float], same_text: Sequence[bool] | None = None) -> list[float]:
    """1 where the child scores higher, 0 where lower, 0.5 for equal scores or identical answers."""
    same = same_text or [False] * len(child)
    return [0.5 if s or c == p else 1.0 if c > p else 0.0 for c, p, s in zip(child, parent, same, strict=True)]


def win_rate(outcomes: Sequence[float]) -> dict[str, Any]:
    from preceptor.engine.intervals import figure

    n = len(outcomes)
    k = float(sum(outcomes))
    wins = sum(1 for o in outcomes if o == 1.0)
    ties = sum(1 for o in outcomes if o == 0.5)
    return figure(k / n if n else None, n, wilson_ci(k, n), method="wilson", wins=wins, ties=ties, losses=n - wins - ties)


def _boot(data: tuple[Any, ...], statistic: Any, n_boot: int, seed: int) -> tuple[float, float] | None:
    import numpy as np
    from scipy.stats import bootstrap

    n = len(data[0])
    if n < 2 or n_boot <= 0:
        return None
    import warnings

    with warnings.catch_warnings():  # identical values give a degenerate (zero-width) interval, not a warning on screen
        warnings.simplefilter("ignore")
        res = bootstrap(tuple(np.asarray(d, float) for d in data), statistic, n_resamples=n_boot, paired=True,
                        vectorized=True, method="percentile", confidence_level=0.95,
                        random_state=np.random.default_rng(seed))
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return (lo, hi) if math.isfinite(lo) and math.isfinite(hi) else None


def _mean_diff(c: Any, p: Any, axis: int = -1) -> Any:
    return c.mean(axis=axis) - p.mean(axis=axis)


def _gap_share(c: Any, p: Any, t: Any, axis: int = -1) -> Any:
    import numpy as np

    gap = t.mean(axis=axis) - p.mean(axis=axis)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(gap > 0, (c.mean(axis=axis) - p.mean(axis=axis)) / np.where(gap > 0, gap, 1.0), np.nan)


def mean_difference(child: Sequence[float], parent: Sequence[float], *, n_boot: int, seed: int) -> dict[str, Any]:
    """Mean of child − parent over paired items, with a percentile bootstrap CI over prompts."""
    from preceptor.engine.intervals import figure

    n = len(child)
    if n == 0:
        return figure(None, 0)
    value = sum(child) / n - sum(parent) / n
    ci = _boot((child, parent), _mean_diff, n_boot, seed)
    return figure(value, n, ci, method="bootstrap over prompts", child=sum(child) / n, parent=sum(parent) / n)


def gap_closed(child: Sequence[float], parent: Sequence[float], teacher: Sequence[float], *, n_boot: int,
               seed: int) -> dict[str, Any]:
    """(mean child − mean parent) / (mean teacher − mean parent), with a paired bootstrap CI."""
    from preceptor.engine.intervals import figure

    n = len(child)
    if n == 0:
        return figure(None, 0)
    c, p, t = (sum(x) / n for x in (child, parent, teacher))
    if t - p <= 0:
        return figure(None, n, note="the teacher is not ahead of the parent: no gap to close")
    ci = _boot((child, parent, teacher), _gap_share, n_boot, seed)
    return figure((c - p) / (t - p), n, ci, method="bootstrap over prompts")


# ----------------------------------------------------------------------------------------------
# the project's systems
# ----------------------------------------------------------------------------------------------

def _parent(store: Any, system: Any) -> Any:
    from preceptor.db import systems as q_systems

    key = system.meta.get("base_system") if system.role == "ft" else system.meta.get("from_system")
    if not key:
        return None
    try:
        return q_systems.resolve(store, key)
    except PreceptorError:
        return None


def lineage(project: Any, system: Any, parent: Any) -> dict[str, Any]:
    """The run behind a trained system: id, kind, status, data, settings; and the parent system."""
    from preceptor.db import runs as q_runs

    run = q_runs.get(project.store, system.run_id) if system.run_id else None
    cfg = run.config if run else {}
    data = cfg.get("data") or {}
    settings = cfg.get("settings") or {}
    return {
        "system": system.name, "role": system.role, "model": system.model, "adapter": system.adapter,
        "run_id": run.id if run else None, "run_kind": run.kind if run else None, "run_status": run.status if run else None,
        "run_dir": run.dir if run else None, "ended_at": run.ended_at if run else None,
        "data_sha256": data.get("sha256") or system.meta.get("data_sha256"),
        "n_train": data.get("train") or system.meta.get("n_train") or system.meta.get("n_pairs"),
        "n_val": data.get("val"),
        "answers": data.get("sources") or system.meta.get("sources") or settings.get("from_system") or system.meta.get("from_system"),
        "settings": settings,
        "parent": parent.name if parent else None,
        "parent_role": parent.role if parent else None,
    }


def _scores(project: Any, opts: GainsOptions) -> tuple[dict[str, dict[int, dict[str, float | None]]], dict[str, dict[int, str]], dict[str, str]]:
    """{system: {prompt_id: {metric: value}}}, {system: {prompt_id: text}}, {metric: signature}."""
    from preceptor.db import metrics as q_metrics
    from preceptor.db import systems as q_systems
    from preceptor.engine.evaluation import metrics as M
    from preceptor.engine.evaluation.evaluate import prompt_filter, settings

    st = settings(project)
    flt = prompt_filter(None if opts.split == "all" else opts.split, opts.collection)
    ids = [s.id for s in q_systems.all_systems(project.store)]
    rows = [r for r in q_metrics.eval_rows(project.store, flt, ids) if r["gold"] and r["gold"].strip()]
    preds, refs = [r["text"] for r in rows], [r["gold"] for r in rows]
    values: dict[str, list[float | None]] = {}
    signatures: dict[str, str] = {}
    for name in opts.metrics:
        if name == "chrf" and "chrf" not in M.METRICS:
            values[name] = chrf(preds, refs) if rows else []
            signatures[name] = "chrf:sacrebleu chrF++ (char 6, word 2, beta 2)/100"
            continue
        if name not in M.METRICS:
            raise PreceptorError("Unknown metric", f"--metrics: no metric named {name!r}",
                                 f"Use any of chrf, {', '.join(M.METRICS)}.")
        if name in ("facet_f1", "key_terms", "triple_exact", "triple_soft"):
            scorer = M.scorer(name, domain=opts.domain or st.domain)
        else:
            scorer = M.scorer(name)
        signatures[name] = scorer.signature
        values[name] = scorer.score(preds, refs) if rows else []
    by_sys: dict[str, dict[int, dict[str, float | None]]] = defaultdict(dict)
    texts: dict[str, dict[int, str]] = defaultdict(dict)
    for i, r in enumerate(rows):
        by_sys[r["system"]][r["prompt_id"]] = {m: values[m][i] for m in opts.metrics}
        texts[r["system"]][r["prompt_id"]] = r["text"]
    return by_sys, texts, signatures


def _judge_rate(votes: list[Any], child: str, parent: str, *, n_boot: int, seed: int) -> dict[str, Any] | None:
    from preceptor.engine.intervals import share

    per: dict[int, list[float]] = defaultdict(list)
    for v in votes:
        if v.repeat or {v.system_a, v.system_b} != {child, parent} or v.label in ("unparsed", "skip"):
            continue
        per[v.prompt_id].append(1.0 if v.winner_system() == child else 0.0 if v.decisive else 0.5)
    if not per:
        return None
    groups = list(per.values())
    return share([sum(g) for g in groups], [len(g) for g in groups], n_boot=n_boot, seed=seed, min_n=1)


def compute(project: Any, opts: GainsOptions = GainsOptions()) -> dict[str, Any]:
    """Every trained system against its parent and the teacher, on the chosen split (see the module doc)."""
    from preceptor.db import systems as q_systems
    from preceptor.engine.judging.votes import load_votes

    store = project.store
    trained = [s for s in q_systems.all_systems(store) if s.role in TRAINED_ROLES and s.run_id is not None]
    out: dict[str, Any] = {"split": opts.split, "collection": opts.collection, "metrics": list(opts.metrics),
                           "win_metric": WIN_METRIC, "rows": [], "note": None}
    if not trained:
        out["note"] = "no trained systems yet: train one with `preceptor train sft`"
        return out
    teacher = q_systems.latest_with_role(store, "teacher")
    scores, texts, signatures = _scores(project, opts)
    out["signatures"] = signatures
    split = None if opts.split == "all" else opts.split
    votes = {kind: load_votes(project, split=split, collection=opts.collection, judge=kind) for kind in ("expert", "llm")}
    for child in trained:
        parent = _parent(store, child)
        lin = lineage(project, child, parent)
        for other, relation in ((parent, "parent"), (teacher, "teacher")):
            if other is None or other.id == child.id:
                continue
            out["rows"].append(_row(child, other, relation, teacher, scores, texts, votes, lin, opts, signatures))
    if not out["rows"]:
        out["note"] = "the trained systems have no parent or teacher with answers to compare with"
    return out


def _row(child: Any, other: Any, relation: str, teacher: Any, scores: dict[str, dict[int, dict[str, float | None]]],
         texts: dict[str, dict[int, str]], votes: dict[str, list[Any]], lin: dict[str, Any], opts: GainsOptions,
         signatures: dict[str, str]) -> dict[str, Any]:
    cs, ps = scores.get(child.name, {}), scores.get(other.name, {})
    ts = scores.get(teacher.name, {}) if teacher is not None and relation == "parent" else {}
    shared = sorted(set(cs) & set(ps))
    win_items = [pid for pid in shared if cs[pid][WIN_METRIC] is not None and ps[pid][WIN_METRIC] is not None]
    outcomes = item_outcomes([cs[p][WIN_METRIC] for p in win_items], [ps[p][WIN_METRIC] for p in win_items],  # type: ignore[misc]
                             [texts[child.name][p].strip() == texts[other.name][p].strip() for p in win_items])
    wr = win_rate(outcomes)
    metrics: dict[str, Any] = {}
    gap: dict[str, Any] = {}
    for m in opts.metrics:
        both = [p for p in shared if cs[p][m] is not None and ps[p][m] is not None]
        metrics[m] = mean_difference([cs[p][m] for p in both], [ps[p][m] for p in both],  # type: ignore[misc]
                                     n_boot=opts.n_boot, seed=opts.seed)
        if relation == "parent" and teacher is not None:
            three = [p for p in both if p in ts and ts[p][m] is not None]
            gap[m] = gap_closed([cs[p][m] for p in three], [ps[p][m] for p in three], [ts[p][m] for p in three],  # type: ignore[misc]
                                n_boot=opts.n_boot, seed=opts.seed)
    judges = {kind: _judge_rate(v, child.name, other.name, n_boot=opts.n_boot, seed=opts.seed) for kind, v in votes.items()}
    ci = wr.get("ci")
    regression = relation == "parent" and ci is not None and ci[1] < 0.5
    regressed_metrics = [m for m, f in metrics.items() if relation == "parent" and f.get("ci") and f["ci"][1] < 0]
    return {
        "child": child.name, "child_role": child.role, "other": other.name, "other_role": other.role, "relation": relation,
        "n": len(win_items), "win_rate": wr, "metrics": metrics, "gap_closed": gap, "judges": judges,
        "regression": regression, "regressed_metrics": regressed_metrics,
        "lineage": {**lin, "compared_with": other.name, "split": opts.split, "collection": opts.collection,
                    "n_items": len(win_items), "teacher": teacher.name if teacher is not None else None,
                    "metric_signatures": signatures, "n_boot": opts.n_boot, "seed": opts.seed},
    }


# ----------------------------------------------------------------------------------------------
# text rendering (the CLI and the report share it)
# ----------------------------------------------------------------------------------------------

def fmt_fig(f: dict[str, Any] | None, pct: bool = False, signed: bool = False) -> str:
    if not f:
        return "–"
    if f.get("value") is None:
        return f.get("note") or "–"
    scale, unit = (100.0, "%") if pct else (1.0, "")
    sign = "+" if signed else ""
    v = f"{f['value'] * scale:{sign}.1f}{unit}" if pct else f"{f['value']:{sign}.3f}"
    if f.get("ci"):
        lo, hi = f["ci"]
        v += f" [{lo * scale:.1f}, {hi * scale:.1f}]" if pct else f" [{lo:+.3f}, {hi:+.3f}]" if signed else f" [{lo:.3f}, {hi:.3f}]"
    return v


def table_rows(res: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of the gains table (one row per comparison)."""
    metrics = res.get("metrics") or []
    head = ["system", "vs", "n", f"win rate ({res.get('win_metric')}) [95% CI]"]
    head += [f"Δ {m}" for m in metrics] + [f"gap closed {m}" for m in metrics] + ["expert", "llm judge", "flag"]
    rows = []
    for r in res.get("rows", []):
        flag = "REGRESSION" if r["regression"] else ("worse: " + ", ".join(r["regressed_metrics"]) if r["regressed_metrics"] else "")
        rows.append([r["child"], f"{r['other']} ({r['relation']})", str(r["n"]), fmt_fig(r["win_rate"], pct=True)]
                    + [fmt_fig(r["metrics"].get(m), signed=True) for m in metrics]
                    + [fmt_fig(r["gap_closed"].get(m), pct=True) if r["relation"] == "parent" else "" for m in metrics]
                    + [fmt_fig(r["judges"].get("expert"), pct=True), fmt_fig(r["judges"].get("llm"), pct=True), flag])
    return head, rows


def lineage_text(lin: dict[str, Any]) -> str:
    """The lineage of one figure as lines of text (the TUI's lineage view and the report)."""
    settings = lin.get("settings") or {}
    keys = ("preset", "from_system", "base_system", "epochs", "max_steps", "lr", "scheduler", "lora_r", "lora_alpha",
            "lora_targets", "beta", "loss_type", "source", "collection")
    shown = ", ".join(f"{k}={settings[k]}" for k in keys if k in settings)
    return "\n".join([
        f"system {lin.get('system')} ({lin.get('role')}) vs {lin.get('compared_with')}; parent {lin.get('parent')}",
        f"run {lin.get('run_id')} ({lin.get('run_kind')}, {lin.get('run_status')}) ended {lin.get('ended_at')}",
        f"data sha256 {lin.get('data_sha256')}; {lin.get('n_train')} train / {lin.get('n_val')} val examples; "
        f"answers: {lin.get('answers')}",
        f"settings: {shown or 'not recorded'}",
        f"figure: split {lin.get('split')}, collection {lin.get('collection') or 'all'}, n {lin.get('n_items')} items, "
        f"teacher {lin.get('teacher')}, bootstrap {lin.get('n_boot')} (seed {lin.get('seed')})",
        "metrics: " + "; ".join(f"{k} = {v}" for k, v in (lin.get("metric_signatures") or {}).items()),
        f"adapter {lin.get('adapter')}",
    ])
