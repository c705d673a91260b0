"""Automatic evaluation: score every output against its reference and store the values.

``run_eval(project, EvalOptions(...))`` is an event generator (``preceptor eval``): it
picks the outputs (systems × prompts of a split / collection), the reference (``gold`` =
the prompt's reference; ``teacher`` or any system name = that system's output for the same
prompt), and computes each metric of :mod:`preceptor.engine.evaluation.metrics` in batches with one
scorer per metric. Values land in ``metrics`` keyed by (output, metric, reference) with a
cache key (metric signature + texts) in ``meta``: a rerun scores only what changed;
``force`` recomputes everything.

The summary helpers (:func:`system_table`, :func:`win_rate`, :func:`per_row`) read stored
values only; the report and the CLI use them.
"""

from __future__ import annotations

import hashlib
import math
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from preceptor.config import setting
from preceptor.db import metrics as q
from preceptor.db import systems as q_systems
from preceptor.db.prompts import PromptFilter
from preceptor.engine.evaluation import metrics as M
from preceptor.engine.evaluation.language import LANG_NAMES, pair_language
from preceptor.engine.events import Done, EventStream, Log, Progress, bulk_writes, check_cancel
from preceptor.engine.intervals import mean_ci, wilson
from preceptor.errors import PreceptorError

if TYPE_CHECKING:
    from preceptor.project import Project

DEFAULT_METRICS = ["rougeL", "bleu", "chrf", "bertscore_f1", "facet_f1", "key_terms", "triple_exact", "triple_soft", "ppl"]


@dataclass
class EvalSettings:
    """The ``[eval]`` table of preceptor.toml."""

    metrics: list[str] = setting(list(DEFAULT_METRICS), "Metrics `preceptor eval` computes (bertscore_f1 also stores P and R).")
    reference: str = setting("gold", "What outputs are compared with: gold (the prompt's reference), teacher, or a system name.")
    split: str = setting("val,test", "Splits evaluated: train, val, test, a comma list, or all.")
    domain: str = setting("pharma", "Domain pack for facet, key-term and triple metrics (a packaged name or a pack folder).")
    bertscore_encoder: str = setting("all-minilm-l6-v2", "BERTScore encoder for Latin-script items: the packaged encoder or a local folder.")
    bertscore_multilingual: str = setting("multilingual-e5-small", "BERTScore encoder for Thai, Korean and every other non-Latin script (empty: bertscore_encoder for every script).")
    bertscore_layers: int = setting(0, "Layer of bertscore_encoder BERTScore uses (0 = its last layer; the other encoders use their last layer).")
    bertscore_encoders: dict[str, str] = setting({}, "Per-language encoders, e.g. { th = \"/models/thai-encoder\" } (en, th, ko, other); they win over the two above.")
    bertscore_max_unknown: float = setting(0.05, "Refuse BERTScore for an item when its encoder's tokenizer maps more than this share of a text's characters to the unknown token.")
    bertscore_baselines: dict[str, str] = setting({}, "Per-language rescaling baseline files (bert-score LAYER,P,R,F format).")
    batch_size: int = setting(64, "Items per scoring batch.")
    ppl_model: str = setting("smollm2-135m-instruct", "Causal LM whose perplexity of each output is measured (the student).")
    ppl_batch_size: int = setting(8, "Outputs per perplexity forward pass.")
    ppl_max_tokens: int = setting(512, "Longest prompt + output (tokens) for perplexity; longer prompts are cut on the left.")
    threads: int = setting(0, "Torch threads for BERTScore and perplexity (0 = $PRECEPTOR_THREADS / $OMP_NUM_THREADS / 1).")
    win_metric: str = setting("rougeL", "Metric that picks the per-item winner in win-rate tables.")
    tie_margin: float = setting(0.0, "Differences up to this margin count as a tie in win rates.")
    seed: int = setting(0, "Seed for sampled win rates and report examples.")

    def __post_init__(self) -> None:
        unknown = [m for m in self.metrics if m not in M.METRICS]
        if unknown:
            raise ValueError(f"metrics: unknown metric {unknown[0]!r} (known: {', '.join(M.METRICS)})")
        if self.batch_size < 1 or self.ppl_batch_size < 1:
            raise ValueError("batch sizes must be at least 1")
        if self.win_metric not in M.METRICS:
            raise ValueError(f"win_metric: unknown metric {self.win_metric!r}")
        if self.tie_margin < 0:
            raise ValueError("tie_margin must be >= 0")
        if not 0.0 <= self.bertscore_max_unknown <= 1.0:
            raise ValueError("bertscore_max_unknown must be between 0 and 1")
        bad = [k for k in (*self.bertscore_encoders, *self.bertscore_baselines) if k not in ("en", "th", "ko", "other")]
        if bad:
            raise ValueError(f"bertscore language {bad[0]!r} is not one of en, th, ko, other")


@dataclass
class EvalOptions:
    systems: Sequence[str] | None = None
    reference: str | None = None
    split: str | None = None
    collection: str | None = None
    metrics: Sequence[str] | None = None
    force: bool = False
    limit: int | None = None


def settings(project: Project) -> EvalSettings:
    return project.section("eval", EvalSettings)


def prompt_filter(split: str | None, collection: str | None, limit: int | None = None) -> PromptFilter:
    return PromptFilter(split=split, collections=[collection] if collection else None, limit=limit)


def _describe(flt: PromptFilter) -> str:
    parts = [f"split {flt.split or 'all'}"]
    if flt.collections:
        parts.append(f"collection {', '.join(flt.collections)}")
    return ", ".join(parts)


def resolve_reference(project: Project, reference: str, flt: PromptFilter, rows: list[dict[str, Any]] | None = None
                      ) -> tuple[dict[int, str], str | None]:
    """{prompt_id: reference text} for the selected prompts, and the reference system's name (None for gold)."""
    store = project.store
    if reference == "gold":
        from preceptor.db import prompts as q_prompts

        refs = {p.id: p.reference for p in q_prompts.select(store, flt) if p.reference and p.reference.strip()}
        if not refs:
            n = len(q_prompts.select(store, flt))
            raise PreceptorError(
                "No references",
                f"none of the {n} selected prompts ({_describe(flt)}) has a gold reference",
                "Import a file with a reference column (`preceptor import FILE --reference-col NAME`), "
                "or compare with the teacher: `preceptor eval --reference teacher` after generating its outputs.",
            )
        return refs, None
    system = q_systems.resolve(store, reference)
    refs = {r["prompt_id"]: r["text"] for r in q.eval_rows(store, flt, [system.id]) if r["text"] and r["text"].strip()}
    if not refs:
        raise PreceptorError(
            "No references",
            f"system {system.name!r} has no outputs on the selected prompts ({_describe(flt)}) to compare with",
            f"Generate them first: `preceptor generate --system {system.name}`, or use --reference gold.",
        )
    return refs, system.name


def _key(signature: str, *texts: str) -> str:
    h = hashlib.sha1(signature.encode())
    for t in texts:
        h.update(b"\x00")
        h.update((t or "").encode("utf-8", "surrogatepass"))
    return h.hexdigest()[:20]


def _groups(names: Sequence[str]) -> list[tuple[str, tuple[str, ...]]]:
    """Metric names -> (scorer name, stored names) units; BERTScore P/R/F1 share one pass."""
    out: list[tuple[str, tuple[str, ...]]] = []
    seen: set[str] = set()
    for n in names:
        M.info(n)
        if n.startswith("bertscore_"):
            if "bertscore" not in seen:
                seen.add("bertscore")
                out.append(("bertscore_f1", M.GROUPS["bertscore"]))
        elif n not in seen:
            seen.add(n)
            out.append((n, (n,)))
    return out


def build_scorer(name: str, st: EvalSettings) -> Any:
    if name.startswith("bertscore_"):
        return M.scorer(name, encoder=st.bertscore_encoder, num_layers=st.bertscore_layers or None,
                        encoders=st.bertscore_encoders or None, baselines=st.bertscore_baselines or None,
                        multilingual=st.bertscore_multilingual or None, max_unknown=st.bertscore_max_unknown,
                        batch_size=st.batch_size)
    if name in ("facet_f1", "key_terms", "triple_exact", "triple_soft"):
        return M.scorer(name, domain=st.domain)
    if name == "ppl":
        return M.scorer(name, model=st.ppl_model, batch_size=st.ppl_batch_size, max_tokens=st.ppl_max_tokens,
                        threads=st.threads or None)
    return M.scorer(name)


@bulk_writes
def run_eval(project: Project, opts: EvalOptions = EvalOptions(), cancel: threading.Event | None = None,
             st: EvalSettings | None = None) -> EventStream:
    """Score outputs and store the values (see the module doc).

    Done summary: ``computed`` / ``cached`` (item values, all metrics), ``by_metric`` (the
    same per metric), ``outputs``, ``reference``, ``reference_system``, ``split``,
    ``bertscore_rescaled`` ({lang: bool}) and ``systems`` (per-system means, as
    :func:`system_table`).
    """
    st = st or settings(project)
    store = project.store
    reference = opts.reference or st.reference
    split = opts.split or st.split
    names = list(opts.metrics or st.metrics)
    flt = prompt_filter(split, opts.collection, opts.limit)
    ref_texts, ref_system = resolve_reference(project, reference, flt)

    if opts.systems:
        systems = [q_systems.resolve(store, s) for s in opts.systems]
    else:
        systems = [q_systems.get(store, sid) for sid, _, _ in q.systems_with_outputs(store, flt)]
        systems = [s for s in systems if s is not None and s.name != ref_system]
    if not systems:
        raise PreceptorError("Nothing to evaluate", f"no system has outputs on the selected prompts ({_describe(flt)})",
                             "Generate outputs first: `preceptor generate --system base`.")
    rows = q.eval_rows(store, flt, [s.id for s in systems if s.name != ref_system])
    rows_ref = [r for r in rows if r["prompt_id"] in ref_texts]
    if not rows_ref:
        raise PreceptorError(
            "Nothing to evaluate",
            f"the systems {', '.join(s.name for s in systems)} have no outputs on prompts with a {reference} reference ({_describe(flt)})",
            "Generate outputs for those prompts, or choose another --split / --reference.",
        )
    yield Log("info", f"Evaluating {len(rows_ref)} outputs of {len({r['system'] for r in rows_ref})} systems "
                      f"against {reference}{f' ({ref_system})' if ref_system and ref_system != reference else ''}, {_describe(flt)}.")

    units = _groups(names)
    total = sum(len(rows if n == "ppl" else rows_ref) for n, _ in units)
    done = 0
    computed: dict[str, int] = {}
    hits: dict[str, int] = {}
    rescaled_langs: dict[str, bool] = {}
    via: dict[str, dict[str, str]] = {}  # metric -> language -> the tokenizer / encoder behind its figures
    refused: dict[str, int] = {}  # language -> BERTScore items refused (encoder cannot read the script)
    t0 = time.monotonic()
    chunk = max(1, st.batch_size * 4)
    for name, stored in units:
        check_cancel(cancel)
        sc = build_scorer(name, st)
        reffree = not M.info(name).needs_reference
        ref_key = q.NO_REFERENCE if reffree else reference
        todo_rows = rows if reffree else rows_ref
        keys = {r["output_id"]: (_key(sc.signature, r["text"], r["prompt"]) if reffree
                                 else _key(sc.signature, r["text"], ref_texts[r["prompt_id"]])) for r in todo_rows}
        have = q.cached(store, list(keys), stored[-1], ref_key)
        todo = [r for r in todo_rows if opts.force or have.get(r["output_id"], (None, {}))[1].get("key") != keys[r["output_id"]]]
        hits[name if len(stored) == 1 else "bertscore"] = len(todo_rows) - len(todo)
        computed[name if len(stored) == 1 else "bertscore"] = len(todo)
        done += len(todo_rows) - len(todo)
        yield Progress(done, total, f"{name}: {len(todo_rows) - len(todo)} cached")
        if name == "ppl" or name.startswith("bertscore"):
            from preceptor.engine.models import set_threads

            set_threads(st.threads or None)
        # perplexity is slow: report often; BERTScore sorts texts by length per call: large calls pad least
        step = max(1, st.ppl_batch_size * 2) if reffree else (chunk * 16 if len(stored) > 1 else chunk)
        for i in range(0, len(todo), step):
            check_cancel(cancel)
            part = todo[i:i + step]
            preds = [r["text"] or "" for r in part]
            out_rows: list[tuple[int, str, str, float | None, dict[str, Any] | None]] = []
            if len(stored) > 1:  # BERTScore P/R/F1
                res = sc.score_all(preds, [ref_texts[r["prompt_id"]] for r in part])
                for j, r in enumerate(part):
                    lang = res.lang[j]
                    how = via.setdefault("bertscore", {}).setdefault(lang, sc.via(lang))
                    meta = {"key": keys[r["output_id"]], "lang": lang, "rescaled": res.rescaled[j],
                            "ref_system": ref_system, "via": how}
                    if res.skipped[j]:
                        meta["refused"] = f"{res.unknown[j]:.0%} of the text maps to the encoder's unknown token"
                        refused[lang] = refused.get(lang, 0) + 1
                    rescaled_langs[lang] = res.rescaled[j]
                    for nm, vals in zip(stored, (res.p, res.r, res.f1), strict=True):
                        out_rows.append((r["output_id"], nm, ref_key, vals[j], meta))
            elif reffree:
                vals = sc.score(preds, None, prompts=[r["prompt"] for r in part])
                how = via.setdefault(name, {}).setdefault("any", sc.via("any"))
                for r, v in zip(part, vals, strict=True):
                    out_rows.append((r["output_id"], name, ref_key, v, {"key": keys[r["output_id"]], "via": how}))
            else:
                refs = [ref_texts[r["prompt_id"]] for r in part]
                vals = sc.score(preds, refs)
                for r, v, ref in zip(part, vals, refs, strict=True):
                    lang = pair_language(r["text"], ref)
                    how = via.setdefault(name, {}).setdefault(lang, sc.via(lang))
                    out_rows.append((r["output_id"], name, ref_key, _finite(v),
                                     {"key": keys[r["output_id"]], "ref_system": ref_system, "lang": lang, "via": how}))
            q.upsert_many(store, out_rows)
            done += len(part)
            yield Progress(done, total, name)
        for lang, how in sorted(via.get("bertscore" if name.startswith("bertscore") else name, {}).items()) if todo else ():
            label = "BERTScore" if name.startswith("bertscore") else M.info(name).label
            yield Log("info", f"{label} [{LANG_NAMES.get(lang, lang)}]: {how}.")
        if name.startswith("bertscore"):
            for lang, k in sorted(refused.items()):
                folder, _, _ = sc.route(lang)
                yield Log("warning", f"BERTScore refused {k} {LANG_NAMES.get(lang, lang)} item{'s' if k != 1 else ''}: "
                                     f"the encoder {folder} maps more than {st.bertscore_max_unknown:.0%} of the text to its "
                                     f"unknown token (no value stored; set [eval] bertscore_multilingual or bertscore_encoders).")

    table = system_table(project, reference=reference, split=split, collection=opts.collection,
                         systems=[s.name for s in systems if s.name != ref_system], metrics=_stored_names(names))
    yield Done({
        "reference": reference, "reference_system": ref_system, "split": split, "collection": opts.collection,
        "outputs": len(rows_ref), "computed": sum(computed.values()), "cached": sum(hits.values()),
        "by_metric": {"computed": computed, "cached": hits}, "seconds": round(time.monotonic() - t0, 2),
        "bertscore_rescaled": rescaled_langs, "bertscore_refused": refused, "via": via, "systems": table,
    })


def _finite(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


def _stored_names(names: Sequence[str]) -> list[str]:
    out: list[str] = []
    for _n, stored in _groups(names):
        out.extend(stored)
    return out


# --- statistics over stored values ---------------------------------------------------------


def _selected(project: Project, reference: str, split: str | None, collection: str | None,
              systems: Sequence[str] | None) -> tuple[list[dict[str, Any]], dict[int, dict[str, float | None]]]:
    store = project.store
    flt = prompt_filter(split, collection)
    if systems:
        ids = [q_systems.resolve(store, s).id for s in systems]
    else:
        ids = [sid for sid, _, _ in q.systems_with_outputs(store, flt)]
    rows = q.eval_rows(store, flt, ids)
    values = q.all_values(store, [r["output_id"] for r in rows], reference)
    rows = [r for r in rows if r["output_id"] in values]
    return rows, values


def system_table(project: Project, *, reference: str, split: str | None = "val,test", collection: str | None = None,
                 systems: Sequence[str] | None = None, metrics: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Per system: {"system", "n_outputs", "metrics": {name: mean/lo/hi/n}, "via": {name: [tokenizer / encoder, ...]}}
    from stored values ("via" names what is behind each figure, one entry per language route)."""
    rows, values = _selected(project, reference, split, collection, systems)
    by_system: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_system.setdefault(r["system"], []).append(r)
    present = {n for v in values.values() for n in v}
    names = [m for m in (metrics or M.names()) if m in present]
    out = []
    for system, rs in by_system.items():
        entry: dict[str, Any] = {"system": system, "n_outputs": len(rs), "metrics": {}, "via": {}}
        for m in names:
            vals = [values[r["output_id"]][m] for r in rs if values[r["output_id"]].get(m) is not None]
            mi = M.info(m)
            entry["metrics"][m] = mean_ci(vals, lower=mi.lower, upper=mi.upper)  # type: ignore[arg-type]
            metas = q.metas(project.store, [r["output_id"] for r in rs], m, reference if mi.needs_reference else q.NO_REFERENCE)
            entry["via"][m] = sorted({(f"{LANG_NAMES[mt['lang']]}: " if mt.get("lang") in LANG_NAMES else "") + str(mt["via"])
                                      for mt in metas.values() if mt.get("via")})
        out.append(entry)
    return out


def win_rate(project: Project, a: str, b: str, *, metric: str, reference: str, split: str | None = "val,test",
             collection: str | None = None, n: int | None = None, seed: int = 0, margin: float = 0.0) -> dict[str, Any]:
    """Per-item winner between systems ``a`` and ``b`` by ``metric`` (ties within ``margin``).

    ``win_rate`` is a's wins plus half its ties over n, with a Wilson 95 % interval. With
    ``n`` the items are a reproducible sample (``seed``) of the items both systems share.
    """
    mi = M.info(metric)
    store = project.store
    flt = prompt_filter(split, collection)
    sa, sb = q_systems.resolve(store, a), q_systems.resolve(store, b)
    rows = q.eval_rows(store, flt, [sa.id, sb.id])
    out_a = {r["prompt_id"]: r["output_id"] for r in rows if r["system_id"] == sa.id}
    out_b = {r["prompt_id"]: r["output_id"] for r in rows if r["system_id"] == sb.id}
    va = q.values_for_outputs(store, list(out_a.values()), metric, reference)
    vb = q.values_for_outputs(store, list(out_b.values()), metric, reference)
    items = sorted(p for p in out_a if p in out_b and out_a[p] in va and out_b[p] in vb)
    available = len(items)
    if n is not None and n < len(items):
        items = sorted(random.Random(seed).sample(items, n))
    wins = ties = losses = 0
    for p in items:
        d = va[out_a[p]] - vb[out_b[p]]
        if not mi.higher_is_better:
            d = -d
        if abs(d) <= margin:
            ties += 1
        elif d > 0:
            wins += 1
        else:
            losses += 1
    total = len(items)
    rate = (wins + 0.5 * ties) / total if total else None
    lo, hi = wilson(wins + 0.5 * ties, total) or (None, None)
    return {"a": sa.name, "b": sb.name, "metric": metric, "reference": reference, "n": total, "available": available,
            "sampled": n is not None and n < available, "seed": seed, "wins": wins, "ties": ties, "losses": losses,
            "win_rate": rate, "lo": lo, "hi": hi, "margin": margin}


def per_row(project: Project, *, reference: str, split: str | None = "val,test", collection: str | None = None,
            systems: Sequence[str] | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """The per-row table (prompt, reference, prediction, every metric) and the metric names in it."""
    rows, values = _selected(project, reference, split, collection, systems)
    flt = prompt_filter(split, collection)
    try:
        ref_texts, _ = resolve_reference(project, reference, flt)
    except PreceptorError:
        ref_texts = {}
    present = [m for m in M.names() if any(m in v for v in values.values())]
    out = []
    for r in rows:
        v = values[r["output_id"]]
        out.append({"prompt_id": r["prompt_id"], "output_id": r["output_id"], "split": r["split"], "system": r["system"],
                    "prompt": r["prompt"], "reference": ref_texts.get(r["prompt_id"], ""), "prediction": r["text"],
                    **{m: v.get(m) for m in present}})
    return out, present
