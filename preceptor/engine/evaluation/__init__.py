"""Stage 4 of the loop: score outputs against references.

* ``metrics``  — the metric registry: text (ROUGE-L, BLEU, BERTScore), domain (facets, key terms,
  triples) and perplexity;
* ``evaluate`` — ``preceptor eval``: score, cache and summarise (per-system means with CIs, metric win rates).
"""
