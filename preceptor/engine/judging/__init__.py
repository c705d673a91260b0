"""Stage 5 of the loop: pairs of answers judged by experts, an LLM judge and metric judges.

* ``settings``     — ``[judge]`` and the rubric;
* ``pairs``        — ``preceptor pairs make`` and the pair filter every stage shares;
* ``experts``      — blind expert sessions: queue, reservations, votes, undo, history, bad items;
* ``llm_judge``    — the LLM judge (API JSON verdicts or local log-probabilities), both orders;
* ``metric_judge`` — a metric as a judge;
* ``imported``     — human labels imported from LLMBar / PandaLM / generic files;
* ``votes``        — the one vote model all of the above are read back through.
"""
