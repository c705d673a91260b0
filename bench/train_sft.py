"""SFT training throughput: the engine's default path against the seed's set-up and trl's defaults.

Model: the packaged student (SmolLM2-135M-Instruct, ``preceptor models setup``), fp32
weights, no mixed precision in any configuration. Data: the shipped demo set's train
items (prompt → reference answer), rendered exactly as the engine trains (the student's
prompt template and chat template, loss on the answer only); the same
``steps × 8`` examples for every configuration, so each sees the same tokens.
Torch threads are pinned (``--threads``, default 1) and printed.

Configurations (the same LoRA adapter in all three: the engine default, r=16 on every
projection, so only the data path differs):

a. ``seed``   — seed 000: batch 2 × accumulation 4, every example padded to 2048 tokens,
                no gradient checkpointing (it used a plain transformers ``Trainer``);
b. ``trl``    — ``SFTTrainer`` with trl's own defaults (batch 8, max length 1024, gradient
                checkpointing on, batches in random order padded to their longest);
                only ``use_cpu=True, bf16=False`` changed so it runs on a CPU;
c. ``engine`` — the engine's default settings (``preset default``: batch 4 × 2, no gradient
                checkpointing, ``batching = auto``: padding-free micro-batches — each
                flattened into one row, position ids restarting per example — after the
                engine's check that this model's attention stays within each example that
                way; else length-grouped batches), through the engine's own code
                (``choose_batching``, ``fit_to_max_length``, ``sft_config_kwargs``,
                ``common.training_args``).

Each configuration runs in its own fresh process (so peak RSS is its own) for ``--steps``
optimizer steps. Real tokens = non-padding input tokens the model was fed (attention
mask), counted in the collator; tokens/s = real tokens / CPU seconds of ``trainer.train()``
(``time.process_time``; with one torch thread this equals wall time on an idle machine and,
unlike wall time, is not inflated by other processes on a shared box — wall time is
printed alongside).

Prints ``BENCH <name> <value> <unit>`` lines, ``BENCH sft_vs_trl_defaults <ratio> x`` last
(targets: engine ≥ 3 × seed, ≥ 1.5 × trl defaults).

    python bench/train_sft.py [--threads 1] [--steps 3] [--repeats R] [--seed-microbatches K]

``--repeats R`` runs the engine and trl configurations R times each, alternating, and keeps
the best of each (CPU time on a shared 2-core box varied by ±15 % between identical runs).

The seed configuration feeds 16k padded tokens per optimizer step (minutes each on one CPU
thread). ``--seed-microbatches K`` times only K of its micro-batches: each is 2 × 2048
tokens whatever it holds, so its cost does not depend on the examples; the seed's time is
then K-timed-per-micro-batch × (steps × 4), and its real tokens are counted over all the
examples those steps cover. Without it, the seed runs its full steps like the others.
Memory: the seed configuration peaked at ~19 GB RSS here (2 × 2048 positions of fp32 logits
over a 49k vocabulary, without gradient checkpointing); make sure the machine has it free.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "preceptor" / "demo" / "data" / "demo.jsonl"


def examples(n: int, seed: int = 0) -> list[dict]:
    from preceptor.engine.train.sft import student_messages

    rows = [json.loads(line) for line in DEMO.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = [r for r in rows if r["split"] == "train" and r.get("reference")]
    random.Random(seed).shuffle(rows)
    return [{"prompt": student_messages(r["prompt"])[0], "completion": [{"role": "assistant", "content": r["reference"]}]}
            for r in rows[:n]]


class CountingCollator:
    """Wraps the trainer's collator; counts the real (non-padding) tokens fed to the model."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.real = 0
        self.fed = 0

    def __call__(self, features):
        batch = self.inner(features)
        ids = batch["input_ids"]
        self.fed += int(ids.numel())
        if "attention_mask" in batch and batch["attention_mask"] is not None:
            self.real += int(batch["attention_mask"].sum())
        else:  # padding-free batches: every position is a real token
            self.real += int(ids.numel())
        return batch


def one(kind: str, steps: int, threads: int, out_dir: Path, micro: int = 0) -> dict:
    import torch

    torch.set_num_threads(threads)
    import datasets
    from trl import SFTConfig, SFTTrainer

    from preceptor.engine.models import PACKAGED_STUDENT, load_causal_lm, quiet_transformers
    from preceptor.engine.train import common
    from preceptor.engine.train.settings import SFT_PRESETS, SFTSettings
    from preceptor.engine.train.sft import choose_batching, fit_to_max_length, sft_config_kwargs

    quiet_transformers()
    datasets.disable_progress_bars()
    engine = SFTSettings()  # the engine's default preset
    model, tok = load_causal_lm(PACKAGED_STUDENT, dtype="fp32", threads=threads)
    tok.padding_side = "right"
    targets = common.check_targets(model, engine.lora_targets, PACKAGED_STUDENT)
    peft_config = common.lora_config(engine, targets)
    rows = examples(steps * 8)
    data = datasets.Dataset.from_list(rows)
    base = dict(output_dir=str(out_dir / kind), max_steps=steps, report_to="none", save_strategy="no",
                logging_strategy="no", disable_tqdm=True, use_cpu=True, bf16=False)
    if kind == "seed":
        seed = SFT_PRESETS["seed000"]
        accum = seed["grad_accum"]
        if micro:  # time `micro` micro-batches of the seed's fixed shape; see the module docstring
            base["max_steps"], accum = micro, 1
        args = SFTConfig(**base, per_device_train_batch_size=seed["batch_size"], gradient_accumulation_steps=accum,
                         learning_rate=seed["lr"], seed=seed["seed"], **sft_config_kwargs("pad_max", seed["max_length"]),
                         # the seed trained with a plain transformers Trainer: no gradient checkpointing
                         **{common.checkpointing_field(): False})
    elif kind == "trl":
        args = SFTConfig(**base)
    else:  # the engine's path: its batching choice (checked for exactness on this model) and its SFTConfig
        batching = choose_batching(engine, model, tok)
        if batching == "padding_free":
            rows = fit_to_max_length(None, tok, rows, engine.max_length, "train")
            data = datasets.Dataset.from_list(rows)
        kw = {**common.training_args(engine, out_dir / kind, device="cpu", bf16=False, fp16=False, has_eval=False),
              **base, "completion_only_loss": True, **sft_config_kwargs(batching, engine.max_length)}
        args = SFTConfig(**kw)
    trainer = SFTTrainer(model=model, args=args, processing_class=tok, peft_config=peft_config, train_dataset=data)
    counter = CountingCollator(trainer.data_collator)
    trainer.data_collator = counter
    t0, c0 = time.perf_counter(), time.process_time()
    trainer.train()
    wall, seconds = time.perf_counter() - t0, time.process_time() - c0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    real, fed, steps_done = counter.real, counter.fed, trainer.state.global_step
    if kind == "seed" and micro:
        # every micro-batch is 2 x 2048 whatever it holds: time per micro-batch x the micro-batches
        # of `steps` full steps, against the real tokens of all the examples those steps cover
        per_micro = seconds / micro
        full = SFT_PRESETS["seed000"]
        n_micro = steps * full["grad_accum"]
        whole = CountingCollator(trainer.data_collator.inner)
        ds = trainer.train_dataset
        for i in range(0, len(ds), full["batch_size"]):
            whole([ds[j] for j in range(i, min(i + full["batch_size"], len(ds)))])
        real, fed, seconds, steps_done = whole.real, whole.fed, per_micro * n_micro, steps
        wall = wall / micro * n_micro
    return {"kind": kind, "steps": steps_done, "seconds": seconds, "wall_seconds": wall, "real_tokens": real, "micro_timed": micro,
            "fed_tokens": fed, "tokens_per_s": real / seconds, "peak_rss_mb": rss_mb,
            "threads": torch.get_num_threads(),
            "settings": {"batch": args.per_device_train_batch_size, "accum": args.gradient_accumulation_steps,
                         "max_length": args.max_length or engine.max_length, "padding_free": bool(args.padding_free),
                         "grouped": args.train_sampling_strategy == "group_by_length", "checkpointing": bool(getattr(args, common.checkpointing_field()))}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--seed-microbatches", type=int, default=0,
                    help="time only this many of the seed's (fixed-shape) micro-batches and scale to --steps (default: run them all)")
    ap.add_argument("--repeats", type=int, default=1, help="runs of the engine and trl configurations (alternating); the best counts")
    ap.add_argument("--one", choices=["seed", "trl", "engine"], help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        res = one(args.one, args.steps, args.threads, Path(args.out), args.seed_microbatches if args.one == "seed" else 0)
        print("RESULT " + json.dumps(res), flush=True)
        return

    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    print(f"torch threads: {args.threads} (pinned in every configuration); steps: {args.steps}; repeats: {args.repeats}"
          f"{f' (seed: {args.seed_microbatches} micro-batches timed, scaled)' if args.seed_microbatches else ''}; fp32; "
          "model: packaged student", flush=True)
    results: dict[str, dict] = {}
    order = [k for _ in range(args.repeats) for k in ("engine", "trl")] + ["seed"]
    with tempfile.TemporaryDirectory() as tmp:
        for kind in order:  # engine and trl alternate; the best of --repeats counts (a shared box is noisy)
            cmd = [sys.executable, __file__, "--one", kind, "--steps", str(args.steps), "--threads", str(args.threads),
                   "--out", tmp, "--seed-microbatches", str(args.seed_microbatches)]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
            if proc.returncode or line is None:
                sys.exit(f"{kind} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
            r = json.loads(line[7:])
            if kind not in results or r["tokens_per_s"] > results[kind]["tokens_per_s"]:
                results[kind] = r
            print(f"{kind:>6}: {r['steps']} steps in {r['seconds']:.1f} CPU s ({r['wall_seconds']:.1f} s wall), real tokens {r['real_tokens']} of "
                  f"{r['fed_tokens']} fed ({100 * r['real_tokens'] / r['fed_tokens']:.0f}% real), {r['tokens_per_s']:.1f} tok/s, "
                  f"peak RSS {r['peak_rss_mb']:.0f} MB, threads {r['threads']}, {r['settings']}", flush=True)
    for kind, label in (("seed", "sft_seed000"), ("trl", "sft_trl_defaults"), ("engine", "sft_engine")):
        print(f"BENCH {label}_tokens_per_s {results[kind]['tokens_per_s']:.1f} tok/s")
        print(f"BENCH {label}_peak_rss {results[kind]['peak_rss_mb']:.0f} MB")
    print(f"BENCH sft_vs_seed000 {results['engine']['tokens_per_s'] / results['seed']['tokens_per_s']:.2f} x")
    print(f"BENCH sft_vs_trl_defaults {results['engine']['tokens_per_s'] / results['trl']['tokens_per_s']:.2f} x")


if __name__ == "__main__":
    main()
