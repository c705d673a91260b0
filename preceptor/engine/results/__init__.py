"""The results of the loop: what the judgments and scores say, with honest intervals
(``preceptor.engine.intervals``, shared with evaluation).

* ``stats``     — win rates, the Bradley–Terry league, agreement, self-consistency, position and length bias;
* ``report``    — ``preceptor report``: its sections (listed, in order) and the md / html / csv writers.
"""
