"""The embedding track: a staged fine-tuning curriculum that cannot silently collapse.

A curriculum is an ordered list of stages (``[embed] stages`` in ``preceptor.toml``),
each a set of (anchor, positive[, negative][, score]) pairs imported with
``preceptor import-pairs FILE --stage NAME`` (see :mod:`preceptor.engine.embed_data`).
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

import dataclasses
import json
import random
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from preceptor.config import setting
from preceptor.db import embed as q_embed
from preceptor.db import runs as q_runs
from preceptor.engine.events import Done, EventStream, Log, Progress, check_cancel
from preceptor.errors import Cancelled, PreceptorError

RETRIEVAL_METRICS = ("recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10")
COLLAPSE_METRICS = ("true_mean", "true_std", "unrelated_mean", "unrelated_std", "unrelated_p95", "gap")
MODEL_DIR = "model"
TRAIN_DATA = "train_data.jsonl"


@dataclass
class EmbedSettings:
    """``[embed]`` in preceptor.toml; ``preceptor train embed`` flags override it."""

    stages: list[str] = setting([], "Curriculum stages in training order; each starts from the previous stage's model. `import-pairs --stage` appends new stages.")
    base: str = setting("all-minilm-l6-v2", "Encoder the first stage starts from: the packaged `all-minilm-l6-v2`, a sentence-transformers folder, or a hub id (downloads only if you name one).")
    loss: Literal["mnrl", "cosine"] = setting("mnrl", "mnrl: MultipleNegativesRankingLoss (in-batch + hard negatives). cosine: CosineSimilarityLoss on scored pairs (every pair needs a score).")
    batch_size: int = setting(32, "Pairs per batch (MNRL: also the number of in-batch negatives + 1).")
    epochs: float = setting(1.0, "Passes over a stage's training pairs (ignored when max_steps > 0).")
    max_steps: int = setting(0, "Stop each stage after this many optimizer steps (0: run the epochs).")
    learning_rate: float = setting(2e-5, "Peak learning rate (AdamW).")
    warmup_ratio: float = setting(0.1, "Fraction of the steps spent warming the learning rate up.")
    weight_decay: float = setting(0.01, "AdamW weight decay.")
    max_seq_length: int = setting(128, "Longest input in tokens; longer texts are truncated.")
    mine_negatives: bool = setting(True, "Mine one hard negative per pair with the stage's starting model when the data has none.")
    negatives_per_pair: int = setting(1, "Hard negatives mined per pair.")
    mine_max_ratio: float = setting(0.95, "Skip mined candidates scoring above this fraction of the positive's score (likely unlabelled positives).")
    prefixes: Literal["auto", "none", "e5"] = setting("auto", "Query/passage prefixes: auto (the model's saved prompts, or `query: `/`passage: ` for e5 models), none, or e5.")
    eval_max_queries: int = setting(500, "Held-out queries used for retrieval evaluation per stage (a fixed random sample above this).")
    retrieval_k: int = setting(5, "Documents listed in a retriever system's answer.")
    collapse_max_unrelated: float = setting(0.85, "Collapse alarm when random unrelated pairs average at least this cosine similarity (seed 002's collapsed model: 0.91-0.94).")
    collapse_min_gap: float = setting(0.05, "Collapse alarm when true pairs average less than this above unrelated pairs.")
    collapse_sample: int = setting(500, "True and unrelated pairs sampled for the collapse diagnostics.")
    save_steps: int = setting(200, "Checkpoint every N steps (a cancelled or interrupted stage resumes from the last one).")
    threads: int = setting(0, "Torch threads (0: $PRECEPTOR_THREADS / $OMP_NUM_THREADS, else 1).")
    seed: int = setting(42, "Random seed (data order, sampling, mining fallbacks).")

    def __post_init__(self) -> None:
        if self.batch_size < 2:
            raise ValueError("batch_size must be at least 2 (in-batch negatives need company)")
        if self.epochs <= 0:
            raise ValueError("epochs must be positive")
        if self.max_steps < 0:
            raise ValueError("max_steps must be 0 or more")
        if not 0 < self.learning_rate < 1:
            raise ValueError("learning_rate must be in (0, 1)")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError("warmup_ratio must be in [0, 1)")
        if self.negatives_per_pair < 1:
            raise ValueError("negatives_per_pair must be at least 1")
        if not 0 < self.mine_max_ratio <= 1:
            raise ValueError("mine_max_ratio must be in (0, 1]")
        if self.retrieval_k < 1:
            raise ValueError("retrieval_k must be at least 1")
        if self.max_seq_length < 8:
            raise ValueError("max_seq_length must be at least 8")
        if self.save_steps < 1:
            raise ValueError("save_steps must be at least 1")
        if self.collapse_sample < 10:
            raise ValueError("collapse_sample must be at least 10")
        for s in self.stages:
            if not s or any(c in s for c in " ,/"):
                raise ValueError(f"stage name {s!r} is empty or has a space, comma or slash")


def load_settings(project: Any) -> EmbedSettings:
    return project.section("embed", EmbedSettings)


# -- models ---------------------------------------------------------------------------

def resolve_encoder(name: str) -> Path | str:
    """The packaged encoder's folder, a local folder, or a hub id passed through."""
    from preceptor.engine import models

    p = Path(name).expanduser()
    if name in (models.PACKAGED_ENCODER, models.PACKAGED_E5) or p.is_dir():
        return models.encoder_path(name)
    if p.is_absolute() or name.startswith((".", "~")) or p.suffix:
        raise PreceptorError("Encoder not found", f"{name!r} is not a folder", f"Use {models.PACKAGED_ENCODER!r} or the path of a sentence-transformers folder.")
    return name  # a hub id: loaded by sentence-transformers (downloads only if allowed)


def slug(text: str) -> str:
    s = re.sub(r"[^A-Za-z0-9._-]+", "-", text.strip()).strip("-")
    return s[-48:] or "encoder"


def base_label(base: str) -> str:
    from preceptor.engine import models

    return models.PACKAGED_ENCODER if base == models.PACKAGED_ENCODER else slug(Path(base).name if Path(base).is_dir() else base)


# -- one stage (runs inside the training worker) ----------------------------------------

class _Callback:
    """Builds the TrainerCallback lazily (transformers is imported only inside the worker)."""

    @staticmethod
    def make(ctx: Any, offset: int = 0) -> Any:
        from transformers import TrainerCallback

        class StageCallback(TrainerCallback):
            def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
                ctx.progress(state.global_step, state.max_steps, "training")
                if ctx.cancel.is_set():
                    control.should_save = True
                    control.should_training_stop = True
                return control

            def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> Any:
                if logs and "loss" in logs:
                    ctx.metric(state.global_step, "train/loss", float(logs["loss"]))
                return control

        return StageCallback()


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
    from preceptor.engine.embed_eval import (
        TextEncoder,
        build_eval_set,
        collapse_diagnostics,
        detect_prefixes,
        evaluate,
        load_model,
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
    start_eval = evaluate(enc, es)
    start_collapse = collapse_diagnostics(enc, triples, **collapse_kw)
    if base == init:
        base_eval, base_collapse = start_eval, start_collapse
    else:
        base_enc = TextEncoder(load_model(base, settings.max_seq_length), qp, pp, enc.batch_size)
        base_eval = evaluate(base_enc, es)
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
                                         callbacks=[_Callback.make(ctx)])
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
    final_eval = evaluate(enc, es)
    final_collapse = collapse_diagnostics(enc, triples, base_gap=base_collapse.gap, **collapse_kw)
    ctx.metrics(steps, {f"eval/{k}": final_eval[k] for k in RETRIEVAL_METRICS if k in final_eval})
    _collapse_metrics(ctx, steps, "collapse", final_collapse)
    ctx.log(f"stage {stage} after {steps} steps: {_fmt_eval(final_eval)}")
    ctx.log(f"collapse diagnostics: {final_collapse.line()} (base model: gap {base_collapse.gap:.3f})")
    if final_collapse.alarm:
        ctx.warn(f"stage {stage}: {final_collapse.alarm}")

    # 5. register the encoder and the retriever systems
    from preceptor.engine import retriever

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
        from preceptor.engine.embed_data import doc_key

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
    return summary


# -- the curriculum (runs in the caller: one worker process per stage) --------------------

@dataclass(frozen=True)
class TrainEmbedOptions:
    base: str | None = None
    stages: tuple[str, ...] | None = None
    demo: bool = False
    max_steps: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    epochs: float | None = None
    loss: str | None = None
    threads: int | None = None
    inline: bool = False  # run each stage in this process (tests, debugging) instead of a worker


def plan(project: Any, opts: TrainEmbedOptions) -> tuple[EmbedSettings, list[str]]:
    """The effective settings and the stages to train, validated (no run is created)."""
    from preceptor import config as cfgmod

    settings = load_settings(project)
    settings = cfgmod.override(settings, "flags", base=opts.base, max_steps=opts.max_steps, batch_size=opts.batch_size,
                               learning_rate=opts.learning_rate, epochs=opts.epochs, loss=opts.loss, threads=opts.threads)
    stages = list(opts.stages) if opts.stages else list(settings.stages)
    if not stages:
        raise PreceptorError("No stages", f"{project.config_path}: [embed] stages is empty and no --stages given",
                             "Import pairs with `preceptor import-pairs FILE --stage NAME`, or run `preceptor train embed --demo`.")
    counts = q_embed.stage_counts(project.store)
    for s in stages:
        if not counts.get(s, {}).get("train"):
            known = ", ".join(f"{k} ({sum(v.values())} pairs)" for k, v in counts.items()) or "none yet"
            raise PreceptorError("Stage has no data", f"stage {s!r} has no training pairs",
                                 f"Stages with data: {known}. Import pairs with `preceptor import-pairs FILE --stage {s}`.")
    return settings, stages


def _inline_start(project: Any, config: dict[str, Any], parent_id: int | None, cancel: threading.Event) -> tuple[Any, threading.Thread]:
    """Create a run and execute it in a thread of this process (same worker code, no subprocess)."""
    from preceptor.engine.train import worker

    config = dict(config)
    config["launch"] = {"launcher": "inline"}
    run = q_runs.create(project.store, "embed", config, parent_id=parent_id)
    run_dir = project.runs_dir() / f"{run.id}-embed"
    run_dir.mkdir(parents=True, exist_ok=True)
    q_runs.update(project.store, run.id, dir=str(run_dir))
    run = q_runs.get(project.store, run.id)
    thread = threading.Thread(target=worker.execute, args=(project.root, run.id), kwargs={"cancel": cancel},
                              name=f"preceptor-embed-{run.id}", daemon=True)
    thread.start()
    return run, thread


def train_embed(project: Any, opts: TrainEmbedOptions = TrainEmbedOptions(), cancel: threading.Event | None = None) -> EventStream:
    """Train the curriculum: one run per stage, in order, each from the previous stage's model.

    Yields the runs' Progress / Metric / Log events; ends with Done({"stages": [stage
    report, ...], "runs": [ids], "alarms": n}). A failed or cancelled stage stops the
    curriculum (the stages before it stay registered).
    """
    from preceptor.engine.train import runner

    if opts.demo:
        from preceptor.engine.embed_data import import_demo

        demo_stages: list[str] = []
        for ev in import_demo(project, cancel):
            if isinstance(ev, Log):
                yield ev
            elif isinstance(ev, Done):
                demo_stages = ev.summary["stages"]
        project.reload()
        if not opts.stages:  # --demo trains the demo curriculum, whatever else the project lists
            opts = dataclasses.replace(opts, stages=tuple(demo_stages))
    settings, stages = plan(project, opts)
    base_name = settings.base
    base = str(resolve_encoder(settings.base))
    init = base
    parent_encoder: int | None = None
    parent_run: int | None = None
    reports: list[dict[str, Any]] = []
    for i, stage in enumerate(stages, 1):
        check_cancel(cancel)
        config = {"stage": stage, "init": init, "base": base, "base_name": base_name,
                  "settings": dataclasses.asdict(settings), "parent_encoder": parent_encoder,
                  "position": i, "of": len(stages), "threads": settings.threads or None}
        yield Log("info", f"stage {i}/{len(stages)}: {stage} (starts from {'the base model' if init == base else Path(init).parent.name})")
        stage_cancel = threading.Event()
        if opts.inline:
            run, thread = _inline_start(project, config, parent_run, stage_cancel)
        else:
            run, thread = runner.start(project, "embed", config, parent_id=parent_run), None
        yield Log("info", f"run {run.id} started" + ("" if opts.inline else f" (process {run.pid})"))
        try:
            for ev in runner.watch(project, run.id, cancel, poll=0.3):
                if not isinstance(ev, Done):  # the stage's own summary is read back below
                    yield ev
        except Cancelled:
            if opts.inline:
                stage_cancel.set()
            else:
                try:
                    runner.cancel(project, run.id)
                except PreceptorError:
                    pass
            final = runner.wait(project, run.id, timeout=600)
            yield Log("warning", f"stage {stage} stopped: run {run.id} {final.status}; `preceptor train resume {run.id}` continues it")
            raise
        finally:
            if thread is not None:
                thread.join(timeout=600)
        report = stage_report(project, run.id)
        reports.append(report)
        if report["status"] != "succeeded":
            raise PreceptorError(f"Stage {stage} {report['status']}", f"run {run.id}: {report.get('error') or 'no error recorded'}",
                                 f"See {report.get('dir')}/train.log; fix the cause and `preceptor train resume {run.id}`, "
                                 "or run the remaining stages with --stages.")
        yield Progress(i, len(stages), f"stage {stage} done")
        init = report["model_path"]
        parent_encoder = report.get("encoder_id")
        parent_run = run.id
    yield Done({"stages": reports, "runs": [r["run_id"] for r in reports],
                "alarms": sum(1 for r in reports if r.get("warning"))})


def stage_report(project: Any, run_id: int) -> dict[str, Any]:
    """A finished stage run as shown by the CLI and the TUI: metrics, diagnostics, warning."""
    run = q_runs.get(project.store, run_id)
    if run is None:
        raise PreceptorError("Unknown run", f"no run {run_id}", "See `preceptor train list`.")
    last = q_runs.last_values(project.store, run_id)
    summary: dict[str, Any] = {}
    if run.dir and (Path(run.dir) / "summary.json").exists():
        try:
            summary = json.loads((Path(run.dir) / "summary.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            summary = {}

    def group(prefix: str, names: tuple[str, ...]) -> dict[str, float | None]:
        return {n: (last[f"{prefix}/{n}"][1] if f"{prefix}/{n}" in last else None) for n in names}

    return {
        "run_id": run.id, "stage": run.config.get("stage"), "status": run.status, "error": run.error,
        "warning": run.warning, "dir": run.dir, "system": summary.get("system"),
        "base_system": summary.get("base_system"), "encoder_id": summary.get("encoder_id"),
        "model_path": summary.get("model_path") or (str(Path(run.dir) / MODEL_DIR) if run.dir else None),
        "steps": summary.get("steps"), "steps_per_s": summary.get("steps_per_s"),
        "base": group("base", RETRIEVAL_METRICS), "start": group("start", RETRIEVAL_METRICS),
        "eval": group("eval", RETRIEVAL_METRICS), "collapse": group("collapse", COLLAPSE_METRICS),
        "base_collapse": group("base_collapse", COLLAPSE_METRICS),
        "held_out_queries": summary.get("held_out_queries"),
    }
