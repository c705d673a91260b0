"""``[judge]``: how experts are served pairs and how the LLM judge is asked; the judging rubric."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from preceptor.config import setting
from preceptor.errors import PreceptorError

PACKAGED_JUDGE = "smollm2-135m-instruct"  # = engine.models.PACKAGED_STUDENT (not imported: keeps this module light)

DOMAINS_DIR = Path(__file__).resolve().parents[2] / "prompts" / "domains"

@dataclass
class JudgeSettings:
    """The ``[judge]`` table of preceptor.toml."""

    system: str | None = setting(None, "A system (from [systems]) to judge with; overrides backend/model/api_base.")
    backend: Literal["hf", "litellm"] = setting("hf", "hf: a local model decides by log-probabilities; litellm: an API model answers in JSON.")
    model: str = setting(PACKAGED_JUDGE, "The judge model: a packaged name, a local folder, or a litellm model string.")
    api_base: str | None = setting(None, "Base URL of an OpenAI-compatible server for a litellm judge.")
    swap: Literal["always", "contested", "never"] = setting("always", "Judge both orders always, only when the first verdict is unsure, or never.")
    contested_threshold: float = setting(0.6, "Confidence below which a verdict counts as contested (asks the swapped order under swap=contested).")
    reference_guided: bool = setting(False, "Show the LLM judge the reference answer, when the prompt has one.")
    max_reasks: int = setting(2, "Re-asks of an API judge whose reply does not parse, before it is stored as unparsed.")
    budget_usd: float | None = setting(None, "Stop an API judge run when its spend reaches this (USD).")
    concurrency: int = setting(8, "Parallel API calls of the LLM judge.")
    temperature: float = setting(0.0, "Sampling temperature of an API judge.")
    max_tokens: int = setting(700, "Longest API judge reply (tokens).")
    rubric: str = setting("pharma", "Judging guidelines: a domain pack name (prompts/domains/NAME/rubric.md) or a Markdown file.")
    template: str = setting("judge_pairwise", "Prompt template of API judges (prompts/templates/NAME.toml).")
    local_template: str = setting("judge_local", "Prompt template of local log-probability judges.")
    local_batch_size: int = setting(4, "Prompts per forward pass of a local judge.")
    max_answer_chars: int = setting(6000, "Answers longer than this are cut (with a marker) in judge prompts.")
    threads: int | None = setting(None, "Torch threads for a local judge (default: OMP_NUM_THREADS or 1).")
    seed: int = setting(0, "Seed of side randomisation, the overlap and repeat draws.")
    overlap_share: float = setting(0.10, "Share of pairs judged by several experts (for agreement).")
    overlap_k: int = setting(2, "Experts per overlap pair.")
    repeat_share: float = setting(0.05, "Share of an expert's votes shown to them again, sides swapped (self-consistency).")
    repeat_gap: int = setting(10, "Votes between a pair and its repeat.")
    reservation_minutes: float = setting(5.0, "How long a served pair stays reserved for its expert.")
    queue: Literal["active", "random", "sequential"] = setting(
        "active", "Order experts are served pairs in: active (where a vote changes the league most, LLM-contested "
        "pairs first), random (the shuffled queue) or sequential (pair id).")
    llm_first: bool = setting(False, "Send experts only the pairs the LLM judge is unsure of, inconsistent on or disagrees "
                              "with the metric judge about, plus an audit share of the rest (run `judge llm` first).")
    audit_share: float = setting(0.10, "Under llm_first: share of the LLM judge's settled pairs still sent to experts, to audit it.")
    contested_first: bool | None = setting(None, "Deprecated, folded into queue: false means queue = \"random\".")
    min_seconds: float = setting(0.5, "A key counts in the app only once the pair has been on screen this long (seconds); earlier keys are discarded with a notice.")
    show_llm_rationale: Literal["after_vote", "always", "never"] = setting("after_vote", "When an expert may see the LLM judge's verdict and rationale.")

    def __post_init__(self) -> None:
        if self.contested_first is False and self.queue == "active":
            self.queue = "random"  # the old "no contested pairs first" = the shuffled queue
        for name in ("overlap_share", "repeat_share", "contested_threshold", "audit_share"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} = {v} must be between 0 and 1")
        if self.overlap_k < 2:
            raise ValueError(f"overlap_k = {self.overlap_k} must be at least 2")
        if self.repeat_gap < 1:
            raise ValueError(f"repeat_gap = {self.repeat_gap} must be at least 1")
        if self.min_seconds < 0 or self.min_seconds > 60:
            raise ValueError(f"min_seconds = {self.min_seconds} must be between 0 and 60")
        if self.reservation_minutes <= 0:
            raise ValueError("reservation_minutes must be positive")
        if self.max_reasks < 0 or self.max_reasks > 10:
            raise ValueError(f"max_reasks = {self.max_reasks} must be between 0 and 10")
        if self.concurrency < 1 or self.local_batch_size < 1:
            raise ValueError("concurrency and local_batch_size must be at least 1")
        if self.budget_usd is not None and self.budget_usd <= 0:
            raise ValueError("budget_usd must be positive")

def load_rubric(name_or_path: str) -> str:
    """The judging guidelines: ``prompts/domains/NAME/rubric.md`` or a Markdown file path."""
    path = Path(name_or_path).expanduser()
    if path.suffix == "" and not path.exists():
        path = DOMAINS_DIR / name_or_path / "rubric.md"
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError:
        packs = ", ".join(sorted(p.name for p in DOMAINS_DIR.iterdir() if (p / "rubric.md").exists())) if DOMAINS_DIR.exists() else ""
        raise PreceptorError("Rubric not found", f"[judge] rubric = {name_or_path!r}: {path} does not exist",
                             f"Name a domain pack with a rubric.md ({packs or 'none found'}) or a Markdown file.")
    if not text:
        raise PreceptorError("Empty rubric", f"{path} is empty", "Write the judging guidelines into it.")
    return text
