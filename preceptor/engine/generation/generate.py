"""Generation: answers from any system for a selection of prompts, stored with provenance.

``generate(project, GenerateOptions(system="teacher", split="train"))`` yields events and
stores one output per prompt × system. It is resumable (prompts already answered by the
system are skipped unless ``force``), cancellable between batches, and never drops or
duplicates an item: a failure is stored with its error (``text`` NULL) and retried by the
next run; with ``force`` a failure never overwrites an earlier good answer.

Backends (``systems.backend``):

* ``hf`` — a local transformers model loaded once per call; batched greedy generation
  (prompts sorted by length, left padding, ``batch_size`` per forward, chat template
  applied, bf16 by default: faster than fp32 on CPUs with AVX512-bf16 / AMX);
* ``grounded`` — the offline teacher: the same local path, asked with the
  ``teacher_grounded`` template holding the item's reference facts;
* ``litellm`` — any API or OpenAI-compatible server through :class:`~preceptor.engine.generation.llm.LLMClient`
  (concurrency, retries, cache, cost, budget);
* ``retriever`` — :class:`preceptor.engine.embed.retrievers.RetrieverBackend`.

Every output stores the exact rendered messages, the template hash, the effective
parameters (backend, model, adapter, decoding settings, threads), prompt and completion
tokens, latency and cost.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from preceptor.db import outputs as q_outputs
from preceptor.db import prompts as q_prompts
from preceptor.db import systems as q_systems
from preceptor.engine.events import Done, EventStream, Log, Progress, bulk_writes, check_cancel
from preceptor.engine.generation.systems import GenerateSettings, ensure_default_systems
from preceptor.errors import PreceptorError
from preceptor.prompts import templates

if TYPE_CHECKING:
    from preceptor.project import Project


@dataclass
class GenerateOptions:
    system: str
    split: str = "all"
    collection: str | None = None
    limit: int | None = None
    force: bool = False

    def __post_init__(self) -> None:
        if self.split not in ("all", "train", "val", "test") and not all(
                s.strip() in q_prompts.SPLITS for s in self.split.split(",")):
            raise PreceptorError("Invalid option", f"--split {self.split!r} is not train, val, test or all",
                                 "Use --split train, val, test, all, or a list such as val,test.")
        if self.limit is not None and self.limit < 1:
            raise PreceptorError("Invalid option", f"--limit must be at least 1, got {self.limit}", "")


@dataclass
class Item:
    """One prompt to answer: its rendered messages (or the error that prevents rendering)."""

    prompt: Any
    messages: list[dict[str, str]] | None
    template_hash: str | None
    error: str | None = None


@dataclass
class Result:
    text: str | None
    error: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_ms: float | None = None
    cost: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------------
# messages
# ------------------------------------------------------------------------------------

def _with_system(messages: list[dict[str, str]], template_hash: str, system_prompt: str | None) -> tuple[list[dict[str, str]], str]:
    if not system_prompt or not system_prompt.strip():
        return messages, template_hash
    body = [m for m in messages if m["role"] != "system"]
    digest = hashlib.sha256((template_hash + "\x00system\x00" + system_prompt.strip()).encode("utf-8")).hexdigest()
    return [{"role": "system", "content": system_prompt.strip()}, *body], digest


def render_item(system: Any, prompt: Any) -> Item:
    """The exact messages ``system`` is asked for ``prompt`` (students: passed through; teachers: the teacher prompt)."""
    params = system.params or {}
    try:
        if system.backend == "grounded":
            msgs, h = templates.teacher_messages(prompt, grounded=True)
            msgs, h = _with_system(msgs, h, params.get("system_prompt"))
        elif system.role == "teacher":
            msgs, h = templates.teacher_messages(prompt, grounded=False)
            msgs, h = _with_system(msgs, h, params.get("system_prompt"))
        else:
            msgs, h = templates.student_messages(prompt, params.get("system_prompt"))
    except PreceptorError as exc:
        return Item(prompt, None, None, f"{exc.title}: {exc.message}")
    return Item(prompt, msgs, h)


# ------------------------------------------------------------------------------------
# local (transformers) generation
# ------------------------------------------------------------------------------------

@dataclass
class LocalSettings:
    batch_size: int = 16
    max_new_tokens: int = 256
    dtype: str = "fastest"
    threads: int | None = None
    device: str = "cpu"
    max_input_tokens: int = 2048
    do_sample: bool = False
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    repetition_penalty: float | None = None
    seed: int | None = None
    chat_template_kwargs: dict[str, Any] = field(default_factory=dict)

    def decoding(self) -> dict[str, Any]:
        out: dict[str, Any] = {"max_new_tokens": self.max_new_tokens, "do_sample": self.do_sample}
        if self.do_sample:
            for k in ("temperature", "top_p", "top_k", "seed"):
                if getattr(self, k) is not None:
                    out[k] = getattr(self, k)
        if self.repetition_penalty is not None:
            out["repetition_penalty"] = self.repetition_penalty
        if self.chat_template_kwargs:
            out["chat_template_kwargs"] = dict(self.chat_template_kwargs)
        return out


class LocalGenerator:
    """Batched generation with one loaded model: sort by length, left-pad, ``generate`` per batch."""

    def __init__(self, model: Any, tokenizer: Any, settings: LocalSettings) -> None:
        self.model = model
        self.tok = tokenizer
        self.s = settings
        eos = getattr(model.generation_config, "eos_token_id", None)
        eos_ids = set(eos if isinstance(eos, (list, tuple)) else [eos] if eos is not None else [])
        if tokenizer.eos_token_id is not None:
            eos_ids.add(tokenizer.eos_token_id)
        self.eos_ids = eos_ids
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else next(iter(eos_ids), 0)

    @classmethod
    def load(cls, model: str, *, adapter: str | None, settings: LocalSettings) -> tuple[LocalGenerator, int]:
        from preceptor.engine.models import load_causal_lm, preferred_dtype, set_threads

        threads = set_threads(settings.threads)
        if settings.dtype == "fastest":
            settings.dtype = preferred_dtype(settings.device)
        lm, tok = load_causal_lm(model, adapter=adapter, dtype=settings.dtype, device=settings.device,
                                 threads=threads, merge_adapter=True)
        return cls(lm, tok, settings), threads

    def encode(self, messages: list[dict[str, str]]) -> list[int]:
        """Token ids of the chat-templated prompt (plain text joined by newlines without a template)."""
        if getattr(self.tok, "chat_template", None):
            text = self.tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False,
                                                **self.s.chat_template_kwargs)
            return list(self.tok(text, add_special_tokens=False)["input_ids"])
        text = "\n\n".join(m["content"] for m in messages) + "\n\n"
        return list(self.tok(text)["input_ids"])

    def batches(self, encoded: list[list[int]]) -> list[list[int]]:
        """Indexes grouped into batches of similar length, longest first (a memory problem shows at once)."""
        order = sorted(range(len(encoded)), key=lambda i: (-len(encoded[i]), i))
        b = self.s.batch_size
        return [order[i:i + b] for i in range(0, len(order), b)]

    def run_batch(self, ids: list[list[int]]) -> list[Result]:
        """Generate for one batch of token-id lists (left padding); one Result per row, in order."""
        import torch

        width = max(len(x) for x in ids)
        input_ids = torch.full((len(ids), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for r, x in enumerate(ids):
            input_ids[r, width - len(x):] = torch.tensor(x, dtype=torch.long)
            mask[r, width - len(x):] = 1
        device = getattr(self.model, "device", None)
        if device is not None and str(device) != "cpu":
            input_ids, mask = input_ids.to(device), mask.to(device)
        kwargs: dict[str, Any] = {"max_new_tokens": self.s.max_new_tokens, "do_sample": self.s.do_sample,
                                  "pad_token_id": self.pad_id, "eos_token_id": sorted(self.eos_ids) or None}
        if self.s.do_sample:
            if self.s.seed is not None:
                torch.manual_seed(self.s.seed)
            for k in ("temperature", "top_p", "top_k"):
                if getattr(self.s, k) is not None:
                    kwargs[k] = getattr(self.s, k)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if self.s.repetition_penalty is not None:
            kwargs["repetition_penalty"] = self.s.repetition_penalty
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = self.model.generate(input_ids=input_ids, attention_mask=mask, **kwargs)
        share = (time.perf_counter() - t0) * 1000.0 / len(ids)
        new = out[:, width:].tolist()
        results = []
        for r, toks in enumerate(new):
            n = len(toks)
            for j, t in enumerate(toks):
                if t in self.eos_ids:
                    n = j
                    break
            text = self.tok.decode(toks[:n], skip_special_tokens=True).strip()
            finished = n < len(toks) or (n == len(toks) and len(toks) < self.s.max_new_tokens)
            results.append(Result(text, None, len(ids[r]), n, share, 0.0,
                                  {"truncated": not finished}))
        return results

    def generate(self, messages_list: list[list[dict[str, str]]], cancel: Any = None) -> Iterator[tuple[list[int], list[Result]]]:
        """Yield (indexes, results) batch by batch; prompts over ``max_input_tokens`` get an error result."""
        encoded = [self.encode(m) for m in messages_list]
        too_long = [i for i, e in enumerate(encoded) if len(e) > self.s.max_input_tokens]
        if too_long:
            yield too_long, [Result(None, f"prompt is {len(encoded[i])} tokens, over max_input_tokens = {self.s.max_input_tokens}",
                                    len(encoded[i]), 0, 0.0, 0.0) for i in too_long]
        keep = [i for i in range(len(encoded)) if len(encoded[i]) <= self.s.max_input_tokens]
        for batch in self.batches([encoded[i] for i in keep]):
            check_cancel(cancel)
            idx = [keep[b] for b in batch]
            yield idx, self.run_batch([encoded[i] for i in idx])


def local_settings(system: Any, gs: GenerateSettings) -> LocalSettings:
    p = system.params or {}
    return LocalSettings(
        batch_size=int(p.get("batch_size", gs.batch_size)),
        max_new_tokens=int(p.get("max_new_tokens", gs.max_new_tokens)),
        dtype=str(p.get("dtype", gs.dtype)),
        threads=p.get("threads", gs.threads),
        device=str(p.get("device", gs.device)),
        max_input_tokens=int(p.get("max_input_tokens", gs.max_input_tokens)),
        do_sample=bool(p.get("do_sample", False)),
        temperature=p.get("temperature"), top_p=p.get("top_p"), top_k=p.get("top_k"),
        repetition_penalty=p.get("repetition_penalty"), seed=p.get("seed"),
        chat_template_kwargs=dict(p.get("chat_template_kwargs") or {}),
    )


# ------------------------------------------------------------------------------------
# the engine call
# ------------------------------------------------------------------------------------

class _Writer:
    """Buffers output rows and writes them in batches (one transaction each)."""

    def __init__(self, store: Any, system: Any, every: int, keep_good: set[int]) -> None:
        self.store = store
        self.system = system
        self.every = every
        self.keep_good = keep_good  # prompts with a good answer that a failure must not overwrite (force)
        self.rows: list[dict[str, Any]] = []
        self.done = self.failed = self.kept = 0
        self.prompt_tokens = self.completion_tokens = 0
        self.cost = 0.0

    def add(self, item: Item, res: Result, params: dict[str, Any]) -> None:
        ok = res.error is None and res.text is not None
        if ok:
            self.done += 1
        else:
            self.failed += 1
            if item.prompt.id in self.keep_good:
                self.kept += 1
                return
        self.prompt_tokens += res.prompt_tokens or 0
        self.completion_tokens += res.completion_tokens or 0
        self.cost += res.cost or 0.0
        row_params = dict(params)
        row_params.update(res.extra)
        self.rows.append(dict(
            prompt_id=item.prompt.id, system_id=self.system.id, text=res.text if ok else None,
            error=None if ok else (res.error or "no text returned"), messages=item.messages,
            template_hash=item.template_hash, params=row_params, prompt_tokens=res.prompt_tokens,
            completion_tokens=res.completion_tokens,
            latency_ms=None if res.latency_ms is None else round(res.latency_ms, 3),
            cost=res.cost))
        if len(self.rows) >= self.every:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            q_outputs.record_many(self.store, self.rows)
            self.rows = []


def _base_params(system: Any) -> dict[str, Any]:
    return {"backend": system.backend, "model": system.model, "adapter": system.adapter}


@bulk_writes
def generate(project: Project, opts: GenerateOptions, cancel: Any = None) -> EventStream:
    """Answer the selected prompts with ``opts.system``; Done carries the summary
    (system, selected, done, failed, skipped, tokens, prompt_tokens, completion_tokens, seconds, cost, ...)."""
    t0 = time.monotonic()
    store = project.store
    ensure_default_systems(project)
    system = q_systems.resolve(store, opts.system)
    if system.backend not in ("hf", "grounded", "litellm", "retriever"):
        raise PreceptorError("Cannot generate", f"system {system.name!r} has backend {system.backend!r}: its outputs were imported",
                             "Generate with an hf, grounded or litellm system (`preceptor systems list`).")
    gs = project.section("generate", GenerateSettings)
    if opts.collection and opts.collection not in {c["name"] for c in q_prompts.collections(store)}:
        names = ", ".join(c["name"] for c in q_prompts.collections(store)) or "none yet"
        raise PreceptorError("Unknown collection", f"no collection named {opts.collection!r}", f"Known collections: {names}.")
    flt = q_prompts.PromptFilter(split=opts.split, collections=[opts.collection] if opts.collection else None,
                                 limit=opts.limit)
    selected = q_prompts.select(store, flt)
    good = q_outputs.done_prompt_ids(store, system.id)
    todo = selected if opts.force else [p for p in selected if p.id not in good]
    skipped = len(selected) - len(todo)
    # a paid answer is written as it arrives (its own small transaction): a crash loses none
    every = 1 if system.backend == "litellm" else gs.write_every
    writer = _Writer(store, system, every, good if opts.force else set())
    summary: dict[str, Any] = {"system": system.name, "backend": system.backend, "model": system.model,
                               "selected": len(selected), "skipped": skipped}
    if not selected:
        yield Log("warning", f"no prompts match (split {opts.split}"
                  + (f", collection {opts.collection}" if opts.collection else "") + "); import some with `preceptor import FILE`")
    yield Log("info", f"{system.name} ({system.backend}: {system.model}): {len(todo)} to answer, {skipped} already answered")
    if todo:
        yield Progress(0, len(todo), system.name)
    try:
        if todo:
            items = [render_item(system, p) for p in todo]
            if system.backend in ("hf", "grounded"):
                yield from _run_local(system, items, gs, writer, summary, cancel)
            elif system.backend == "litellm":
                yield from _run_litellm(system, items, gs, writer, summary, cancel)
            else:
                yield from _run_retriever(project, system, items, writer, summary, cancel)
    finally:
        writer.flush()
    if writer.kept:
        yield Log("warning", f"{writer.kept} items failed this time; their earlier answers were kept")
    if writer.failed - writer.kept:
        yield Log("warning", f"{writer.failed - writer.kept} items failed (stored with their error; the next run retries them)")
    summary.update({
        "done": writer.done, "failed": writer.failed,
        "prompt_tokens": writer.prompt_tokens, "completion_tokens": writer.completion_tokens,
        "tokens": writer.prompt_tokens + writer.completion_tokens,
        "cost": round(writer.cost, 6), "seconds": round(time.monotonic() - t0, 2),
    })
    yield Done(summary)


API_DEFAULT_MAX_TOKENS = 1024  # sent when an API system sets none: a bound on every reply, and on the budget


def _fail_unrenderable(items: list[Item], writer: _Writer, params: dict[str, Any]) -> list[int]:
    """Store rendering failures (e.g. no reference for the grounded teacher); return the renderable indexes."""
    ok = []
    for i, it in enumerate(items):
        if it.error is not None:
            writer.add(it, Result(None, it.error), params)
        else:
            ok.append(i)
    return ok


def _run_local(system: Any, items: list[Item], gs: GenerateSettings, writer: _Writer, summary: dict[str, Any],
               cancel: Any) -> EventStream:
    s = local_settings(system, gs)
    base = _base_params(system)
    ready = _fail_unrenderable(items, writer, base)
    done = len(items) - len(ready)
    if done:
        yield Progress(done, len(items), "unrenderable items stored as failed")
    if not ready:
        return
    check_cancel(cancel)
    t_load = time.monotonic()
    gen, threads = LocalGenerator.load(system.model, adapter=system.adapter, settings=s)
    yield Log("info", f"loaded {system.model}{' + ' + system.adapter if system.adapter else ''} in "
              f"{time.monotonic() - t_load:.1f}s ({s.dtype}, {threads} thread{'s' if threads != 1 else ''}, batch {s.batch_size})")
    params = {**base, **s.decoding(), "batch_size": s.batch_size, "dtype": s.dtype, "threads": threads,
              "device": s.device}
    summary.update({"threads": threads, "batch_size": s.batch_size, "dtype": s.dtype})
    t_gen = time.monotonic()
    new_tokens = 0
    for idx, results in gen.generate([items[i].messages for i in ready], cancel):
        for j, res in zip(idx, results, strict=True):
            writer.add(items[ready[j]], res, params)
            new_tokens += res.completion_tokens or 0
        done += len(idx)
        rate = new_tokens / max(1e-9, time.monotonic() - t_gen)
        yield Progress(done, len(items), f"{rate:.1f} tok/s")
        writer.flush()
    summary["tokens_per_s"] = round(new_tokens / max(1e-9, time.monotonic() - t_gen), 2)


def _run_litellm(system: Any, items: list[Item], gs: GenerateSettings, writer: _Writer, summary: dict[str, Any],
                 cancel: Any) -> EventStream:
    from preceptor.engine.generation.llm import BUDGET_EXCEEDED, LLMClient, semantic_params

    p = dict(system.params or {})
    api_base = p.pop("api_base", None)
    p.pop("system_prompt", None)
    concurrency = int(p.pop("concurrency", gs.concurrency))
    max_retries = int(p.pop("max_retries", gs.max_retries))
    timeout = float(p.pop("timeout", gs.timeout))
    budget = p.pop("budget_usd", gs.budget_usd)
    base = _base_params(system)
    ready = _fail_unrenderable(items, writer, base)
    done = len(items) - len(ready)
    logs: list[str] = []
    client = LLMClient(writer.store, model=system.model, api_base=api_base, params=p,
                       concurrency=concurrency, max_retries=max_retries, timeout=timeout,
                       budget_usd=None if budget is None else float(budget), on_log=logs.append,
                       system=system.name, default_max_tokens=API_DEFAULT_MAX_TOKENS)
    params = {**base, **semantic_params(p)}
    if api_base:
        params["api_base"] = api_base
    budget_left = 0
    stream = client.complete_many([items[i].messages for i in ready], cancel=cancel)
    try:
        for j, comp in stream:
            for line in logs:
                yield Log("warning", f"{system.name}: {line}")
            logs.clear()
            if comp.error == BUDGET_EXCEEDED:
                budget_left += 1
                continue
            res = Result(comp.text, comp.error, comp.prompt_tokens, comp.completion_tokens, comp.latency_ms, comp.cost,
                         {"cached": True} if comp.cached else {})
            writer.add(items[ready[j]], res, params)
            done += 1
            if done % 4 == 0 or done == len(items):
                yield Progress(done, len(items), f"${client.cost_total:.4f}, {client.calls_made} calls")
    finally:
        stream.close()  # stops requests in flight and writes the cache rows gathered so far
        client.close()
    for line in logs:
        yield Log("warning", f"{system.name}: {line}")
    if budget_left:
        yield Log("warning", f"budget of ${float(budget):.4f} reached (spent ${client.cost_total:.4f}); "
                  f"{budget_left} items were not sent and stay to do for the next run")
    summary.update({"calls": client.calls_made, "retries": client.retries, "cache_hits": client.cache_hits,
                    "budget_stopped": budget_left, "concurrency": concurrency})
    yield Progress(len(items), len(items), "done")


def _run_retriever(project: Project, system: Any, items: list[Item], writer: _Writer, summary: dict[str, Any],
                   cancel: Any) -> EventStream:
    from preceptor.engine.embed.retrievers import RetrieverBackend

    backend = RetrieverBackend(project, system)
    params = {**_base_params(system), **{k: v for k, v in (system.params or {}).items()}}
    done = 0
    chunk = 64
    for start in range(0, len(items), chunk):
        check_cancel(cancel)
        part = items[start:start + chunk]
        results = backend.generate([it.prompt for it in part])
        for it, r in zip(part, results, strict=True):
            messages = [{"role": "user", "content": it.prompt.text}]
            it = Item(it.prompt, messages, templates.get(templates.STUDENT).hash)
            writer.add(it, Result(r.get("text"), r.get("error"), None, None, r.get("latency_ms"), 0.0), params)
        done += len(part)
        yield Progress(done, len(items), system.name)
