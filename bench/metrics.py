"""Automatic-metric throughput: the engine (`preceptor eval`) against the libraries called directly.

Every metric except perplexity is computed on ``--n`` outputs (default 1,000: 500 prompts ×
2 systems, texts built from the pharma pack's gold facts) twice in the same run:

* engine: ``preceptor.engine.evaluation.evaluate.run_eval`` on a project, one metric at a time with
  ``force=True`` — scorer construction, cache keys, cached-value look-ups, batching,
  progress events, the SQLite upserts and the closing summary table included;
* floor: the same libraries called directly in one batch on the same texts — rouge-score's
  ``RougeScorer`` in a loop, sacrebleu's ``BLEU.sentence_score`` in a loop, one
  ``bert_score.BERTScorer.score`` call with the packaged MiniLM (6 layers), and the domain
  scorers' ``score`` on the whole list (the domain metrics are this project's own code).

Both sides build their scorers inside the timing (the BERTScore model load included) and
the domain-mention cache is cleared before each side. Each metric runs ``--repeats`` times
per side (default 3), alternating which side goes first; the median counts. Times are this
process's CPU time (``time.process_time``): with one torch thread the work is
single-threaded, and on a shared 2-core box CPU time is far steadier than wall-clock time
(which varied 13–38 s for the same BERTScore call here); wall-clock totals are printed too. Perplexity gets its own line:
tokens/s of the engine's scorer under the packaged student against a plain batched forward
pass + cross-entropy over the same token batches (model load excluded from both).

Torch threads are pinned (``--threads``, default 1) and printed. Prints ``BENCH`` lines;
the headline is ``BENCH metrics_vs_direct <ratio> x`` = floor time / engine time over all
metrics (target ≥ 0.9: the engine's bookkeeping costs under 10 %).

    python bench/metrics.py [--n 1000] [--ppl-n 64] [--threads 1] [--repeats 3] [--metrics a,b]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

METRICS = ["rougeL", "bleu", "bertscore_f1", "facet_f1", "key_terms", "triple_exact", "triple_soft"]
VERBS = {"INHIBITOR": ["inhibits", "is an inhibitor of", "blocks"], "INDUCER": ["induces", "is an inducer of"],
         "SUBSTRATE": ["is a substrate of"], "AGONIST": ["is an agonist of", "activates"],
         "ANTAGONIST": ["antagonizes", "is an antagonist of"], "BLOCKER": ["blocks", "inhibits"]}
FILLER = ["This matters for co-prescribed drugs.", "Monitor the patient closely.", "Exposure may change markedly.",
          "Dose adjustment may be needed.", "Clinical relevance depends on the dose."]


def build_texts(n_prompts: int, seed: int = 0) -> list[dict[str, str]]:
    from preceptor.prompts.domains import load

    pack = load("pharma")
    by_drug: dict[str, list[dict[str, str]]] = {}
    for r in pack.gold_triples:
        if r["action"] in VERBS:
            by_drug.setdefault(r["drug"], []).append(r)
    rng = random.Random(seed)
    drugs = sorted(by_drug)
    rows = []
    for i in range(n_prompts):
        d = drugs[i % len(drugs)]
        facts = by_drug[d][:4]

        def say(f: dict[str, str], k: int, d: str = d) -> str:
            return f"{d.capitalize()} {VERBS[f['action']][k % len(VERBS[f['action']])]} the {f['target_name']}."

        ref = " ".join(say(f, 0) for f in facts) + " " + rng.choice(FILLER)
        student = " ".join(say(f, rng.randrange(3)) for f in facts[: max(1, len(facts) - 1)]) + " " + rng.choice(FILLER)
        teacher = " ".join(say(f, 1) for f in facts) + " " + " ".join(rng.sample(FILLER, 2))
        rows.append({"prompt": f"[{i}] Explain the mechanism and interactions of {d}.", "reference": ref,
                     "response_student": student, "response_teacher": teacher})
    return rows


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _since(t: tuple[float, float]) -> tuple[float, float]:
    return time.perf_counter() - t[0], time.process_time() - t[1]


def direct(name: str, preds: list[str], refs: list[str], encoder: str) -> tuple[float, float]:
    """(wall, CPU) seconds to score with the library called directly (scorer built inside the timing)."""
    from preceptor.engine.evaluation.metrics import domain

    domain._analyse.cache_clear()
    t0 = _clock()
    if name == "rougeL":
        from rouge_score import rouge_scorer

        sc = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
        [sc.score(r, p)["rougeL"].fmeasure for p, r in zip(preds, refs, strict=False)]
    elif name == "bleu":
        from sacrebleu.metrics import BLEU

        b = BLEU(effective_order=True)
        [b.sentence_score(p, [r]).score for p, r in zip(preds, refs, strict=False)]
    elif name == "bertscore_f1":
        from bert_score import BERTScorer

        BERTScorer(model_type=encoder, num_layers=6, batch_size=64, device="cpu").score(preds, refs, batch_size=64)
    else:
        from preceptor.engine.evaluation import metrics as M

        M.scorer(name).score(preds, refs)
    return _since(t0)


def engine(project, name: str) -> tuple[float, float]:
    from preceptor.engine import events
    from preceptor.engine.evaluation.evaluate import EvalOptions, run_eval
    from preceptor.engine.evaluation.metrics import domain, textual

    domain._analyse.cache_clear()
    textual._bert_scorer.cache_clear()
    t0 = _clock()
    events.run(run_eval(project, EvalOptions(split="all", metrics=[name], force=True)))
    return _since(t0)


def ppl_bench(n: int, threads: int) -> None:
    import math

    import torch

    from preceptor.engine import models
    from preceptor.engine.evaluation.metrics.perplexity import Perplexity

    rows = build_texts(n, seed=1)
    loaded = models.load_causal_lm(models.PACKAGED_STUDENT, threads=threads)
    sc = Perplexity(loaded=loaded, batch_size=8)
    preds, prompts = [r["response_teacher"] for r in rows], [r["prompt"] for r in rows]
    sc.score(preds[:4], None, prompts=prompts[:4])  # warm-up
    sc.tokens_scored = 0
    t0 = time.process_time()
    vals = sc.score(preds, None, prompts=prompts)
    t_engine = time.process_time() - t0
    tokens = sc.tokens_scored
    # floor: the same (context, target) pairs, same batches, a plain forward + cross-entropy
    model, pad = loaded[0], sc.pad_id
    pairs = [sc._encode(p, q) for p, q in zip(preds, prompts, strict=False)]
    order = sorted(range(len(pairs)), key=lambda i: -sum(map(len, pairs[i])))
    batches = []
    for s in range(0, len(order), 8):
        idx = order[s:s + 8]
        width = max(sum(map(len, pairs[i])) for i in idx)
        ids = torch.full((len(idx), width), pad)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        labels = torch.full((len(idx), width), -100)
        for j, i in enumerate(idx):
            c, t = pairs[i]
            ids[j, :len(c) + len(t)] = torch.tensor(c + t)
            mask[j, :len(c) + len(t)] = 1
            labels[j, len(c):len(c) + len(t)] = torch.tensor(t)
        batches.append((ids, mask, labels))
    t0 = time.process_time()
    with torch.inference_mode():
        for ids, mask, labels in batches:
            logits = model(input_ids=ids, attention_mask=mask).logits.float()
            torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)), labels[:, 1:].reshape(-1),
                                              ignore_index=-100, reduction="none")
    t_direct = time.process_time() - t0
    finite = [v for v in vals if v is not None and math.isfinite(v)]
    print(f"# perplexity: {len(finite)} outputs, {tokens} tokens, median ppl {statistics.median(finite):.2f}")
    print(f"BENCH ppl_engine {tokens / t_engine:.1f} tokens/s")
    print(f"BENCH ppl_direct_forward {tokens / t_direct:.1f} tokens/s")
    print(f"BENCH ppl_vs_direct {t_direct / t_engine:.3f} x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1000, help="outputs (half per system)")
    ap.add_argument("--ppl-n", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3, help="alternating engine-first and floor-first; median")
    ap.add_argument("--metrics", default=",".join(METRICS), help="comma list (default: all but perplexity)")
    args = ap.parse_args()
    metrics = [m for m in args.metrics.split(",") if m]

    import torch

    torch.set_num_threads(args.threads)
    print(f"# torch threads: {torch.get_num_threads()} (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')})")
    from preceptor.engine import events
    from preceptor.engine.evaluation.metrics.text import resolve_encoder
    from preceptor.engine.ingest.prompts import ImportOptions, import_prompts
    from preceptor.project import Project

    encoder = str(resolve_encoder(None))
    rows = build_texts(args.n // 2)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "items.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in rows))
        project = Project.init(Path(tmp) / "proj")
        events.run(import_prompts(project, data, ImportOptions(reference_col="reference", val_ratio=0.1)))
        n_out = project.store.scalar("SELECT COUNT(*) FROM outputs")
        preds = [r["response_student"] for r in rows] + [r["response_teacher"] for r in rows]
        refs = [r["reference"] for r in rows] * 2
        print(f"# {n_out} outputs, {len(rows)} prompts; BERTScore encoder {encoder} (6 layers)")
        # warm the imports on both sides so neither pays them inside the timing
        for m in metrics:
            direct(m, preds[:8], refs[:8], encoder)
        t_direct: dict[str, list[tuple[float, float]]] = {m: [] for m in metrics}
        t_engine: dict[str, list[tuple[float, float]]] = {m: [] for m in metrics}
        for rep in range(args.repeats):
            for m in metrics:  # alternate which side goes first
                if rep % 2:
                    t_engine[m].append(engine(project, m))
                    t_direct[m].append(direct(m, preds, refs, encoder))
                else:
                    t_direct[m].append(direct(m, preds, refs, encoder))
                    t_engine[m].append(engine(project, m))
        tot_d = tot_e = wall_d = wall_e = 0.0
        for m in metrics:
            d = statistics.median(c for _, c in t_direct[m])
            e = statistics.median(c for _, c in t_engine[m])
            tot_d, tot_e = tot_d + d, tot_e + e
            wall_d += statistics.median(w for w, _ in t_direct[m])
            wall_e += statistics.median(w for w, _ in t_engine[m])
            print(f"BENCH {m}_engine {n_out / e:.1f} outputs/s")
            print(f"BENCH {m}_direct {n_out / d:.1f} outputs/s")
        print(f"BENCH metrics_total_engine {tot_e:.2f} s")
        print(f"BENCH metrics_total_direct {tot_d:.2f} s")
        print(f"# wall-clock totals (shared box, for reference): engine {wall_e:.1f} s, direct {wall_d:.1f} s")
        project.close()
    if args.ppl_n:
        ppl_bench(args.ppl_n, args.threads)
    print(f"BENCH metrics_vs_direct {tot_d / tot_e:.3f} x")


if __name__ == "__main__":
    main()
