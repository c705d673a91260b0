"""TrainerCallbacks that connect a transformers / trl trainer to a :class:`RunContext`.

Kept apart from the trainers so SFT, DPO and the embedder stages share them:
metrics stream into ``run_metrics`` as they are logged (with perplexity = exp(eval_loss)
and real tokens per second), progress goes to the run's event file, and the cancel event
(set by SIGTERM) makes the trainer save a checkpoint and stop.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

from preceptor.engine.train.context import RunContext

# Seconds slept after each optimizer step: lets tests stop a run mid-training reliably.
STEP_DELAY_ENV = "PRECEPTOR_TRAIN_STEP_DELAY"
SKIP = {"epoch", "total_flos", "step"}


class RunCallbackMixin:
    """Streams metrics and progress into the run, and stops gracefully on cancel."""

    def __init__(self, ctx: RunContext, label: str = "train", perplexity: bool = True,
                 rename: dict[str, str] | None = None) -> None:
        self.ctx = ctx
        self.label = label
        self.perplexity = perplexity
        self.rename = rename  # only these logged keys are recorded, under these names (the embedder: loss)
        self.delay = float(os.environ.get(STEP_DELAY_ENV) or 0)
        self.last_eval_step: int | None = None
        self.eval_losses: list[tuple[int, float]] = []
        self._tokens: tuple[float, float] | None = None  # (num_tokens, time) at the previous log

    # progress and cancel ---------------------------------------------------------------
    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self.ctx.progress(state.global_step, state.max_steps, f"{self.label}: starting")

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self.ctx.progress(state.global_step, state.max_steps, f"{self.label}: step {state.global_step}/{state.max_steps}")
        if self.delay:
            time.sleep(self.delay)
        if self.ctx.cancel.is_set():
            control.should_save = True
            control.should_training_stop = True

    # metrics ---------------------------------------------------------------------------
    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
        if not logs:
            return
        step = state.global_step
        values = {k: v for k, v in logs.items() if k not in SKIP and isinstance(v, (int, float)) and not isinstance(v, bool)}
        if self.rename is not None:
            values = {self.rename[k]: float(v) for k, v in values.items() if k in self.rename}
            if values:
                self.ctx.metrics(step, values)
            return
        if "num_tokens" in values:
            now = time.monotonic()
            if self._tokens is not None and now > self._tokens[1] and values["num_tokens"] > self._tokens[0]:
                values["tokens_per_s"] = (values["num_tokens"] - self._tokens[0]) / (now - self._tokens[1])
            self._tokens = (float(values["num_tokens"]), now)
        if "eval_loss" in values:
            self.last_eval_step = step
            loss = float(values["eval_loss"])
            if math.isfinite(loss):
                self.eval_losses.append((step, loss))
                if self.perplexity and loss < 700:  # exp() would overflow: a diverged run, recorded as eval_loss only
                    values["perplexity"] = math.exp(loss)
            else:
                self.ctx.warn(f"eval loss is {loss} at step {step}: not recorded (no usable answer tokens in the "
                              "val examples, all truncated by max_length?, or the training diverged)")
                values.pop("eval_loss")
        self.ctx.metrics(step, values)


def run_callback(ctx: RunContext, label: str = "train", perplexity: bool = True,
                 rename: dict[str, str] | None = None) -> Any:
    """A ``TrainerCallback`` for ``ctx`` (transformers is imported here, not at module import).

    ``rename`` records only the named logged values, under new names (the embedder stages
    record ``loss`` as ``train/loss``); by default every numeric value is recorded.
    """
    from transformers import TrainerCallback

    cls = type("RunCallback", (RunCallbackMixin, TrainerCallback), {})
    return cls(ctx, label, perplexity, rename)
