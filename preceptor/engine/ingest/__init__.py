"""Stage 1 of the loop: bring prompts in.

* ``readers``  — streaming CSV / TSV / JSONL / JSON / Parquet readers with file:line errors;
* ``prompts``  — ``preceptor import``: column detection, atomic import, imported outputs;
* ``splits``   — group-hash splits (no leakage), text identity for duplicates.
"""
