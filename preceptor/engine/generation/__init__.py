"""Stage 2 of the loop: answers from every system.

* ``systems``  — systems from ``[systems.NAME]``, presets, the offline defaults, ``[generate]`` settings;
* ``generate`` — ``preceptor generate``: batched local generation, the teacher, retrievers; resumable;
* ``llm``      — the one litellm client (concurrency, retries, cache, budget) every API call goes through.
"""
