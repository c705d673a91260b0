"""The terminal app (Textual): a thin face over the engine.

Screens call engine functions in thread workers and post messages back; training runs
in the runner's own process. Nothing here imports the heavy ML libraries at start-up.
"""
