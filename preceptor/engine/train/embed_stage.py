"""One stage of the embedding curriculum: the training job of run kind ``embed``.

A curriculum is an ordered list of stages (``[embed] stages`` in ``preceptor.toml``),
each a set of (anchor, positive[, negative][, score]) pairs imported with
``preceptor import-pairs FILE --stage NAME`` (see :mod:`preceptor.engine.embed.data`).
``preceptor train embed`` trains them in order: **one run per stage** (kind ``embed``,
executed by the training runner in its own process, with the same status / metrics /
cancel / resume machinery as SFT and DPO), each starting from the previous stage's model.

One stage (:func:`run_stage`):

1. loads the stage's pairs (train split for training; val + test held out);
2. measures the **base** model (the curriculum's starting encoder) and the stage's
   starting model on the held-out queries — Recall@1/5/10, MRR@10, nDCG@10 against the
   stage's corpus — and its collapse diagnostics;
3. mines hard negatives with the starting model when the data has none (true positives
   of an anchor are never returned);
4. trains with sentence-transformers' trainer: MultipleNegativesRankingLoss with
   no-duplicate batches by default, CosineSimilarityLoss for scored pairs on request;
   e5-style ``query: `` / ``passage: `` prefixes when the model wants them;
5. saves the model in ``<run dir>/model``, measures it again, raises the collapse alarm
   (stored as the run's warning) when unrelated pairs score like related ones;
6. registers it: an ``encoders`` row (chained to the encoder it started from) and a
   **retriever system** ``embed-<stage>-r<run id>`` (role and backend ``retriever``, the
   stage's corpus), plus ``<base>@<stage>`` for the base encoder on the same corpus, so
   base-vs-stage retrieval can be generated, paired and judged.

Metric names in ``run_metrics``: ``train/loss``; ``base/<m>``, ``start/<m>`` (step 0) and
``eval/<m>`` (last step) for m in recall@1, recall@5, recall@10, mrr@10, ndcg@10;
``collapse/<x>`` and ``base_collapse/<x>`` for x in true_mean, true_std, unrelated_mean,
unrelated_std, unrelated_p95, gap.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

from preceptor.db import embed as q_embed
from preceptor.db import runs as q_runs
from preceptor.engine.embed.settings import (
    COLLAPSE_METRICS,
    MODEL_DIR,
    RETRIEVAL_METRICS,
    EmbedSettings,
    base_label,
)
from preceptor.engine.events import check_cancel
from preceptor.engine.train.callbacks import run_callback
from preceptor.engine.train.curriculum import next_stage, start_next
from preceptor.errors import Cancelled, PreceptorError

TRAIN_DATA = "train_data.jsonl"

def _stage_pairs(store: Any, stage: str) -> tuple[list[Any], list[Any]]:
    pairs = q_embed.pairs(store, stage)
    if not pairs:
        known = ", ".join(q_embed.stage_names(store)) or "none yet"
        raise PreceptorError("Stage has no data", f"stage {stage!r} holds no pairs",
                             f"Stages with data: {known}. Import some with `preceptor import-pairs FILE --stage {stage}`.")
    train = [p for p in pairs if p.split == "train"]
    if not train:
        raise PreceptorError("No training pairs", f"stage {stage!r} has {len(pairs)} pairs but none in the train split",
                             "Re-import with a lower --val-ratio / --test-ratio.")
    return pairs, train

def also_positives(pair: Any) -> list[str]:
    """Other equally correct documents a pair's source lists (``source.also``): never negatives."""
    src = pair.source
    if not src or not src.lstrip().startswith("{"):
        return []
    try:
        also = json.loads(src).get("also")
    except (ValueError, AttributeError):
        return []
    return [str(a) for a in also if isinstance(a, (str, int, float)) and str(a).strip()] if isinstance(also, list) else []

def _collapse_metrics(ctx: Any, step: int, prefix: str, rep: Any) -> None:
    ctx.metrics(step, {f"{prefix}/{k}": getattr(rep, k) for k in COLLAPSE_METRICS})

def _fmt_eval(m: dict[str, float]) -> str:
    if not m.get("n_queries"):
        return "no held-out queries"
    return ", ".join(f"{k} {m[k]:.3f}" for k in RETRIEVAL_METRICS) + f" ({int(m['n_queries'])} queries, {int(m['n_docs'])} docs)"

def _build_dataset(train: list[Any], negatives: list[list[str]] | None, loss: str, seed: int) -> Any:
    from datasets import Dataset

    rows = list(range(len(train)))
    random.Random(seed).shuffle(rows)
    data: dict[str, list[Any]] = {"anchor": [train[i].anchor for i in rows], "positive": [train[i].positive for i in rows]}
    if loss == "cosine":
        data["score"] = [float(train[i].score) for i in rows]
    elif negatives is not None:
        width = min(len(n) for n in negatives)
        for j in range(width):
            data["negative" if width == 1 else f"negative_{j + 1}"] = [negatives[i][j] for i in rows]
    return Dataset.from_dict(data)

def run_stage(ctx: Any) -> dict[str, Any]:
    """Train one curriculum stage (``fn(ctx)`` of run kind ``embed``); return its summary.

    ``ctx.config``: ``stage``, ``init`` (the folder or name the stage starts from), ``base``
    (the curriculum's base encoder), ``base_name``, ``settings`` (EmbedSettings fields),
    ``parent_encoder`` (id of the encoder it starts from, or None), ``position``/``of``.
    """
    from preceptor.engine import models
    from preceptor.engine.embed.retrieval import (
        TextEncoder,
        build_eval_set,
        collapse_diagnostics,
        detect_prefixes,
        load_model,
        measure,
        mine_hard_negatives,
    )

    t_start = time.monotonic()
    cfg = ctx.config
    settings = EmbedSettings(**cfg.get("settings", {}))
    stage = cfg["stage"]
    store = ctx.project.store
    threads = models.set_threads(settings.threads or None)
    import torch

    torch.manual_seed(settings.seed)
    random.seed(settings.seed)
    pairs, train = _stage_pairs(store, stage)
    held = [p for p in pairs if p.split != "train"]
    n_pairs, sha = q_embed.data_fingerprint(store, stage)
    ctx.record_config(data_sha256=sha, data_pairs=n_pairs, threads=threads)
    ctx.log(f"stage {stage}: {len(train)} training pairs, {len(held)} held out; torch threads {threads}")

    init = str(cfg["init"])
    base = str(cfg.get("base") or init)
    model = load_model(init, settings.max_seq_length)
    qp, pp = detect_prefixes(model, str(cfg.get("base_name") or init) + " " + init, settings.prefixes)
    if qp or pp:
        ctx.log(f"prefixes: query {qp!r}, passage {pp!r}")
    enc = TextEncoder(model, qp, pp, batch_size=min(64, settings.batch_size * 2))

    corpus = [t for _, t in q_embed.corpus_docs(store, stage)]
    if not corpus:
        corpus = list(dict.fromkeys(p.positive for p in pairs))
    known: dict[str, set[str]] = {}
    for p in pairs:
        known.setdefault(p.anchor, set()).update([p.positive, *also_positives(p)])
    relevant_pairs = [(a, d) for a, ds in known.items() for d in ds]
    es = build_eval_set([(p.anchor, p.positive) for p in held], relevant_pairs, corpus,
                        settings.eval_max_queries, settings.seed)
    triples = [(p.anchor, p.positive, p.group_key) for p in pairs]
    collapse_kw = dict(sample=settings.collapse_sample, max_unrelated=settings.collapse_max_unrelated,
                       min_gap=settings.collapse_min_gap, seed=settings.seed, known_positives=known)
    if not es.queries:
        ctx.log(f"stage {stage} has no held-out queries: retrieval metrics are skipped "
                "(re-import with --val-ratio > 0 to measure it)", "warning")

    # 1. the base model and the starting model, before training
    check_cancel(ctx.cancel)
    ctx.progress(0, None, "evaluating the starting model")
    already = bool(q_runs.metrics(store, ctx.run.id, "base_collapse/gap"))  # a resumed run measured them
    start_eval = measure(enc, es)
    start_collapse = collapse_diagnostics(enc, triples, **collapse_kw)
    if base == init:
        base_eval, base_collapse = start_eval, start_collapse
    else:
        base_enc = TextEncoder(load_model(base, settings.max_seq_length), qp, pp, enc.batch_size)
        base_eval = measure(base_enc, es)
        base_collapse = collapse_diagnostics(base_enc, triples, **collapse_kw)
        del base_enc
    if not already:
        ctx.metrics(0, {f"base/{k}": base_eval[k] for k in RETRIEVAL_METRICS if k in base_eval})
        ctx.metrics(0, {f"start/{k}": start_eval[k] for k in RETRIEVAL_METRICS if k in start_eval})
        _collapse_metrics(ctx, 0, "base_collapse", base_collapse)
    ctx.log(f"base model: {_fmt_eval(base_eval)}")
    if base != init:
        ctx.log(f"starting model (previous stage): {_fmt_eval(start_eval)}")

    # 2. negatives and the loss
    check_cancel(ctx.cancel)
    loss_name = settings.loss
    negatives: list[list[str]] | None = None
    if loss_name == "cosine":
        missing = sum(1 for p in train if p.score is None)
        if missing:
            raise PreceptorError("Scores missing", f"stage {stage!r}: {missing} of {len(train)} training pairs have no score",
                                 "CosineSimilarityLoss needs a score per pair; import a score column, or use loss = \"mnrl\".")
        if all(p.score is not None and p.score >= 0.999 for p in train):
            ctx.warn(f"stage {stage}: every pair has score 1.0 — positive-only data with CosineSimilarityLoss is the "
                     "recipe that collapsed seed 002; expect the collapse alarm, or use loss = \"mnrl\"")
    else:
        given = [p.negative for p in train]
        if all(given):
            negatives = [[n] for n in given]  # type: ignore[list-item]
        elif settings.mine_negatives:
            ctx.progress(0, None, "mining hard negatives")
            mined = mine_hard_negatives(enc, [(p.anchor, p.positive) for p in train], corpus, known_positives=known,
                                        num_negatives=settings.negatives_per_pair, max_ratio=settings.mine_max_ratio,
                                        seed=settings.seed)
            negatives = [[p.negative] if p.negative else m for p, m in zip(train, mined, strict=True)]
            if min(len(n) for n in negatives) == 0:
                ctx.log("the corpus has no documents besides the positives: training without hard negatives", "warning")
                negatives = None
            else:
                ctx.log(f"mined {sum(len(n) for n in negatives) - sum(1 for p in train if p.negative)} hard negatives "
                        f"with the starting model (true positives excluded)")
        elif any(given):
            ctx.log(f"{sum(1 for g in given if not g)} pairs have no negative and mining is off: negatives are not used", "warning")
    dataset = _build_dataset(train, negatives, loss_name, settings.seed)
    dataset.to_json(str(Path(ctx.run_dir) / TRAIN_DATA), lines=True, force_ascii=False)  # exactly what was trained on

    # 3. train
    from sentence_transformers.sentence_transformer import (
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer.losses import (
        CosineSimilarityLoss,
        MultipleNegativesRankingLoss,
    )
    from sentence_transformers.sentence_transformer.training_args import BatchSamplers

    loss = CosineSimilarityLoss(model) if loss_name == "cosine" else MultipleNegativesRankingLoss(model)
    prompts = None
    if qp or pp:
        prompts = {"anchor": qp, "positive": pp, **{c: pp for c in dataset.column_names if c.startswith("negative")}}
    steps_per_epoch = max(1, -(-len(dataset) // settings.batch_size))
    args = SentenceTransformerTrainingArguments(
        output_dir=str(Path(ctx.run_dir) / "checkpoints"),
        per_device_train_batch_size=settings.batch_size,
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps if settings.max_steps > 0 else -1,
        learning_rate=settings.learning_rate,
        warmup_steps=settings.warmup_ratio,
        weight_decay=settings.weight_decay,
        batch_sampler=BatchSamplers.NO_DUPLICATES if loss_name == "mnrl" else BatchSamplers.BATCH_SAMPLER,
        prompts=prompts,
        use_cpu=not torch.cuda.is_available(),
        bf16=False,
        fp16=False,
        save_strategy="steps",
        save_steps=settings.save_steps,
        save_total_limit=1,
        logging_steps=max(1, min(50, steps_per_epoch // 4 or 1)),
        report_to="none",
        seed=settings.seed,
        data_seed=settings.seed,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset, loss=loss,
                                         callbacks=[run_callback(ctx, "training", perplexity=False,
                                                                 rename={"loss": "train/loss"})])
    ctx.log(f"training stage {stage}: loss {type(loss).__name__}"
            + (", no-duplicate batches" if loss_name == "mnrl" else "")
            + f", {len(dataset)} examples, columns {', '.join(dataset.column_names)}")
    t0 = time.monotonic()
    result = trainer.train(resume_from_checkpoint=str(ctx.resume_from) if ctx.resume_from else None)
    train_s = time.monotonic() - t0
    steps = int(trainer.state.global_step)
    if ctx.cancel.is_set():
        raise Cancelled()

    # 4. save, measure, diagnose
    out_dir = Path(ctx.run_dir) / MODEL_DIR
    if qp or pp:
        model.prompts = {**(getattr(model, "prompts", None) or {}), "query": qp, "document": pp}
    model.save(str(out_dir))
    enc = TextEncoder(model, qp, pp, enc.batch_size)
    final_eval = measure(enc, es)
    final_collapse = collapse_diagnostics(enc, triples, base_gap=base_collapse.gap, **collapse_kw)
    ctx.metrics(steps, {f"eval/{k}": final_eval[k] for k in RETRIEVAL_METRICS if k in final_eval})
    _collapse_metrics(ctx, steps, "collapse", final_collapse)
    ctx.log(f"stage {stage} after {steps} steps: {_fmt_eval(final_eval)}")
    ctx.log(f"collapse diagnostics: {final_collapse.line()} (base model: gap {base_collapse.gap:.3f})")
    if final_collapse.alarm:
        ctx.warn(f"stage {stage}: {final_collapse.alarm}")

    # 5. register the encoder and the retriever systems
    from preceptor.engine.embed import retrievers as retriever

    parent = cfg.get("parent_encoder")
    if parent is None and base == init:
        parent = q_embed.add_encoder(store, base_label(str(cfg.get("base_name") or base)), base,
                                     base=str(cfg.get("base_name") or base), query_prefix=qp, passage_prefix=pp,
                                     meta={"note": "base encoder of the curriculum"}).id
    encoder = q_embed.add_encoder(store, f"{stage}-r{ctx.run.id}", str(out_dir), base=str(cfg.get("base_name") or base),
                                  stage=stage, run_id=ctx.run.id, parent_id=parent, query_prefix=qp, passage_prefix=pp,
                                  meta={"steps": steps, "loss": type(loss).__name__, "data_sha256": sha})
    q_embed.ensure_corpus(store, stage, f"stage {stage}")
    if not q_embed.corpus_docs(store, stage):
        from preceptor.engine.embed.data import doc_key

        q_embed.add_docs(store, stage, [(doc_key(t), t, None) for t in corpus])
    system_name = f"embed-{stage}-r{ctx.run.id}"
    retriever.register(store, system_name, model=str(out_dir), corpus=stage, k=settings.retrieval_k,
                       query_prefix=qp, passage_prefix=pp, run_id=ctx.run.id,
                       meta={"stage": stage, "encoder": encoder.name, "base": str(cfg.get("base_name") or base)})
    base_system = f"{base_label(str(cfg.get('base_name') or base))}@{stage}"
    portable = str(cfg.get("base_name")) if cfg.get("base_name") in (models.PACKAGED_ENCODER, models.PACKAGED_E5) else base  # survives a venv move
    retriever.register(store, base_system, model=portable, corpus=stage, k=settings.retrieval_k, query_prefix=qp,
                       passage_prefix=pp, meta={"stage": stage, "note": "the curriculum's base encoder on this stage's corpus"})
    summary = {
        "stage": stage, "system": system_name, "base_system": base_system, "encoder": encoder.name,
        "encoder_id": encoder.id, "model_path": str(out_dir), "steps": steps,
        "train_loss": float(getattr(result, "training_loss", float("nan"))), "train_seconds": round(train_s, 2),
        "steps_per_s": round(steps / train_s, 3) if train_s > 0 else None,
        "train_pairs": len(train), "held_out_queries": len(es.queries), "corpus_docs": len(corpus),
        "base": {k: base_eval.get(k) for k in RETRIEVAL_METRICS}, "start": {k: start_eval.get(k) for k in RETRIEVAL_METRICS},
        "eval": {k: final_eval.get(k) for k in RETRIEVAL_METRICS},
        "collapse": final_collapse.as_dict(), "base_collapse": base_collapse.as_dict(),
        "start_collapse": start_collapse.as_dict(), "alarm": final_collapse.alarm,
        "prefixes": [qp, pp], "negatives": "given" if negatives and all(p.negative for p in train) else ("mined" if negatives else "in-batch only"),
        "seconds": round(time.monotonic() - t_start, 2), "threads": threads,
    }
    follow_up = next_stage(cfg, summary)
    if follow_up is not None:  # this stage's process starts the next: nobody has to stay to sequence them
        summary["next_run"] = start_next(ctx, follow_up)
    return summary
