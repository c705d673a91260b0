"""The triple table: every text metric on hand-written Thai / Korean / English triples.

For each language, a reference and three candidates (the same text, a paraphrase, an
unrelated answer; :mod:`preceptor.testing.triples`) are scored by the product's own
scorers with their default routing (Thai words by pythainlp newmm, Korean morphemes by
kiwipiepy, the multilingual e5 encoder for BERTScore on non-Latin scripts). Prints a
Markdown table and, under it, the tokenizer / encoder behind each figure.

    python scripts/language_triples.py
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

METRICS = ("rougeL", "bleu", "chrf", "bertscore_p", "bertscore_r", "bertscore_f1")


def main() -> None:
    import torch

    from preceptor.engine.evaluation import metrics as M
    from preceptor.testing.triples import CANDIDATES, TRIPLES, candidates

    torch.set_num_threads(1)
    text = {n: M.scorer(n) for n in ("rougeL", "bleu", "chrf")}
    bert = M.scorer("bertscore_f1")
    print(f"torch threads: {torch.get_num_threads()}\n")
    print("| lang | candidate | " + " | ".join(METRICS) + " |")
    print("|---|---|" + "---|" * len(METRICS))
    for lang in TRIPLES:
        ref, cands = candidates(lang)
        vals = {n: s.score(cands, [ref] * 3) for n, s in text.items()}
        res = bert.score_all(cands, [ref] * 3)
        vals.update(bertscore_p=res.p, bertscore_r=res.r, bertscore_f1=res.f1)
        for i, cand in enumerate(CANDIDATES):
            cells = ["refused" if vals[m][i] is None else f"{vals[m][i]:.3f}" for m in METRICS]
            print(f"| {lang} | {cand} | " + " | ".join(cells) + " |")
    print()
    for lang in TRIPLES:
        print(f"- {lang}: ROUGE-L {text['rougeL'].via(lang)}; BLEU {text['bleu'].via(lang)}; "
              f"chrF++ {text['chrf'].via(lang)}; BERTScore {bert.via(lang)}")


if __name__ == "__main__":
    main()
