"""LLM first, experts where it matters: how much expert work the LLM judge saves, and how
far its audited verdicts can be trusted, on real human labels (LLMBar).

LLMBar's Natural and three Adversarial sets (``bench/fixtures/llmbar_*.json``, MIT; one
human label per item, answers by position only, no system names) are imported with the
product's ``import-judgments`` into a temporary project. The product's LLM judge (the
packaged local judge unless ``--model``; both orders, ``swap = always``) then judges every
pair, which stores each pair's queue priority (``judging.queue.refresh_priorities``) under
``[judge] llm_first = true`` and ``audit_share``. The pairs the product would still send to
experts are the contested ones (inconsistent under swap, unparsed, unsure) and the audit
draw of the rest. The humans' labels stand in for the experts' votes:

* ``llm_first_expert_share`` — share of pairs sent to experts;
* on the audited pairs (what a project under ``llm_first`` measures) and on all the pairs
  left to the judge (what the audit estimates), the judge's agreement with the humans,
  beside its floors: the longer answer wins, the first-shown answer wins, chance.

Torch threads are pinned (``--threads``, default 1) and printed. The headline (last line) is
``BENCH llm_audit_agreement <share> x`` on the audited pairs.

    python bench/llm_first_audit.py [--sets natural,adversarial_neighbor,...] [--audit-share 0.2] [--limit N]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SETS = ("natural", "adversarial_neighbor", "adversarial_gptout", "adversarial_manual")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--audit-share", type=float, default=0.2)
    ap.add_argument("--model", default=None, help="judge model (default: [judge] model, the packaged local judge)")
    ap.add_argument("--limit", type=int, default=None, help="judge at most this many pairs (a quick run)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    print(f"threads: torch {torch.get_num_threads()}")

    from preceptor.engine.events import run
    from preceptor.engine.judging.imported import ImportJudgmentsOptions, import_judgments
    from preceptor.engine.judging.llm_judge import LLMJudgeOptions, judge_llm
    from preceptor.engine.judging.pairs import PairFilter
    from preceptor.engine.judging.queue import LLM_SETTLED, audit_of
    from preceptor.engine.judging.settings import JudgeSettings
    from preceptor.engine.judging.votes import load_votes
    from preceptor.engine.results.stats import llm_audit
    from preceptor.project import Project

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        project = Project.init(Path(tmp) / "audit", "audit")
        rubric = Path(tmp) / "rubric.md"  # LLMBar asks which answer follows the instruction
        rubric.write_text("Prefer the answer that follows the instruction precisely, honestly and helpfully; "
                          "length and style matter only when the instruction asks for them.\n", encoding="utf-8")
        project.update_settings({"judge": {"llm_first": True, "audit_share": args.audit_share, "swap": "always",
                                            "rubric": str(rubric)}})
        sets = [s for s in args.sets.split(",") if s]
        for name in sets:
            run(import_judgments(project, FIXTURES / f"llmbar_{name}.json",
                                 ImportJudgmentsOptions(format="llmbar", collection=f"llmbar-{name}")))
        settings = project.section("judge", JudgeSettings)
        for name in sets:
            done = run(judge_llm(project, LLMJudgeOptions(pairs=PairFilter(collection=f"llmbar-{name}"), model=args.model,
                                                          limit=args.limit)))
            print(f"judge {done.get('judge')} on llmbar-{name}: {done.get('pairs')} pairs (decisive {done.get('decisive')}, "
                  f"inconsistent {done.get('inconsistent', 0)}, tie {done.get('tie', 0)}), {time.perf_counter() - t0:.0f} s so far")
        rows = project.store.all("SELECT p.id, p.priority FROM pairs p JOIN judgments j ON j.pair_id = p.id AND j.judge_kind = 'llm'")
        judged = {r[0]: r[1] for r in rows}
        settled = {p for p, pr in judged.items() if pr == LLM_SETTLED}
        audited = {p for p in settled if audit_of(settings, p)}
        sent = (len(judged) - len(settled)) + len(audited)
        votes = [v for s in sets for v in load_votes(project, split="all", collection=f"llmbar-{s}", judge="all")]
        kw = dict(n_boot=500, seed=0, min_n=5)
        on_audit = llm_audit(votes, lambda p: p in audited, **kw)
        on_settled = llm_audit(votes, lambda p: p in settled, **kw)
        on_contested = llm_audit(votes, lambda p: p in judged and p not in settled, **kw)
        project.close()

    def pct(fig: dict) -> str:
        if fig.get("value") is None:
            return fig.get("note") or "-"
        ci = fig.get("ci")
        return f"{100 * fig['value']:.1f}%" + (f" [{100 * ci[0]:.0f}–{100 * ci[1]:.0f}]" if ci else "")

    for label, res in (("audited pairs", on_audit), ("all pairs left to the judge", on_settled),
                       ("contested pairs (sent to experts)", on_contested)):
        for r in res:
            print(f"{label}: n={r['n']} agrees {pct(r['agrees_with_humans'])}; floors: longer wins "
                  f"{pct(r['floor_longer_wins'])}, first shown wins {pct(r['floor_first_shown_wins'])}, chance 50%")
    print(f"pairs: {len(judged)} judged, {len(judged) - len(settled)} contested, {len(settled)} settled by the judge, "
          f"{len(audited)} of them audited; time {time.perf_counter() - t0:.0f} s")
    a = on_settled[0] if on_settled else {}
    au = on_audit[0] if on_audit else {}
    print(f"BENCH llm_first_expert_share {sent / max(len(judged), 1):.2f} x")
    if a:
        print(f"BENCH llm_settled_agreement {a['agrees_with_humans'].get('value') or 0:.2f} x")
        print(f"BENCH llm_settled_floor_longer_wins {a['floor_longer_wins'].get('value') or 0:.2f} x")
        print(f"BENCH llm_settled_floor_first_shown_wins {a['floor_first_shown_wins'].get('value') or 0:.2f} x")
    print(f"BENCH llm_audit_agreement {(au.get('agrees_with_humans') or {}).get('value') or 0:.2f} x")


if __name__ == "__main__":
    main()
