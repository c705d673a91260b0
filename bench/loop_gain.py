"""Does the loop earn its keep? The measured loop on the demo data, held-out drugs, with CIs.

Runs :func:`preceptor.engine.demo.run_loop` (SFT on the gold references of most train drugs,
DPO pairs from the other train drugs (their reference against the ft answer), the base student answering val while SFT trains) in a
fresh project, then ``preceptor gains`` on the val split. The baseline (the base student)
is generated in the same run. Torch threads are pinned (``--threads``, default 1) and printed.

Prints ``BENCH ft_vs_base_win_rate``, ``BENCH dpo_vs_ft_win_rate`` (ROUGE-L against the
reference per item, ties half), ``BENCH teacher_gap_closed_rougeL`` (the grounded
teacher answers val in the same run) and last ``BENCH loop_minutes``.

    python bench/loop_gain.py [--threads 1] [--dir DIR] [--sft-epochs 2.5] [--lr 1e-3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dir", default=None)
    ap.add_argument("--sft-epochs", type=float, default=None, help="SFT epochs (default: the preset's)")
    ap.add_argument("--dpo-share", type=float, default=0.25)
    ap.add_argument("--max-new-tokens", type=int, default=80)
    ap.add_argument("--lr", type=float, default=None, help="SFT learning rate (default: the preset's)")
    ap.add_argument("--dpo-lr", type=float, default=None)
    ap.add_argument("--beta", type=float, default=None)
    ap.add_argument("--lora-r", type=int, default=None)
    ap.add_argument("--dpo-pairs", choices=("reference", "metric"), default=None,
                    help="reference = SPIN (reference vs the ft answer, the preset's default); metric = base vs ft, metric judge")
    ap.add_argument("--sft-weight", type=float, default=None, help="LM loss on chosen added to DPO (RPO)")
    args = ap.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    os.environ["PRECEPTOR_THREADS"] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    print(f"torch threads: {torch.get_num_threads()}", flush=True)
    from preceptor.engine import demo
    from preceptor.engine.events import Log
    from preceptor.engine.results import gains as G
    from preceptor.project import Project

    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="loop-gain-")) / "proj"
    t0 = time.monotonic()
    extra = {k: v for k, v in (("lr", args.lr), ("dpo_lr", args.dpo_lr), ("beta", args.beta), ("lora_r", args.lora_r), ("sft_epochs", args.sft_epochs),
                                         ("dpo_pairs", args.dpo_pairs), ("sft_weight", args.sft_weight)) if v is not None}
    preset = demo.LoopPreset(dpo_share=args.dpo_share, max_new_tokens=args.max_new_tokens, **extra)
    print(f"preset: {preset}", flush=True)
    for ev in demo.run_loop(root, preset):
        if isinstance(ev, Log):
            print(ev.text, flush=True)
    project = Project.open(root)
    try:
        res = G.compute(project, G.GainsOptions(split="val", collection=demo.LOOP_SFT))
    finally:
        project.close()
    minutes = (time.monotonic() - t0) / 60
    head, rows = G.table_rows(res)
    for r in rows:
        print("  |  ".join(f"{h}: {c}" for h, c in zip(head, r, strict=True)), flush=True)
    by = {(r["child_role"], r["other_role"]): r for r in res["rows"]}

    def ci(f: dict) -> str:
        return f"[{f['ci'][0]:.3f}, {f['ci'][1]:.3f}]" if f.get("ci") else "[n/a]"

    ft = by.get(("ft", "base"))
    dpo = by.get(("dpo", "ft"))
    if ft:
        print(f"BENCH ft_vs_base_win_rate {ft['win_rate']['value']:.3f} share  n={ft['n']} wilson95 {ci(ft['win_rate'])}")
    if dpo:
        print(f"BENCH dpo_vs_ft_win_rate {dpo['win_rate']['value']:.3f} share  n={dpo['n']} wilson95 {ci(dpo['win_rate'])}")
    gap = (ft or {}).get("gap_closed", {}).get("rougeL") if ft else None
    if gap and gap.get("value") is not None:
        print(f"BENCH teacher_gap_closed_rougeL {gap['value']:.3f} share  bootstrap95 {ci(gap)}")
    else:
        print("BENCH teacher_gap_closed_rougeL nan share  (no gap: see the gains table)")
    print(f"BENCH loop_minutes {minutes:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
