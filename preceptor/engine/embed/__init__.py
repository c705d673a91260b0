"""The embedding track's data and measurement (its training lives in ``train/``).

* ``settings``   — ``[embed]``, metric names, resolving the base encoder;
* ``data``       — ``preceptor import-pairs`` into curriculum stages, the demo curriculum;
* ``retrieval``  — measuring an encoder: retrieval metrics, collapse diagnostics, hard-negative mining;
* ``retrievers`` — an encoder plus a corpus as a system that answers queries with a ranked list.
"""
