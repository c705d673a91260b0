"""Which function runs each kind of training job (``fn(ctx: RunContext) -> dict``).

The worker imports the function named here only inside the training process, so adding
a kind costs the CLI and the TUI nothing at start-up.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from preceptor.errors import PreceptorError

KINDS: dict[str, str] = {
    "sft": "preceptor.engine.train.sft:run",
    "dpo": "preceptor.engine.train.dpo:run",
    "embed": "preceptor.engine.train.embed_stage:run_stage",
}


def resolve(kind: str) -> Callable[[Any], dict[str, Any]]:
    """The job function for ``kind`` (imported now)."""
    if kind not in KINDS:
        raise PreceptorError("Unknown run kind", f"no training job of kind {kind!r}", f"Known kinds: {', '.join(KINDS)}.")
    module, attr = KINDS[kind].split(":")
    return getattr(importlib.import_module(module), attr)
