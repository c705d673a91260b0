"""Local generation throughput: seed 000's way (one ``model.generate`` per row) vs the engine's batched path.

Both sides use the same packaged student (SmolLM2-135M-Instruct, converted by
``preceptor models setup``), loaded once in the same dtype (``--dtype``, default bf16),
the same chat-templated prompts (the students' pass-through template over seed-000-style
questions) and greedy decoding with the same ``--max-new-tokens``:

* seed: for each prompt, ``apply_chat_template`` → ``model.generate`` at batch 1 → decode;
* engine: :class:`preceptor.engine.generation.generate.LocalGenerator` — prompts sorted by length,
  left-padded batches of ``--batch-size`` (default 16), one ``generate`` per batch.

Throughput is new (answer) tokens per second, counted the same way on both sides (up to
the first end-of-turn token). The engine runs before and after the seed's loop and its
mean time is used (a shared machine's load drifts); the same ratio on process CPU time is
printed too (insensitive to other processes). Torch threads are pinned (``--threads``, default 1) and
printed. Also printed: the share of answers identical between the two paths (padding may
shift bf16 numerics slightly; a low share would mean a batching bug).

Headline: ``BENCH generate_local_speedup <ratio> x`` (target ≥ 5 at batch 16).

    python bench/generate_local.py [--n 16] [--batch-size 16] [--max-new-tokens 48] [--threads 1] [--dtype bf16]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DRUGS = [("clarithromycin", "midazolam"), ("warfarin", "fluconazole"), ("sertraline", "tramadol"),
         ("rifampin", "oral contraceptives"), ("amiodarone", "simvastatin"), ("omeprazole", "clopidogrel"),
         ("spironolactone", "lisinopril"), ("ketoconazole", "cyclosporine")]
PRODUCTS = ["Augmentin 625 Duo Tablet", "Aciloc 150 Tablet", "atorvastatin", "metformin", "warfarin", "Avastin 400mg",
            "sertraline", "amiodarone"]


def build_prompts(n: int) -> list[str]:
    from preceptor.prompts.templates import task_prompt

    out: list[str] = []
    i = 0
    while len(out) < n:
        a, b = DRUGS[i % len(DRUGS)]
        product = PRODUCTS[i % len(PRODUCTS)]
        style = ("interaction", "moa_sentence", "clinical_card", "normalize_json")[i % 4]
        out.append(task_prompt(style, drug_a=a, drug_b=b) if style == "interaction" else task_prompt(style, product=product))
        i += 1
    return out


def count_new(tokens: list[int], eos: set[int]) -> int:
    for j, t in enumerate(tokens):
        if t in eos:
            return j
    return len(tokens)


def seed_way(model, tok, prompts: list[list[dict]], max_new: int, eos: set[int]) -> tuple[list[str], int, float, float]:
    """One generate() per row, batch 1, greedy (what the seed's notebook did)."""
    import torch

    texts, n_tokens = [], 0
    t0, c0 = time.perf_counter(), time.process_time()
    for messages in prompts:
        enc = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        with torch.inference_mode():
            out = model.generate(**enc, max_new_tokens=max_new, do_sample=False, temperature=None, top_p=None,
                                 top_k=None, pad_token_id=tok.pad_token_id)
        new = out[0, enc["input_ids"].shape[1]:].tolist()
        n = count_new(new, eos)
        n_tokens += n
        texts.append(tok.decode(new[:n], skip_special_tokens=True).strip())
    return texts, n_tokens, time.perf_counter() - t0, time.process_time() - c0


def engine_way(gen, prompts: list[list[dict]]) -> tuple[list[str], int, float, float]:
    texts: list[str | None] = [None] * len(prompts)
    n_tokens = 0
    t0, c0 = time.perf_counter(), time.process_time()
    for idx, results in gen.generate(prompts):
        for i, r in zip(idx, results, strict=True):
            texts[i] = r.text
            n_tokens += r.completion_tokens or 0
    return [t or "" for t in texts], n_tokens, time.perf_counter() - t0, time.process_time() - c0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dtype", default="bf16")
    args = ap.parse_args()

    from preceptor.engine.generation.generate import LocalGenerator, LocalSettings
    from preceptor.engine.models import PACKAGED_STUDENT, set_threads
    from preceptor.prompts.templates import student_messages

    threads = set_threads(args.threads)
    print(f"torch threads: {threads} (pinned); model {PACKAGED_STUDENT}, dtype {args.dtype}, n={args.n}, "
          f"batch {args.batch_size}, max_new_tokens {args.max_new_tokens}, greedy", flush=True)
    settings = LocalSettings(batch_size=args.batch_size, max_new_tokens=args.max_new_tokens, dtype=args.dtype,
                             threads=threads)
    t0 = time.perf_counter()
    gen, _ = LocalGenerator.load(PACKAGED_STUDENT, adapter=None, settings=settings)
    print(f"model loaded once in {time.perf_counter() - t0:.1f} s (shared by both paths)", flush=True)
    prompts = [student_messages(p)[0] for p in build_prompts(args.n)]

    # warm-up (first-call allocations) on both paths, not timed
    seed_way(gen.model, gen.tok, prompts[:1], 4, gen.eos_ids)
    warm = LocalGenerator(gen.model, gen.tok, LocalSettings(batch_size=2, max_new_tokens=4, dtype=args.dtype, threads=threads))
    engine_way(warm, prompts[:2])

    # engine, seed, engine again: the engine's time is the mean of the two runs around the seed's,
    # which cancels a steady drift in machine load (this box is shared)
    e_texts, e_tok, e_s1, e_c1 = engine_way(gen, prompts)
    print(f"engine: {e_tok} tokens in {e_s1:.2f} s", flush=True)
    s_texts, s_tok, s_s, s_c = seed_way(gen.model, gen.tok, prompts, args.max_new_tokens, gen.eos_ids)
    print(f"seed:   {s_tok} tokens in {s_s:.2f} s", flush=True)
    e_texts2, _, e_s2, e_c2 = engine_way(gen, prompts)
    print(f"engine: {e_tok} tokens in {e_s2:.2f} s (again)", flush=True)
    assert e_texts2 == e_texts, "the batched path is not deterministic"
    e_s, e_c = (e_s1 + e_s2) / 2, (e_c1 + e_c2) / 2

    seed_rate, engine_rate = s_tok / s_s, e_tok / e_s
    same = sum(a == b for a, b in zip(s_texts, e_texts, strict=True)) / len(prompts)
    print(f"BENCH generate_local_seed_tok_s {seed_rate:.2f} tok/s")
    print(f"BENCH generate_local_engine_tok_s {engine_rate:.2f} tok/s")
    print(f"BENCH generate_local_speedup_cpu_time {(e_tok / e_c) / (s_tok / s_c):.2f} x")
    print(f"BENCH generate_local_identical {same:.2f} share")
    print(f"BENCH generate_local_threads {threads} threads")
    print(f"BENCH generate_local_speedup {engine_rate / seed_rate:.2f} x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
