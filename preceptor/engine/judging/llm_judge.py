"""The LLM judge: an API model answering in JSON, or a local model deciding by log-probabilities.

``preceptor judge llm [--pairs FILTER] [--system NAME | --model M [--api-base URL]]
[--swap always|contested|never] [--budget USD]``

* **API judges** (litellm, through :class:`preceptor.engine.generation.llm.LLMClient`: cache,
  retries, concurrency and budget live there) get the versioned ``judge_pairwise``
  template with the domain's rubric and answer with a JSON verdict (winner, confidence,
  per-criterion notes, rationale). A reply that does not parse is re-asked at most
  ``[judge] max_reasks`` times, then stored as ``unparsed`` with the raw text — counted,
  never dropped, never a silent tie.
* **Local judges** (``hf``: the offline default, the packaged student) read the
  ``judge_local`` template and compare the log-probabilities of the verdict choices
  (``A``, ``B``, ``tie``) as the reply's first tokens; the probability margin is the
  confidence. No free text is parsed.
* Answers (and the question and reference) sit between marker lines carrying a nonce that
  occurs in none of the texts, so no answer can close its block and speak as the
  instructions; the template says text inside a block is material, never instructions.
* ``--swap always`` judges both orders (disagreement → ``inconsistent``, which counts as a
  tie); ``contested`` asks the swapped order only when the first verdict's confidence is
  below ``[judge] contested_threshold``; ``never`` asks once, on a per-pair random side.

One judgment per pair and judge is stored (``judge_kind = 'llm'``, ``judge_id`` = the
system name or the model string); the orders' details are in ``meta``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from preceptor import config as cfg
from preceptor.db import judging as q
from preceptor.engine.events import Done, EventStream, Log, Progress, bulk_writes, check_cancel
from preceptor.engine.judging.pairs import PairFilter, pairs_to_judge, unit_hash
from preceptor.engine.judging.settings import JudgeSettings, load_rubric
from preceptor.errors import PreceptorError

if TYPE_CHECKING:
    from preceptor.project import Project

WINNERS = ("A", "B", "tie", "both_bad")
LOCAL_CHOICES = ("A", "B", "tie")
CRITERIA = ("accuracy", "safety", "completeness", "concision")
WRITE_EVERY = 32
SYSTEM_PARAMS_KEPT = frozenset({"api_key_env", "input_cost_per_token", "output_cost_per_token", "drop_params",
                                "extra_headers"})


@dataclass(frozen=True)
class LLMJudgeOptions:
    pairs: PairFilter = PairFilter()
    system: str | None = None
    model: str | None = None
    api_base: str | None = None
    swap: str | None = None
    budget_usd: float | None = None
    reference_guided: bool | None = None
    limit: int | None = None
    force: bool = False
    concurrency: int | None = None

    def __post_init__(self) -> None:
        if self.swap is not None and self.swap not in ("always", "contested", "never"):
            raise PreceptorError("Invalid option", f"--swap {self.swap!r} is not always, contested or never",
                                 "Use --swap always (default), contested or never.")
        if self.system and self.model:
            raise PreceptorError("Invalid options", "--system and --model both name a judge", "Give one of them.")


@dataclass(frozen=True)
class JudgeSpec:
    """Who judges: backend, model, where, and the id stored with each judgment."""

    judge_id: str
    backend: str  # "hf" | "litellm"
    model: str
    api_base: str | None = None
    adapter: str | None = None
    params: dict[str, Any] = field(default_factory=dict)


def resolve_judge(project: Project, opts: LLMJudgeOptions, settings: JudgeSettings) -> JudgeSpec:
    from preceptor.db import systems as q_systems

    system_name = opts.system or (None if opts.model else settings.system)
    if system_name:
        s = q_systems.resolve(project.store, system_name)
        if s.backend not in ("hf", "litellm", "grounded"):
            raise PreceptorError("Cannot judge with this system", f"system {s.name!r} has backend {s.backend!r}",
                                 "Judge with an hf or litellm system, or pass --model.")
        params = dict(s.params or {})
        api_base = opts.api_base or params.pop("api_base", None)
        # connection and price settings carry over; sampling comes from [judge] (a judge decodes greedily)
        params = {k: v for k, v in params.items() if k in SYSTEM_PARAMS_KEPT}
        backend = "hf" if s.backend == "grounded" else s.backend
        return JudgeSpec(s.name, backend, s.model or settings.model, api_base, s.adapter if backend == "hf" else None, params)
    model = opts.model or settings.model
    if opts.model:
        backend = "litellm" if (opts.api_base or _looks_remote(opts.model)) else "hf"
    else:
        backend = settings.backend
    return JudgeSpec(model, backend, model, opts.api_base or settings.api_base)


def _looks_remote(model: str) -> bool:
    """A litellm provider string (``openai/x``, ``openrouter/...``) rather than a local model."""
    from pathlib import Path

    if Path(model).expanduser().exists() or model.endswith(".gguf"):
        return False
    try:
        from preceptor.engine.models import PACKAGED

        if model in PACKAGED:
            return False
    except ImportError:  # pragma: no cover
        pass
    head = model.split("/", 1)[0]
    return head in {"openai", "openrouter", "anthropic", "azure", "gemini", "vertex_ai", "mistral", "groq", "together_ai",
                    "ollama", "ollama_chat", "hosted_vllm", "deepseek", "bedrock", "cohere", "fireworks_ai", "xai"}


# --- prompt building -----------------------------------------------------------------

def _nonce(*texts: str) -> str:
    """A marker id occurring in none of ``texts`` (deterministic, so requests stay cacheable)."""
    seed = hashlib.sha256("\x00".join(texts).encode("utf-8")).hexdigest()
    for i in range(0, len(seed) - 8):
        cand = seed[i:i + 8]
        if not any(cand in t for t in texts):
            return cand
    n = 0
    while True:  # pragma: no cover - astronomically unlikely
        cand = hashlib.sha256(f"{seed}{n}".encode()).hexdigest()[:12]
        if not any(cand in t for t in texts):
            return cand
        n += 1


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n[… cut: {len(text) - limit} more characters]"


def block(name: str, text: str, nonce: str) -> str:
    """``text`` between marker lines; the nonce never occurs in any text of the prompt."""
    return f"<<<{name} {nonce}>>>\n{text}\n<<<END {name} {nonce}>>>"


def judge_variables(question: str, left: str, right: str, reference: str | None, rubric: str | None,
                    max_chars: int) -> dict[str, str]:
    left, right = _clip(left, max_chars), _clip(right, max_chars)
    texts = [question, left, right] + ([reference] if reference else [])
    nonce = _nonce(*texts)
    variables = {
        "question": block("QUESTION", question, nonce),
        "answer_a": block("ANSWER A", left, nonce),
        "answer_b": block("ANSWER B", right, nonce),
        "reference": (block("REFERENCE", _clip(reference, max_chars), nonce) if reference
                      else "(no reference answer is given for this question)"),
    }
    if rubric is not None:
        variables["rubric"] = rubric
    return variables


def render(template: Any, variables: dict[str, str]) -> list[dict[str, str]]:
    """Render with exactly the variables the template declares (extra ones are dropped)."""
    wanted = set(getattr(template, "variables", None) or variables)
    return template.render(**{k: v for k, v in variables.items() if k in wanted})


def load_template(name: str) -> Any:
    from preceptor.prompts import templates

    return templates.get(name)


# --- parsing -------------------------------------------------------------------------

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S | re.I)


def _json_objects(text: str) -> list[Any]:
    dec = json.JSONDecoder()
    found = []
    for m in re.finditer(r"\{", text):
        try:
            obj, _ = dec.raw_decode(text[m.start():])
        except ValueError:
            continue
        if isinstance(obj, dict):
            found.append(obj)
    return found


def _winner(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    v = value.strip().strip(".").strip()
    low = v.lower().replace("-", " ").replace("_", " ")
    if low in ("a", "answer a"):
        return "A"
    if low in ("b", "answer b"):
        return "B"
    if low in ("tie", "equal", "draw"):
        return "tie"
    if low in ("both bad", "neither"):
        return "both_bad"
    return None


def parse_verdict(text: str | None) -> tuple[dict[str, Any] | None, str | None]:
    """(verdict, None) or (None, what is wrong) for a judge's reply."""
    if text is None or not text.strip():
        return None, "the reply is empty"
    candidates = []
    for m in _FENCE.finditer(text):
        candidates += _json_objects(m.group(1))
    candidates += _json_objects(text)
    if not candidates:
        return None, "the reply holds no JSON object"
    problems = []
    for obj in candidates:
        keys = {str(k).lower(): v for k, v in obj.items()}
        if "winner" not in keys:
            problems.append("the JSON object has no \"winner\"")
            continue
        winner = _winner(keys["winner"])
        if winner is None:
            problems.append(f"\"winner\" is {keys['winner']!r}, not one of \"A\", \"B\", \"tie\", \"both_bad\"")
            continue
        conf = keys.get("confidence")
        if isinstance(conf, str):
            try:
                conf = float(conf.strip().rstrip("%")) / (100.0 if conf.strip().endswith("%") else 1.0)
            except ValueError:
                conf = None
        if isinstance(conf, bool) or not isinstance(conf, (int, float)) or math.isnan(float(conf)):
            problems.append("\"confidence\" is missing or not a number in [0, 1]")
            continue
        conf = float(conf)
        if 1.0 < conf <= 100.0:
            conf /= 100.0
        if not 0.0 <= conf <= 1.0:
            problems.append(f"\"confidence\" {conf} is outside [0, 1]")
            continue
        criteria = keys.get("criteria")
        if not isinstance(criteria, dict):
            criteria = {c: keys[c] for c in CRITERIA if isinstance(keys.get(c), str)} or None
        unsafe_raw = keys.get("unsafe") or []
        if isinstance(unsafe_raw, str):
            unsafe_raw = [unsafe_raw]
        unsafe = sorted({w for w in (_winner(u) for u in unsafe_raw if isinstance(u, str)) if w in ("A", "B")})
        rationale = keys.get("rationale")
        return {"winner": winner, "confidence": conf, "criteria": criteria, "unsafe": unsafe,
                "rationale": str(rationale).strip() if rationale is not None else ""}, None
    return None, problems[0]


REASK = ("Your reply could not be used: {problem}. Reply again with only the JSON object described above: "
         "{{\"winner\": \"A\" | \"B\" | \"tie\" | \"both_bad\", \"confidence\": a number from 0 to 1, "
         "\"criteria\": {{\"accuracy\": \"...\", \"safety\": \"...\", \"completeness\": \"...\", \"concision\": \"...\"}}, "
         "\"unsafe\": [], \"rationale\": \"...\"}}.")


# --- combining orders ----------------------------------------------------------------

@dataclass
class OrderResult:
    left: int
    right: int
    verdict: dict[str, Any] | None  # parsed (API) or decided (local)
    raw: str | None
    calls: int = 1
    problem: str | None = None

    def outcome(self) -> tuple[str, int | None]:
        assert self.verdict is not None
        w = self.verdict["winner"]
        if w == "A":
            return "win", self.left
        if w == "B":
            return "win", self.right
        return w, None

    def unsafe_ids(self) -> set[int]:
        if not self.verdict:
            return set()
        by = {"A": self.left, "B": self.right}
        return {by[u] for u in self.verdict.get("unsafe", ()) if u in by}


def combine(pair: dict[str, Any], orders: list[OrderResult]) -> dict[str, Any]:
    """One judgment's fields from one or two orders (disagreement → inconsistent)."""
    first = orders[0]
    raws = [o.raw for o in orders]
    meta: dict[str, Any] = {
        "orders": [{"left": o.left, "winner": (o.verdict or {}).get("winner"), "confidence": (o.verdict or {}).get("confidence"),
                    "calls": o.calls, "problem": o.problem} for o in orders],
        "calls": sum(o.calls for o in orders),
    }
    if first.verdict and first.verdict.get("criteria"):
        meta["criteria"] = first.verdict["criteria"]
    if first.verdict and first.verdict.get("probs"):
        meta["probs"] = [o.verdict.get("probs") for o in orders if o.verdict]
        if len(orders) == 2 and all(o.verdict for o in orders):
            # each output's probability of winning averaged over both positions (position bias cancels)
            win = {o_id: 0.0 for o_id in (pair["output_a"], pair["output_b"])}
            for o in orders:
                probs = o.verdict["probs"]  # type: ignore[index]
                win[o.left] += probs["A"] / 2
                win[o.right] += probs["B"] / 2
            meta["debiased"] = {"output_a": round(win[pair["output_a"]], 6), "output_b": round(win[pair["output_b"]], 6),
                                "tie": round(sum(o.verdict["probs"]["tie"] for o in orders) / 2, 6)}  # type: ignore[index]
    fields: dict[str, Any] = {"left_output_id": first.left, "raw": json.dumps(raws, ensure_ascii=False)}
    if any(o.verdict is None for o in orders):
        fields.update(verdict="unparsed", winner_output_id=None, confidence=None,
                      rationale=next((o.problem for o in orders if o.verdict is None), None))
        return {**fields, "meta": meta}
    outcomes = [o.outcome() for o in orders]
    confs = [float(o.verdict["confidence"]) for o in orders if o.verdict]
    unsafe = set().union(*(o.unsafe_ids() for o in orders))
    fields.update(unsafe_a=pair["output_a"] in unsafe, unsafe_b=pair["output_b"] in unsafe,
                  rationale=first.verdict.get("rationale") or None)
    if len(set(outcomes)) > 1:
        fields.update(verdict="inconsistent", winner_output_id=None, confidence=0.0)
    else:
        kind, winner = outcomes[0]
        fields.update(verdict=kind, winner_output_id=winner, confidence=sum(confs) / len(confs))
    return {**fields, "meta": meta}


# --- the run -------------------------------------------------------------------------

@bulk_writes
def judge_llm(project: Project, opts: LLMJudgeOptions = LLMJudgeOptions(), cancel: threading.Event | None = None) -> EventStream:
    """Judge the selected pairs with the LLM judge; yields events, ends with ``Done(summary)``."""
    settings: JudgeSettings = project.section("judge", JudgeSettings)
    settings = cfg.override(settings, "flags", swap=opts.swap, budget_usd=opts.budget_usd,
                            reference_guided=opts.reference_guided, concurrency=opts.concurrency)
    spec = resolve_judge(project, opts, settings)
    store = project.store
    pairs, skipped, done_ids = pairs_to_judge(store, opts.pairs, "llm", spec.judge_id, force=opts.force)
    if opts.limit:
        pairs = pairs[: opts.limit]
    yield Log("info", f"LLM judge {spec.judge_id} ({spec.backend}), swap={settings.swap}: {len(pairs)} pairs"
                      + (f", {skipped} already judged" if skipped else ""))
    if not pairs:
        if skipped == 0:
            yield Log("warning", "no pairs match: make them first with `preceptor pairs make --systems A,B`")
        yield Done(_summary(spec, settings, [], {}, skipped, 0, 0, {}))
        return
    first_left = {p["id"]: (p["output_a"] if unit_hash(settings.seed, "llm-order", spec.judge_id, p["id"]) < 0.5 else p["output_b"])
                  for p in pairs}
    if spec.backend == "litellm":
        results = yield from _run_api(project, spec, settings, pairs, first_left, done_ids if opts.force else {}, cancel)
    else:
        results = yield from _run_local(project, spec, settings, pairs, first_left, done_ids if opts.force else {}, cancel)
    results["skipped_existing"] = skipped
    yield Done(results)


def _orders_needed(settings: JudgeSettings, first: OrderResult) -> bool:
    if settings.swap == "always":
        return True
    if settings.swap == "never" or first.verdict is None:
        return False
    return float(first.verdict.get("confidence") or 0.0) < settings.contested_threshold


class _Writer:
    """Stores finished pairs in batches (one transaction each) and keeps the counts."""

    def __init__(self, project: Project, spec: JudgeSpec, settings: JudgeSettings, template_meta: dict[str, Any],
                 supersede: dict[int, int]) -> None:
        self.store = project.store
        self.spec = spec
        self.settings = settings
        self.template_meta = template_meta
        self.supersede = supersede
        self.pending: list[dict[str, Any]] = []
        self.counts: dict[str, int] = {}
        self.calls: list[int] = []
        self.contested: list[int] = []
        self.judged: list[int] = []
        self.written = 0

    def add(self, pair: dict[str, Any], orders: list[OrderResult]) -> None:
        fields = combine(pair, orders)
        fields["meta"].update(self.template_meta)
        fields["meta"]["swap"] = self.settings.swap
        row = dict(pair_id=pair["id"], judge_kind="llm", judge_id=self.spec.judge_id,
                   supersedes=self.supersede.get(pair["id"]), **fields)
        self.pending.append(row)
        self.judged.append(pair["id"])
        v = fields["verdict"]
        key = "decisive" if v == "win" else v
        self.counts[key] = self.counts.get(key, 0) + 1
        self.calls.append(fields["meta"]["calls"])
        conf = fields.get("confidence")
        if v in ("inconsistent", "unparsed") or (conf is not None and conf < self.settings.contested_threshold):
            self.contested.append(pair["id"])
        if len(self.pending) >= WRITE_EVERY:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.written += q.insert_judgments(self.store, self.pending)
            self.pending = []

    def finish(self) -> None:
        self.flush()
        if self.judged:
            from preceptor.engine.judging.queue import refresh_priorities

            refresh_priorities(self.store, self.settings, self.judged)


def _summary(spec: JudgeSpec, settings: JudgeSettings, calls: list[int], counts: dict[str, int], skipped: int,
             failed: int, seconds: float, extra: dict[str, Any]) -> dict[str, Any]:
    judged = sum(counts.values())
    return {
        "judge": spec.judge_id, "backend": spec.backend, "model": spec.model, "swap": settings.swap,
        "pairs": judged, "decisive": counts.get("decisive", 0), "tie": counts.get("tie", 0),
        "both_bad": counts.get("both_bad", 0), "inconsistent": counts.get("inconsistent", 0),
        "unparsed": counts.get("unparsed", 0), "failed": failed, "skipped_existing": skipped,
        "calls_per_pair": round(sum(calls) / len(calls), 3) if calls else 0.0, "requests": sum(calls),
        "seconds": round(seconds, 2), **extra,
    }


def _template_meta(template: Any) -> dict[str, Any]:
    return {"template": f"{getattr(template, 'name', '?')}@{getattr(template, 'version', '?')}",
            "template_hash": getattr(template, "hash", None)}


def _run_api(project: Project, spec: JudgeSpec, settings: JudgeSettings, pairs: list[dict[str, Any]], first_left: dict[int, int],
             supersede: dict[int, int], cancel: threading.Event | None):
    from preceptor.engine.generation.llm import LLMClient

    t0 = time.monotonic()
    template = load_template(settings.template)
    rubric = load_rubric(settings.rubric)
    logs: list[str] = []
    params = {"temperature": settings.temperature, "max_tokens": settings.max_tokens, **spec.params}
    client = LLMClient(project.store, model=spec.model, api_base=spec.api_base, params=params,
                       concurrency=settings.concurrency, budget_usd=settings.budget_usd, on_log=logs.append)
    writer = _Writer(project, spec, settings, _template_meta(template), supersede)
    by_id = {p["id"]: p for p in pairs}
    results: dict[int, list[OrderResult]] = {p["id"]: [] for p in pairs}
    failed: dict[int, str] = {}
    reasks = 0

    def messages_for(pair: dict[str, Any], left: int) -> list[dict[str, str]]:
        texts = {pair["output_a"]: pair["text_a"] or "", pair["output_b"]: pair["text_b"] or ""}
        right = pair["output_b"] if left == pair["output_a"] else pair["output_a"]
        ref = pair["reference"] if settings.reference_guided else None
        return render(template, judge_variables(pair["prompt"], texts[left], texts[right], ref, rubric, settings.max_answer_chars))

    # a job: (pair id, left output id, messages, calls so far)
    jobs: list[tuple[int, int, list[dict[str, str]], int]] = []
    for p in pairs:
        jobs.append((p["id"], first_left[p["id"]], messages_for(p, first_left[p["id"]]), 0))
        if settings.swap == "always":
            other = p["output_b"] if first_left[p["id"]] == p["output_a"] else p["output_a"]
            jobs.append((p["id"], other, messages_for(p, other), 0))
    planned = {p["id"]: (2 if settings.swap == "always" else 1) for p in pairs}
    finished = 0
    total = len(pairs)
    yield Progress(0, total, "judging")
    try:
        while jobs:
            check_cancel(cancel)
            batch, jobs = jobs, []
            for idx, comp in client.complete_many([j[2] for j in batch], cancel=cancel):
                pid, left, messages, calls = batch[idx]
                pair = by_id[pid]
                if pid in failed:
                    continue
                if comp.error is not None:
                    failed[pid] = comp.error
                    continue
                verdict, problem = parse_verdict(comp.text)
                right = pair["output_b"] if left == pair["output_a"] else pair["output_a"]
                if verdict is None and calls < settings.max_reasks:
                    reasks += 1
                    jobs.append((pid, left, [*messages, {"role": "assistant", "content": comp.text or ""},
                                             {"role": "user", "content": REASK.format(problem=problem)}], calls + 1))
                    continue
                res = OrderResult(left, right, verdict, comp.text, calls + 1, problem)
                results[pid].append(res)
                if planned[pid] == 1 and len(results[pid]) == 1 and settings.swap == "contested" and _orders_needed(settings, res):
                    planned[pid] = 2
                    jobs.append((pid, right, messages_for(pair, right), 0))
                    continue
                if len(results[pid]) == planned[pid]:
                    orders = sorted(results[pid], key=lambda o: o.left != first_left[pid])
                    writer.add(pair, orders)
                    finished += 1
                    if finished % 8 == 0 or finished == total:
                        yield Progress(finished + len(failed), total, f"{writer.counts.get('unparsed', 0)} unparsed")
            for line in logs:
                yield Log("info", line)
            logs.clear()
    finally:
        writer.finish()
        client.close()
    if failed:
        reasons: dict[str, int] = {}
        for e in failed.values():
            reasons[e] = reasons.get(e, 0) + 1
        for e, n in reasons.items():
            yield Log("warning", f"{n} pairs not judged: {e} (run again to retry them)")
    yield Progress(total, total, "done")
    return _summary(spec, settings, writer.calls, writer.counts, 0, len(failed), time.monotonic() - t0,
                    {"reasks": reasks, "api_calls": client.calls_made, "cache_hits": client.cache_hits,
                     "cost": round(client.cost_total, 6), "budget_hit": client.budget_hit,
                     "template": writer.template_meta["template"]})


# --- local log-probability judge -----------------------------------------------------

class LocalScorer:
    """Log-probabilities of the verdict choices as the first tokens of the reply."""

    def __init__(self, model: Any, tokenizer: Any, choices: tuple[str, ...] = LOCAL_CHOICES) -> None:
        self.model = model
        self.tok = tokenizer
        self.choices = choices
        self.choice_ids = [tokenizer.encode(c, add_special_tokens=False) for c in choices]
        self.single = all(len(ids) == 1 for ids in self.choice_ids)
        self.max_len = int(getattr(model.config, "max_position_embeddings", 2048) or 2048)
        self.truncated = 0

    def prompt_ids(self, messages: list[dict[str, str]]) -> list[int]:
        text = self.tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        ids = self.tok.encode(text, add_special_tokens=False)
        room = self.max_len - max(len(c) for c in self.choice_ids)
        if len(ids) > room:  # keep the end (the answers and the question asked); counted in the summary
            self.truncated += 1
            return ids[-room:]
        return ids

    def score(self, prompts: list[list[int]]) -> list[list[float]]:
        """For each prompt, the log-probability of each choice (summed over its tokens)."""
        import torch

        rows: list[list[int]] = []
        for p in prompts:
            if self.single:
                rows.append(p)
            else:
                for ids in self.choice_ids:
                    rows.append(p + ids)
        width = max(len(r) for r in rows)
        pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else 0
        input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            input_ids[i, width - len(r):] = torch.tensor(r, dtype=torch.long)
            mask[i, width - len(r):] = 1
        # left padding: positions count from each row's first real token (as generate() does)
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            logits = self.model(input_ids=input_ids, attention_mask=mask, position_ids=position_ids).logits.float()
        logp = torch.log_softmax(logits, dim=-1)
        out: list[list[float]] = []
        if self.single:
            for i in range(len(prompts)):
                out.append([float(logp[i, -1, ids[0]]) for ids in self.choice_ids])
            return out
        k = len(self.choice_ids)
        for i in range(len(prompts)):
            vals = []
            for c, ids in enumerate(self.choice_ids):
                row = i * k + c
                n = len(ids)
                # the choice occupies the last n positions; token t is predicted at position t-1
                positions = range(width - n - 1, width - 1)
                vals.append(float(sum(logp[row, pos, tok] for pos, tok in zip(positions, ids, strict=True))))
            out.append(vals)
        return out


def local_verdict(logprobs: list[float], choices: tuple[str, ...] = LOCAL_CHOICES) -> dict[str, Any]:
    """Winner = the most probable choice; confidence = its probability margin over the runner-up."""
    m = max(logprobs)
    exps = [math.exp(v - m) for v in logprobs]
    z = sum(exps)
    probs = [e / z for e in exps]
    order = sorted(range(len(probs)), key=lambda i: -probs[i])
    top, second = order[0], order[1]
    return {"winner": choices[top], "confidence": probs[top] - probs[second],
            "probs": {c: round(p, 6) for c, p in zip(choices, probs, strict=True)},
            "logprobs": {c: round(v, 4) for c, v in zip(choices, logprobs, strict=True)}, "unsafe": [], "rationale": ""}


def _run_local(project: Project, spec: JudgeSpec, settings: JudgeSettings, pairs: list[dict[str, Any]], first_left: dict[int, int],
               supersede: dict[int, int], cancel: threading.Event | None):
    from preceptor.engine.models import load_causal_lm

    t0 = time.monotonic()
    template = load_template(settings.local_template)
    yield Log("info", f"loading {spec.model} …")
    model, tok = load_causal_lm(spec.model, adapter=spec.adapter, threads=settings.threads)
    scorer = LocalScorer(model, tok)
    rubric = load_rubric(settings.rubric)
    writer = _Writer(project, spec, settings, {**_template_meta(template), "choices": list(LOCAL_CHOICES)}, supersede)

    def ids_for(pair: dict[str, Any], left: int) -> list[int]:
        texts = {pair["output_a"]: pair["text_a"] or "", pair["output_b"]: pair["text_b"] or ""}
        right = pair["output_b"] if left == pair["output_a"] else pair["output_a"]
        ref = pair["reference"] if settings.reference_guided else None
        return scorer.prompt_ids(render(template, judge_variables(pair["prompt"], texts[left], texts[right], ref, rubric,
                                                                    settings.max_answer_chars)))

    total = len(pairs)
    yield Progress(0, total, "judging")
    bs = settings.local_batch_size
    try:
        for start in range(0, total, bs):
            check_cancel(cancel)
            chunk = pairs[start:start + bs]
            firsts = [first_left[p["id"]] for p in chunk]
            scores = scorer.score([ids_for(p, left) for p, left in zip(chunk, firsts, strict=True)])
            orders: dict[int, list[OrderResult]] = {}
            second: list[tuple[dict[str, Any], int]] = []
            for p, left, lp in zip(chunk, firsts, scores, strict=True):
                right = p["output_b"] if left == p["output_a"] else p["output_a"]
                res = OrderResult(left, right, local_verdict(lp), json.dumps({"logprobs": lp}))
                orders[p["id"]] = [res]
                if _orders_needed(settings, res):
                    second.append((p, right))
            if second:
                scores2 = scorer.score([ids_for(p, left) for p, left in second])
                for (p, left), lp in zip(second, scores2, strict=True):
                    right = p["output_b"] if left == p["output_a"] else p["output_a"]
                    orders[p["id"]].append(OrderResult(left, right, local_verdict(lp), json.dumps({"logprobs": lp})))
            for p in chunk:
                writer.add(p, orders[p["id"]])
            yield Progress(min(start + bs, total), total, f"{writer.counts.get('inconsistent', 0)} inconsistent")
    finally:
        writer.finish()
    return _summary(spec, settings, writer.calls, writer.counts, 0, 0, time.monotonic() - t0,
                    {"template": writer.template_meta["template"], "single_token_choices": scorer.single,
                     "truncated_prompts": scorer.truncated})
