"""Perplexity of outputs under a causal LM (by default the packaged student).

An output's perplexity is ``exp(mean negative log-likelihood of its tokens)``, conditioned
on the student's rendered prompt when the prompt is given (the answer as the student
would be asked for it), else on nothing. Outputs are scored in length-sorted batches
through one loaded model. The eval-loss perplexity of training runs is ``exp(eval_loss)``
(:func:`from_eval_loss`).
"""

from __future__ import annotations

import math
from typing import Any

from preceptor.errors import PreceptorError

DEFAULT_MODEL = "smollm2-135m-instruct"


def from_eval_loss(loss: float | None) -> float | None:
    """Perplexity from a mean token cross-entropy (``eval_loss``); None when unusable."""
    if loss is None or not math.isfinite(loss) or loss > 50:
        return None
    return math.exp(loss)


def _template_hash() -> str:
    """The student template's hash (so a changed template invalidates cached perplexities)."""
    try:
        from preceptor.prompts.templates import student_messages

        return student_messages("x")[1] or "-"
    except (ImportError, AttributeError):
        return "-"


def render_prompt(tokenizer: Any, prompt: str) -> str:
    """The student's prompt as text, ready for the answer to follow."""
    try:
        from preceptor.prompts.templates import student_messages

        messages, _ = student_messages(prompt)
    except (ImportError, AttributeError):
        messages = [{"role": "user", "content": prompt}]
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return "\n".join(m["content"] for m in messages) + "\n"


def token_nll(model: Any, batch: list[tuple[list[int], list[int]]], pad_id: int) -> list[tuple[float, int]]:
    """(sum of NLL, number of scored tokens) of each (context ids, target ids) pair, one forward pass."""
    import torch

    width = max(len(c) + len(t) for c, t in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    for i, (c, t) in enumerate(batch):
        seq = c + t
        ids[i, :len(seq)] = torch.tensor(seq)
        mask[i, :len(seq)] = 1
        labels[i, len(c):len(seq)] = torch.tensor(t)
    with torch.inference_mode():
        logits = model(input_ids=ids, attention_mask=mask).logits.float()
    shift_logits = logits[:, :-1, :]
    shift_labels = labels[:, 1:]
    nll = torch.nn.functional.cross_entropy(
        shift_logits.reshape(-1, shift_logits.size(-1)), shift_labels.reshape(-1), ignore_index=-100, reduction="none"
    ).view(len(batch), -1)
    counted = (shift_labels != -100).sum(dim=1)
    return [(float(nll[i].sum()), int(counted[i])) for i in range(len(batch))]


class Perplexity:
    """Per-output perplexity under one causal LM, loaded once (contract A's ``load_causal_lm``)."""

    name = "ppl"

    def __init__(self, model: str | None = None, adapter: str | None = None, batch_size: int = 8,
                 max_tokens: int = 512, dtype: str = "auto", threads: int | None = None,
                 conditional: bool = True, loaded: tuple[Any, Any] | None = None) -> None:
        if max_tokens < 8:
            raise ValueError("max_tokens must be at least 8")
        self.model_name = model or DEFAULT_MODEL
        self.adapter = adapter
        self.dtype = dtype
        self.threads = threads
        self.batch_size = max(1, batch_size)
        self.max_tokens = max_tokens
        self.conditional = conditional
        self._loaded = loaded
        self.signature = (f"ppl:model={self.model_name}:adapter={adapter or '-'}:max={max_tokens}"
                          f":cond={int(conditional)}:dtype={dtype}:template={_template_hash()[:12]}")
        self.tokens_scored = 0

    def via(self, lang: str) -> str:
        return f"{self.model_name}{' + ' + self.adapter if self.adapter else ''} (its own tokenizer)"

    def _ensure(self) -> tuple[Any, Any]:
        """Load the model on first use (a fully cached evaluation never loads it)."""
        if self._loaded is None:
            from preceptor.engine import models

            self._loaded = models.load_causal_lm(self.model_name, adapter=self.adapter, dtype=self.dtype,
                                                 threads=self.threads)
        return self._loaded

    @property
    def model(self) -> Any:
        return self._ensure()[0]

    @property
    def tokenizer(self) -> Any:
        return self._ensure()[1]

    @property
    def pad_id(self) -> int:
        tok = self.tokenizer
        return tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)

    def _encode(self, prediction: str, prompt: str | None) -> tuple[list[int], list[int]]:
        tok = self.tokenizer
        target = tok(prediction, add_special_tokens=False)["input_ids"][: self.max_tokens - 1]
        if self.conditional and prompt is not None:
            ctx = tok(render_prompt(tok, prompt), add_special_tokens=False)["input_ids"]
        else:
            ctx = [tok.bos_token_id] if tok.bos_token_id is not None else []
        if not ctx:  # the first target token needs something to be predicted from
            ctx, target = target[:1], target[1:]
        room = max(1, self.max_tokens - len(target))
        return ctx[-room:], target

    def score(self, predictions: list[str], references: list[str] | None = None,
              prompts: list[str] | None = None) -> list[float | None]:
        if prompts is not None and len(prompts) != len(predictions):
            raise ValueError(f"{len(predictions)} predictions but {len(prompts)} prompts")
        pairs = [self._encode(p or "", prompts[i] if prompts else None) for i, p in enumerate(predictions)]
        out: list[float | None] = [None] * len(pairs)
        order = sorted((i for i, (_, t) in enumerate(pairs) if t), key=lambda i: -sum(map(len, pairs[i])))
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            try:
                res = token_nll(self.model, [pairs[i] for i in idx], self.pad_id)
            except RuntimeError as exc:  # pragma: no cover - out of memory and the like
                raise PreceptorError("Perplexity failed", str(exc).splitlines()[0], "Lower [eval] ppl_batch_size or ppl_max_tokens.")
            for i, (nll, n) in zip(idx, res, strict=True):
                self.tokens_scored += n
                out[i] = math.exp(nll / n) if n else None
        return out
