"""Embedding track throughput against sentence-transformers called directly, in the same run.

Model: the packaged all-MiniLM-L6-v2. Data: the shipped demo curriculum, stage 1
(drug ↔ pharmacologic class). Torch threads are pinned (``--threads``, default 1) and printed.

1. Encode: sentences/s at batch 32 through the engine's encoder (``TextEncoder.passages``,
   used by training evaluation and retriever systems: prefixes, normalised numpy output; a
   new TextEncoder each round, so its memo of the last corpus never answers)
   against ``SentenceTransformer.encode`` on the same loaded model and the same sentences.
   Rounds alternate engine / direct; the median of ``--repeats`` rounds is reported.
2. Train: optimizer steps/s of one curriculum stage through the engine (``run_stage`` with a
   RunContext — MNRL, no-duplicate batches, mined hard negatives, progress / cancel
   callback, metrics into SQLite) against a bare ``SentenceTransformerTrainer`` with the same
   loss, sampler, arguments and the very rows the stage trained on (its
   ``train_data.jsonl``). Steps/s is measured around ``trainer.train()`` on both sides
   (evaluation, mining and registration of the stage are not in the engine's figure; they
   are printed separately). Rounds alternate engine / direct in A B B A order and the best
   rate of each side counts.

Prints ``BENCH <name> <value> <unit>`` lines; the last two are
``BENCH embed_encode_vs_direct <ratio> x`` and ``BENCH embed_train_vs_direct <ratio> x``
(ratio = engine rate / direct rate; target ≥ 0.95).

    python bench/embed.py [--threads 1] [--steps 20] [--repeats 5] [--sentences 512] [--train-rounds 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_DISABLED", "true")


def bench_encode(model, sentences: list[str], repeats: int) -> tuple[float, float]:
    from preceptor.engine.embed.retrieval import TextEncoder

    model.encode(sentences[:64], batch_size=32, show_progress_bar=False)  # warm-up
    ours, direct = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        TextEncoder(model, batch_size=32).passages(sentences)  # a fresh encoder: no remembered corpus
        ours.append(len(sentences) / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        model.encode(sentences, batch_size=32, show_progress_bar=False)
        direct.append(len(sentences) / (time.perf_counter() - t0))
    return statistics.median(ours), statistics.median(direct)


def direct_train(model_path: str, data_file: Path, out: Path, settings, steps: int) -> float:
    """A bare SentenceTransformerTrainer on the same rows and arguments; returns steps/s."""
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer import (
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.training_args import BatchSamplers

    rows = [json.loads(x) for x in data_file.read_text(encoding="utf-8").splitlines() if x.strip()]
    dataset = Dataset.from_dict({k: [r[k] for r in rows] for k in rows[0]})
    model = SentenceTransformer(model_path, device="cpu", local_files_only=True)
    model.max_seq_length = settings.max_seq_length
    args = SentenceTransformerTrainingArguments(
        output_dir=str(out), per_device_train_batch_size=settings.batch_size, max_steps=steps,
        learning_rate=settings.learning_rate, warmup_steps=settings.warmup_ratio, weight_decay=settings.weight_decay,
        batch_sampler=BatchSamplers.NO_DUPLICATES, use_cpu=True, bf16=False, fp16=False, save_strategy="steps",
        save_steps=settings.save_steps, save_total_limit=1, logging_steps=max(1, min(50, steps // 4 or 1)),
        report_to="none", seed=settings.seed, data_seed=settings.seed, dataloader_num_workers=0, disable_tqdm=True)
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset,
                                         loss=MultipleNegativesRankingLoss(model))
    t0 = time.perf_counter()
    trainer.train()
    return trainer.state.global_step / (time.perf_counter() - t0)


def engine_stage(project, stage: str, base: str, settings, steps: int) -> dict:
    from preceptor.db import runs as q_runs
    from preceptor.engine.train.context import RunContext
    from preceptor.engine.train.embed_stage import run_stage

    config = {"stage": stage, "init": base, "base": base, "base_name": "all-minilm-l6-v2",
              "settings": dataclasses.asdict(dataclasses.replace(settings, max_steps=steps))}
    run = q_runs.create(project.store, "embed", config)
    run_dir = project.runs_dir() / f"{run.id}-embed"
    q_runs.update(project.store, run.id, dir=str(run_dir))
    ctx = RunContext(project, q_runs.get(project.store, run.id), dict(config), run_dir)
    try:
        return run_stage(ctx)
    finally:
        ctx.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=20, help="training steps per side")
    ap.add_argument("--repeats", type=int, default=5, help="encode rounds per side")
    ap.add_argument("--sentences", type=int, default=512)
    ap.add_argument("--train-rounds", type=int, default=2, help="training rounds per side (alternating)")
    a = ap.parse_args()

    import logging

    logging.disable(logging.WARNING)
    import torch

    from preceptor.engine import models
    from preceptor.engine.embed.data import PairImportOptions, demo_files, import_pairs
    from preceptor.engine.embed.retrieval import load_model
    from preceptor.engine.embed.settings import EmbedSettings
    from preceptor.engine.events import run as consume
    from preceptor.project import Project

    threads = models.set_threads(a.threads)
    base = str(models.encoder_path())
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()} (pinned), model {base}", file=sys.stderr)
    print(f"BENCH embed_threads {threads} threads")
    stage, path, _ = demo_files()[0]
    rows = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    sentences = [r["anchor"] if i % 2 else r["positive"] for i, r in enumerate(rows)]
    sentences = (sentences * (a.sentences // len(sentences) + 1))[: a.sentences]

    model = load_model(base)
    ours, direct = bench_encode(model, sentences, a.repeats)
    print(f"BENCH embed_encode_engine {ours:.1f} sentences/s")
    print(f"BENCH embed_encode_direct {direct:.1f} sentences/s")
    del model

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["PRECEPTOR_HOME"] = str(Path(tmp) / "home")
        project = Project.init(Path(tmp) / "proj")
        consume(import_pairs(project, path, PairImportOptions(stage=stage, val_ratio=0.1, test_ratio=0.1)))
        settings = EmbedSettings(base=base, save_steps=10_000, eval_max_queries=100, collapse_sample=200)
        engine_rates, direct_rates, totals = [], [], []
        summary: dict = {}
        # rounds in A B B A order; the best rate of each side counts (a shared box only ever slows a side down)
        order = [s for i in range(a.train_rounds) for s in (("engine", "direct") if i % 2 == 0 else ("direct", "engine"))]
        for n, side in enumerate(order):
            if side == "engine":
                t0 = time.perf_counter()
                summary = engine_stage(project, stage, base, settings, a.steps)
                totals.append(time.perf_counter() - t0)
                engine_rates.append(summary["steps"] / summary["train_seconds"])
                data_file = Path(summary["model_path"]).parent / "train_data.jsonl"
            else:
                if not summary:  # the direct side trains on the rows the engine's stage trained on
                    summary = engine_stage(project, stage, base, settings, 1)
                    data_file = Path(summary["model_path"]).parent / "train_data.jsonl"
                direct_rates.append(direct_train(base, data_file, Path(tmp) / f"direct{n}", settings, a.steps))
            print(f"round {n + 1} {side}: {(engine_rates if side == 'engine' else direct_rates)[-1]:.3f} steps/s",
                  file=sys.stderr)
        project.close()
    e_sps, d_sps, total = max(engine_rates), max(direct_rates), min(totals)
    print(f"stage {stage}: {summary['train_pairs']} pairs, negatives {summary['negatives']}, batch {settings.batch_size}, "
          f"{summary['steps']} steps in {summary['train_seconds']:.1f} s; whole stage incl. evaluation, mining, "
          f"diagnostics and registration {total:.1f} s; R@1 {summary['base']['recall@1']:.3f} → {summary['eval']['recall@1']:.3f}",
          file=sys.stderr)
    print(f"BENCH embed_train_engine {e_sps:.3f} steps/s")
    print(f"BENCH embed_train_direct {d_sps:.3f} steps/s")
    print(f"BENCH embed_stage_total {total:.1f} s")
    print(f"BENCH embed_encode_vs_direct {ours / direct:.3f} x")
    print(f"BENCH embed_train_vs_direct {e_sps / d_sps:.3f} x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
