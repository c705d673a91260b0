"""The one litellm client: async calls under a concurrency limit, retries, a cache, accounting.

Used by generation (teacher and any API system) and by the LLM judge::

    client = LLMClient(store, model="openrouter/openai/gpt-4o-mini", params={"temperature": 0})
    for index, completion in client.complete_many([messages, ...], cancel=cancel):
        ...

Design notes (these keep the engine as fast as raw ``litellm.acompletion``):

* one event loop in one background thread per client, reused across calls, so litellm's
  HTTP sessions are reused; the requests run as ``concurrency`` worker coroutines;
* nothing slow on the event loop: no per-call logging (only retries are noted), no SQLite
  (cache rows are written in batches from the caller's thread), no cost-map lookups (the
  per-token prices are resolved once per client);
* transient failures (429, 5xx, timeouts, connection errors, malformed responses) are
  retried by tenacity with exponential backoff and full jitter (at least ``Retry-After``),
  at most ``max_retries`` per request; errors that are not transient are never retried:
  a rejected key, a refused permission, an unknown model or a bad request stop the run
  after one attempt with a titled error naming the system and the environment variable
  to set (a prompt over the context window or refused by a content policy fails that
  item only);
* the cache key is model + messages + the semantic params (temperature, max_tokens, ...;
  not the API key, timeout or prices), so a rerun costs zero calls; each answer is written
  to the cache as it arrives (one small transaction), so a crash loses no paid answer;
* the budget is a hard cap: before a request is sent its worst case is reserved (the
  counted prompt tokens plus ``max_tokens``, or the largest completion seen so far, 256
  before any, at the per-token prices); the reservation is settled on the actual usage
  when the answer arrives. A request whose worst case does not fit gets the error
  ``"budget exceeded"`` and is not sent, at any concurrency. A model without a known price
  has an unknown cost (``None``), and a budget on it is refused.

API keys come from the environment (or ``api_key``); they are never part of the cache key,
never stored.
"""

from __future__ import annotations

import asyncio
import atexit
import hashlib
import json
import os
import queue
import random
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

from preceptor.errors import Cancelled, PreceptorError

BUDGET_EXCEEDED = "budget exceeded"

# Request kwargs that do not change the answer: left out of the cache key and of records.
NON_SEMANTIC = frozenset({
    "api_key", "api_key_env", "timeout", "request_timeout", "num_retries", "max_retries",
    "input_cost_per_token", "output_cost_per_token", "drop_params", "concurrency", "budget_usd",
    "metadata", "stream", "api_base", "system_prompt",
})
# Keys that are ours, never sent to litellm.
LOCAL_ONLY = frozenset({"api_key_env", "concurrency", "budget_usd", "input_cost_per_token", "output_cost_per_token",
                        "system_prompt"})

RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529})
# Not transient, and the same for every request of the run: one attempt, then the run stops.
FATAL = {
    "AuthenticationError": ("API key rejected", 401), "PermissionDeniedError": ("Permission denied", 403),
    "NotFoundError": ("Unknown model", 404), "BadRequestError": ("Request refused", 400),
}
# Bad requests caused by one item (not the setup): that item fails, the run goes on.
ITEM_ERRORS = frozenset({"ContextWindowExceededError", "ContentPolicyViolationError"})
FIRST_COMPLETION_GUESS = 256  # reserved for a reply of unknown length before any reply was seen

_litellm_mod: Any = None
_litellm_lock = threading.Lock()


def import_litellm() -> Any:
    """Import litellm configured for offline, quiet use (local cost map, no banners, no chatter)."""
    global _litellm_mod
    if _litellm_mod is not None:
        return _litellm_mod
    with _litellm_lock:
        if _litellm_mod is None:
            os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
            os.environ.setdefault("LITELLM_LOG", "ERROR")
            import logging

            import litellm

            litellm.suppress_debug_info = True
            litellm.telemetry = False
            litellm.set_verbose = False
            for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "litellm"):
                logging.getLogger(name).setLevel(logging.CRITICAL)
            _litellm_mod = litellm
    return _litellm_mod


_loop_state: dict[str, Any] = {}


def _shared_loop() -> asyncio.AbstractEventLoop:
    """The process's one background event loop for litellm calls (started on first use)."""
    loop = _loop_state.get("loop")
    if loop is not None and not loop.is_closed() and _loop_state["thread"].is_alive():
        return loop
    with _litellm_lock:
        loop = _loop_state.get("loop")
        if loop is None or loop.is_closed() or not _loop_state["thread"].is_alive():
            loop = asyncio.new_event_loop()
            t = threading.Thread(target=loop.run_forever, name="preceptor-llm-loop", daemon=True)
            t.start()
            _loop_state.update(loop=loop, thread=t)
            if not _loop_state.get("atexit"):
                atexit.register(shutdown_loop)
                _loop_state["atexit"] = True
    return loop


def shutdown_loop() -> None:
    """Cancel what runs on the shared loop (litellm's background tasks) and stop it."""
    loop, t = _loop_state.get("loop"), _loop_state.get("thread")
    if loop is None or loop.is_closed():
        return

    async def cancel_tasks() -> None:
        tasks = [x for x in asyncio.all_tasks() if x is not asyncio.current_task()]
        for x in tasks:
            x.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    if loop.is_running():
        try:
            asyncio.run_coroutine_threadsafe(cancel_tasks(), loop).result(timeout=5)
        except Exception:  # noqa: BLE001 - best effort at exit
            pass
        loop.call_soon_threadsafe(loop.stop)
        if t is not None:
            t.join(timeout=5)
    if not loop.is_running():
        loop.close()
    _loop_state.pop("loop", None)


@dataclass
class Completion:
    text: str | None
    error: str | None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    latency_ms: float = 0.0
    cached: bool = False
    raw: dict[str, Any] | None = None
    attempts: int = 0
    fatal: PreceptorError | None = None


@dataclass
class _Job:
    key: str
    messages: list[dict[str, Any]]
    kwargs: dict[str, Any]
    indexes: list[int] = field(default_factory=list)
    worst_usd: float = 0.0  # unused when the reply length is unknown: see LLMClient._worst_case
    prompt_tokens: int = 0  # counted before sending (budget reservations)


def semantic_params(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in sorted(params.items()) if k not in NON_SEMANTIC and v is not None}


def cache_key(model: str, messages: list[dict[str, Any]], params: dict[str, Any]) -> str:
    """sha256 of model + messages + semantic params (stable across runs and machines)."""
    blob = json.dumps({"model": model, "messages": messages, "params": semantic_params(params)},
                      sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _status_of(exc: BaseException) -> int | None:
    code = getattr(exc, "status_code", None)
    try:
        return int(code) if code is not None else None
    except (TypeError, ValueError):
        return None


def fatal_kind(exc: BaseException) -> tuple[str, int] | None:
    """(title, status) when ``exc`` is an error no retry can fix and that concerns the whole run."""
    names = [c.__name__ for c in type(exc).__mro__]
    if any(n in ITEM_ERRORS for n in names):
        return None
    status = _status_of(exc)
    by_status = next((v for v in FATAL.values() if v[1] == status), None)
    if by_status is not None and status != 400:  # the HTTP status says more than the SDK's class
        return by_status
    for n in names:
        if n in FATAL:
            return FATAL[n]
    return by_status


def is_retryable(exc: BaseException) -> bool:
    """429 / 5xx / timeouts / connection errors (and malformed replies, which litellm reports as 500)."""
    if fatal_kind(exc) is not None or any(c.__name__ in ITEM_ERRORS for c in type(exc).__mro__):
        return False
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError, ConnectionError)):
        return True
    name = type(exc).__name__
    if name in ("Timeout", "APITimeoutError", "APIConnectionError", "RateLimitError", "InternalServerError",
                "ServiceUnavailableError", "BadGatewayError"):
        return True
    status = _status_of(exc)
    return status in RETRYABLE_STATUS or (status is not None and status >= 500)


def _retry_after(exc: BaseException) -> float | None:
    resp = getattr(exc, "response", None)
    headers = getattr(resp, "headers", None)
    if not headers:
        return None
    try:
        value = headers.get("retry-after") or headers.get("Retry-After")
        return float(value) if value is not None else None
    except (TypeError, ValueError, AttributeError):
        return None


def describe_error(exc: BaseException) -> str:
    status = _status_of(exc)
    name = type(exc).__name__
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    # litellm repeats the class name: "litellm.RateLimitError: RateLimitError: OpenAIException - ..."
    for prefix in ("litellm.", f"{name}:", f"{name}:", "OpenAIException -"):
        text = text.strip()
        if text.startswith(prefix):
            text = text[len(prefix):]
    text = text.strip()
    head = name + (f" (HTTP {status})" if status else "")
    return (f"{head}: {text}" if text else head)[:500]


class LLMClient:
    """litellm behind a concurrency limit, with retries, a SQLite cache and accounting."""

    def __init__(self, store: Any, *, model: str, api_base: str | None = None, params: dict[str, Any] | None = None,
                 concurrency: int = 16, max_retries: int = 5, timeout: float = 60.0, budget_usd: float | None = None,
                 use_cache: bool = True, api_key: str | None = None, backoff_base: float = 0.5,
                 backoff_max: float = 30.0, on_log: Callable[[str], None] | None = None, system: str | None = None,
                 default_max_tokens: int | None = None) -> None:
        if not model:
            raise PreceptorError("No model named", "an LLM system needs a model string",
                                 "Use a litellm provider string, e.g. openrouter/openai/gpt-4o-mini or openai/NAME with --api-base.")
        if concurrency < 1:
            raise PreceptorError("Invalid setting", f"concurrency must be at least 1, got {concurrency}", "")
        if max_retries < 0:
            raise PreceptorError("Invalid setting", f"max_retries must be 0 or more, got {max_retries}", "")
        self.store = store
        self.model = model
        self.api_base = api_base or None
        params = dict(params or {})
        key_env = params.get("api_key_env")
        self.api_key = api_key or params.pop("api_key", None) or (os.environ.get(key_env) if key_env else None)
        params.pop("api_key", None)
        if default_max_tokens is not None and params.get("max_tokens") is None \
                and params.get("max_completion_tokens") is None:
            params["max_tokens"] = int(default_max_tokens)  # sent, and reserved by the budget
        self.params = params
        self.system = system
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.timeout = timeout
        self.budget_usd = budget_usd
        self.use_cache = use_cache and store is not None
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.on_log = on_log
        # accounting (updated on the loop thread, read anywhere)
        self.calls_made = 0
        self.retries = 0
        self.cost_total = 0.0
        self.cache_hits = 0
        self.budget_hit = False
        self.cost_unknown = False  # some call had usage but no known price
        self.largest_completion = 0  # completion tokens, the reservation when max_tokens is not set
        self._reserved = 0.0  # USD held by requests in flight (budget)
        self._prices: tuple[float, float] | None = None
        self._prices_known: bool | None = None
        self._rng = random.Random()

    # -- request shaping ----------------------------------------------------------------
    def request_params(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """The semantic params of one request (what is recorded with an output)."""
        merged = {**self.params, **(extra or {})}
        return semantic_params(merged)

    def key_for(self, messages: list[dict[str, Any]], extra: dict[str, Any] | None = None) -> str:
        return cache_key(self.model, messages, {**self.params, **(extra or {})})

    def _call_kwargs(self, extra: dict[str, Any] | None) -> dict[str, Any]:
        merged = {**self.params, **(extra or {})}
        kwargs = {k: v for k, v in merged.items() if k not in LOCAL_ONLY and v is not None}
        kwargs.pop("api_key", None)
        kwargs.pop("stream", None)
        ctk = kwargs.pop("chat_template_kwargs", None)
        if ctk:  # vLLM / SGLang read it from the request body (e.g. Qwen3's enable_thinking)
            kwargs["extra_body"] = {**(kwargs.get("extra_body") or {}), "chat_template_kwargs": ctk}
        if self.api_base:
            kwargs["api_base"] = self.api_base
        if self.api_key:
            kwargs["api_key"] = self.api_key
        kwargs["timeout"] = self.timeout
        kwargs["max_retries"] = 0  # ours, not the SDK's: bounded, logged, with jitter
        return kwargs

    def prices(self) -> tuple[float, float] | None:
        """USD per prompt token and per completion token (params override litellm's local map);
        ``None`` when neither gives a price (the cost is then unknown, not zero)."""
        if self._prices_known is None:
            pin, pout = self.params.get("input_cost_per_token"), self.params.get("output_cost_per_token")
            if pin is None or pout is None:
                mapped = _map_prices(self.model)
                if mapped is not None:
                    pin = mapped[0] if pin is None else pin
                    pout = mapped[1] if pout is None else pout
            self._prices_known = pin is not None and pout is not None
            self._prices = (float(pin), float(pout)) if self._prices_known else None  # type: ignore[arg-type]
        return self._prices

    def _check_budget(self) -> None:
        if self.budget_usd is None:
            return
        if self.prices() is None:
            who = f"system {self.system!r} ({self.model})" if self.system else self.model
            raise PreceptorError(
                "Budget on an unknown price",
                f"{who}: litellm's cost map has no price for this model, so a budget of ${self.budget_usd:g} cannot be kept",
                "Give the prices in the system's params (input_cost_per_token and output_cost_per_token, USD per token), "
                "or remove budget_usd.")

    def _worst_case(self, job: _Job) -> float:
        """USD reserved for one attempt of ``job``: counted prompt tokens + the longest possible answer."""
        prices = self.prices()
        if prices is None:
            return 0.0
        pin, pout = prices
        limit = job.kwargs.get("max_tokens") or job.kwargs.get("max_completion_tokens")
        if not limit:
            limit = self.largest_completion or FIRST_COMPLETION_GUESS
        return job.prompt_tokens * pin + int(limit) * pout

    def _prompt_tokens(self, messages: list[dict[str, Any]]) -> int:
        litellm = import_litellm()
        try:
            return int(litellm.token_counter(model=self.model, messages=messages))
        except Exception:  # noqa: BLE001 - no tokenizer for this model: a generous estimate
            chars = sum(len(str(m.get("content") or "")) for m in messages)
            return chars + 8 * len(messages)

    # -- the event loop ------------------------------------------------------------------
    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        return _shared_loop()

    def close(self) -> None:
        """Nothing to release per client: every client shares the process's one event loop
        (litellm keeps its HTTP sessions and logging worker bound to a single loop)."""

    def __enter__(self) -> LLMClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the async part (runs on the loop thread) ----------------------------------------
    async def _call(self, litellm: Any, job: _Job, stop: threading.Event, out: queue.Queue) -> tuple[Completion, Any]:
        """One request: budget reservation, transient retries (tenacity), settlement on the usage."""
        from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, stop_any

        t0 = time.perf_counter()
        prices = self._prices
        attempts = 0

        def wait(state: Any) -> float:
            delay = self._rng.uniform(0, min(self.backoff_max, self.backoff_base * (2 ** (state.attempt_number - 1))))
            after = _retry_after(state.outcome.exception()) if state.outcome is not None else None
            return max(delay, min(after, self.backoff_max)) if after else delay

        def before_sleep(state: Any) -> None:
            self.retries += 1
            exc = state.outcome.exception()
            out.put(("log", f"retry {state.attempt_number}/{self.max_retries} in {state.upcoming_sleep:.2f}s "
                            f"after {describe_error(exc)[:160]}"))

        retrying = AsyncRetrying(stop=stop_any(stop_after_attempt(self.max_retries + 1), lambda _s: stop.is_set()),
                                 wait=wait, retry=retry_if_exception(is_retryable), before_sleep=before_sleep,
                                 reraise=True)
        try:
            async for attempt in retrying:
                with attempt:
                    attempts = attempt.retry_state.attempt_number
                    reserve = self._worst_case(job) if self.budget_usd is not None else 0.0
                    if self.budget_usd is not None:
                        # no await between the check and the reservation: atomic on the loop thread
                        if self.cost_total + self._reserved + reserve > self.budget_usd + 1e-12:
                            self.budget_hit = True
                            return Completion(None, BUDGET_EXCEEDED, attempts=attempts - 1), None
                        self._reserved += reserve
                    self.calls_made += 1
                    try:
                        resp = await litellm.acompletion(model=self.model, messages=job.messages, **job.kwargs)
                    finally:
                        if self.budget_usd is not None:
                            self._reserved -= reserve
                    choice = resp.choices[0]
                    text = choice.message.content
                    usage = getattr(resp, "usage", None)
                    pt = int(getattr(usage, "prompt_tokens", 0) or 0)
                    ct = int(getattr(usage, "completion_tokens", 0) or 0)
                    self.largest_completion = max(self.largest_completion, ct)
                    if prices is None:
                        cost: float | None = None
                        self.cost_unknown = True
                    else:
                        cost = pt * prices[0] + ct * prices[1]
                        self.cost_total += cost  # settled: the reservation above is released
                    latency = (time.perf_counter() - t0) * 1000
                    if text is None:
                        reason = getattr(choice, "finish_reason", None)
                        return Completion(None, f"empty response (finish_reason={reason})", pt, ct, cost, latency,
                                          attempts=attempts), None
                    return Completion(text, None, pt, ct, cost, latency, attempts=attempts), resp
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure becomes a stored error (or stops the run)
            latency = (time.perf_counter() - t0) * 1000
            fatal = fatal_kind(exc)
            if fatal is not None:
                stop.set()  # the same answer awaits every other request: send no more
                return Completion(None, describe_error(exc), latency_ms=latency, attempts=attempts,
                                  fatal=self._fatal_error(fatal[0], exc)), None
            note = f" (after {attempts} attempts)" if attempts > 1 else ""
            return Completion(None, describe_error(exc) + note, latency_ms=latency, attempts=attempts), None
        raise AssertionError("unreachable")  # pragma: no cover

    def key_env(self) -> str:
        """The environment variable that holds this model's API key."""
        env = self.params.get("api_key_env")
        if env:
            return str(env)
        try:
            missing = import_litellm().validate_environment(self.model).get("missing_keys") or []
        except Exception:  # noqa: BLE001 - unknown provider
            missing = []
        if missing:
            return str(missing[0])
        provider = self.model.split("/", 1)[0] if "/" in self.model else "openai"
        return f"{provider.upper().replace('-', '_')}_API_KEY"

    def _fatal_error(self, title: str, exc: BaseException) -> PreceptorError:
        who = f"system {self.system!r} ({self.model})" if self.system else f"model {self.model}"
        env = self.key_env()
        message = f"{who}: {describe_error(exc)}; not retried"
        if title == "API key rejected":
            hint = (f"Set {env} to a valid key (export {env}=...) or name another variable with api_key_env in the "
                    "system's params, then run again.")
        elif title == "Permission denied":
            hint = f"The key in {env} may not use this model: check the account's access, or set {env} to another key."
        elif title == "Unknown model":
            hint = (f"Check the model name with the provider (litellm form provider/model) and --api-base; "
                    f"the key is read from {env}.")
        else:
            hint = (f"Check the system's params (a setting the provider does not accept) and the key in {env}; "
                    "`preceptor systems list` shows them.")
        return PreceptorError(title, message, hint)

    async def _run(self, jobs: list[_Job], out: queue.Queue, stop: threading.Event) -> None:
        litellm = import_litellm()
        pending = list(reversed(jobs))

        async def worker() -> None:
            while pending and not stop.is_set():
                job = pending.pop()
                comp, resp = await self._call(litellm, job, stop, out)
                out.put(("done", job, comp, resp))
                if comp.fatal is not None:
                    return

        try:
            await asyncio.gather(*(worker() for _ in range(min(self.concurrency, len(jobs)))))
        finally:
            out.put(("end",))

    # -- the public, synchronous face ----------------------------------------------------
    def complete_many(self, requests: list[list[dict[str, Any]]], cancel: threading.Event | None = None,
                      extra_params: list[dict[str, Any]] | None = None) -> Generator[tuple[int, Completion], None, None]:
        """Yield ``(index, Completion)`` for every request, as they finish (cache hits first).

        Every index is yielded exactly once unless ``cancel`` is set, which stops new
        requests, abandons the ones in flight and raises :class:`Cancelled`.
        """
        if extra_params is not None and len(extra_params) != len(requests):
            raise ValueError("extra_params must have one entry per request")
        jobs: dict[str, _Job] = {}
        order: list[_Job] = []
        for i, messages in enumerate(requests):
            extra = extra_params[i] if extra_params else None
            key = self.key_for(messages, extra)
            if not self.use_cache:
                key = f"{key}:{i}"  # no dedupe without the cache
            job = jobs.get(key)
            if job is None:
                job = jobs[key] = _Job(key, messages, self._call_kwargs(extra))
                order.append(job)
            job.indexes.append(i)

        if self.use_cache and order:
            from preceptor.db import cache as q_cache

            hits = q_cache.get_many(self.store, [j.key for j in order])
            todo = []
            for job in order:
                hit = hits.get(job.key)
                if hit is None:
                    todo.append(job)
                    continue
                text = _text_of(hit.response)
                if text is None:
                    todo.append(job)
                    continue
                for i in job.indexes:
                    self.cache_hits += 1
                    yield i, Completion(text, None, hit.prompt_tokens or 0, hit.completion_tokens or 0, 0.0, 0.0,
                                        cached=True, raw=hit.response)
            order = todo
        if not order:
            return
        if cancel is not None and cancel.is_set():
            raise Cancelled()

        self.prices()
        self._check_budget()
        if self.budget_usd is not None:
            for job in order:  # counted here, off the event loop
                job.prompt_tokens = self._prompt_tokens(job.messages)
        loop = self._ensure_loop()
        out: queue.Queue = queue.Queue()
        stop = threading.Event()
        future = asyncio.run_coroutine_threadsafe(self._run(order, out, stop), loop)
        to_cache: list[dict[str, Any]] = []
        finished = False
        try:
            while True:
                try:
                    item = out.get(timeout=0.05)
                except queue.Empty:
                    if cancel is not None and cancel.is_set():
                        raise Cancelled()
                    continue
                kind = item[0]
                if kind == "end":
                    finished = True
                    break
                if kind == "log":
                    self._log(item[1])
                    continue
                _, job, comp, resp = item
                if resp is not None:
                    comp.raw = _dump(resp)
                    if self.use_cache and comp.error is None:
                        to_cache.append({
                            "key": job.key, "model": self.model,
                            "request": json.dumps({"model": self.model, "messages": job.messages,
                                                   "params": self.request_params(_extra_of(job.kwargs))},
                                                  ensure_ascii=False, sort_keys=True),
                            "response": json.dumps(comp.raw, ensure_ascii=False, default=str),
                            "prompt_tokens": comp.prompt_tokens, "completion_tokens": comp.completion_tokens,
                            "cost": comp.cost,
                        })
                        self._flush(to_cache)  # paid for: durable before the caller sees it
                for n, i in enumerate(job.indexes):
                    # duplicates share one call: count its cost and tokens once
                    yield i, comp if n == 0 else Completion(comp.text, comp.error, comp.prompt_tokens,
                                                            comp.completion_tokens, 0.0, comp.latency_ms,
                                                            cached=True, raw=comp.raw, attempts=0)
                if comp.fatal is not None:
                    raise comp.fatal
                if cancel is not None and cancel.is_set():
                    raise Cancelled()
        finally:
            if not finished:
                stop.set()
                future.cancel()
            self._flush(to_cache)
            # drain retry notes that arrived late
            while True:
                try:
                    item = out.get_nowait()
                except queue.Empty:
                    break
                if item[0] == "log":
                    self._log(item[1])

    def complete(self, messages: list[dict[str, Any]], **extra: Any) -> Completion:
        """One request (a convenience over :meth:`complete_many`)."""
        for _, comp in self.complete_many([messages], extra_params=[extra] if extra else None):
            return comp
        raise RuntimeError("no completion")  # pragma: no cover

    def _flush(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        from preceptor.db import cache as q_cache

        q_cache.put_many(self.store, rows)
        rows.clear()

    def _log(self, text: str) -> None:
        if self.on_log is not None:
            self.on_log(text)

    def summary(self) -> dict[str, Any]:
        return {"model": self.model, "calls": self.calls_made, "retries": self.retries, "cache_hits": self.cache_hits,
                "cost": None if self.cost_unknown and not self.cost_total else round(self.cost_total, 6),
                "cost_unknown": self.cost_unknown, "budget_hit": self.budget_hit}


def _map_prices(model: str) -> tuple[float, float] | None:
    """Per-token prices from litellm's local cost map: the full name, then without its provider
    prefixes (``openrouter/openai/gpt-4o-mini`` -> ``openai/gpt-4o-mini`` -> ``gpt-4o-mini``)."""
    try:
        cost_map = import_litellm().model_cost
    except Exception:  # noqa: BLE001 - no map: no price
        return None
    parts = model.split("/")
    for i in range(len(parts)):
        info = cost_map.get("/".join(parts[i:]))
        if isinstance(info, dict) and info.get("input_cost_per_token") is not None:
            return float(info.get("input_cost_per_token") or 0.0), float(info.get("output_cost_per_token") or 0.0)
    return None


def _extra_of(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if k not in ("api_base", "api_key", "timeout", "max_retries")}


def _dump(resp: Any) -> dict[str, Any] | None:
    try:
        return resp.model_dump()
    except Exception:  # noqa: BLE001
        try:
            return dict(resp)
        except Exception:  # noqa: BLE001
            return None


def _text_of(response: dict[str, Any]) -> str | None:
    try:
        return response["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return None
