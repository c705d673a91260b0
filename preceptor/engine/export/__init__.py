"""Stage 7 of the loop: datasets out of the project, each with a manifest.

* ``dpo``       — ``preceptor export dpo``: preference pairs TRL trains on as is;
* ``votes``     — ``preceptor export votes``: every judgment, for audit;
* ``negatives`` — ``preceptor export negatives``: judged pairs as hard negatives for an embedding stage;
* ``files``     — what they share (no overwrite, checksums, the manifest).
"""
