"""``[embed]`` settings of the embedding track, metric names, and resolving the base encoder."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from preceptor.config import setting
from preceptor.engine import models
from preceptor.errors import PreceptorError

if TYPE_CHECKING:
    from preceptor.project import Project

RETRIEVAL_METRICS = ("recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10")

COLLAPSE_METRICS = ("true_mean", "true_std", "unrelated_mean", "unrelated_std", "unrelated_p95", "gap")

MODEL_DIR = "model"

@dataclass
class EmbedSettings:
    """``[embed]`` in preceptor.toml; ``preceptor train embed`` flags override it."""

    stages: list[str] = setting([], "Curriculum stages in training order; each starts from the previous stage's model. `import-pairs --stage` appends new stages.")
    base: str = setting("auto", "Encoder the first stage starts from: auto (the packaged `all-minilm-l6-v2` for an English curriculum, `multilingual-e5-small` when most of its text is in another script), a packaged name, a sentence-transformers folder, or a hub id (downloads only if you name one).")
    loss: Literal["mnrl", "cosine"] = setting("mnrl", "mnrl: MultipleNegativesRankingLoss (in-batch + hard negatives). cosine: CosineSimilarityLoss on scored pairs (every pair needs a score).")
    batch_size: int = setting(32, "Pairs per batch (MNRL: also the number of in-batch negatives + 1).")
    epochs: float = setting(1.0, "Passes over a stage's training pairs (ignored when max_steps > 0).")
    max_steps: int = setting(0, "Stop each stage after this many optimizer steps (0: run the epochs).")
    learning_rate: float = setting(2e-5, "Peak learning rate (AdamW).")
    warmup_ratio: float = setting(0.1, "Fraction of the steps spent warming the learning rate up.")
    weight_decay: float = setting(0.01, "AdamW weight decay.")
    max_seq_length: int = setting(128, "Longest input in tokens; longer texts are truncated.")
    mine_negatives: bool = setting(True, "Mine one hard negative per pair with the stage's starting model when the data has none.")
    negatives_per_pair: int = setting(1, "Hard negatives mined per pair.")
    mine_max_ratio: float = setting(0.95, "Skip mined candidates scoring above this fraction of the positive's score (likely unlabelled positives).")
    prefixes: Literal["auto", "none", "e5"] = setting("auto", "Query/passage prefixes: auto (the model's saved prompts, or `query: `/`passage: ` for e5 models), none, or e5.")
    eval_max_queries: int = setting(500, "Held-out queries used for retrieval evaluation per stage (a fixed random sample above this).")
    retrieval_k: int = setting(5, "Documents listed in a retriever system's answer.")
    collapse_max_unrelated: float = setting(0.85, "Collapse alarm when random unrelated pairs average at least this cosine similarity (seed 002's collapsed model: 0.91-0.94).")
    collapse_min_gap: float = setting(0.05, "Collapse alarm when true pairs average less than this above unrelated pairs.")
    collapse_sample: int = setting(500, "True and unrelated pairs sampled for the collapse diagnostics.")
    save_steps: int = setting(200, "Checkpoint every N steps (a cancelled or interrupted stage resumes from the last one).")
    threads: int = setting(0, "Torch threads (0: $PRECEPTOR_THREADS / $OMP_NUM_THREADS, else 1).")
    seed: int = setting(42, "Random seed (data order, sampling, mining fallbacks).")

    def __post_init__(self) -> None:
        if self.batch_size < 2:
            raise ValueError("batch_size must be at least 2 (in-batch negatives need company)")
        if self.epochs <= 0:
            raise ValueError("epochs must be positive")
        if self.max_steps < 0:
            raise ValueError("max_steps must be 0 or more")
        if not 0 < self.learning_rate < 1:
            raise ValueError("learning_rate must be in (0, 1)")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError("warmup_ratio must be in [0, 1)")
        if self.negatives_per_pair < 1:
            raise ValueError("negatives_per_pair must be at least 1")
        if not 0 < self.mine_max_ratio <= 1:
            raise ValueError("mine_max_ratio must be in (0, 1]")
        if self.retrieval_k < 1:
            raise ValueError("retrieval_k must be at least 1")
        if self.max_seq_length < 8:
            raise ValueError("max_seq_length must be at least 8")
        if self.save_steps < 1:
            raise ValueError("save_steps must be at least 1")
        if self.collapse_sample < 10:
            raise ValueError("collapse_sample must be at least 10")
        for s in self.stages:
            if not s or any(c in s for c in " ,/"):
                raise ValueError(f"stage name {s!r} is empty or has a space, comma or slash")

def load_settings(project: Project) -> EmbedSettings:
    return project.section("embed", EmbedSettings)

def resolve_encoder(name: str) -> Path | str:
    """The packaged encoder's folder, a local folder, or a hub id passed through
    (``auto`` outside a curriculum plan, which picks by script, is the packaged encoder)."""
    name = models.PACKAGED_ENCODER if name == "auto" else name
    p = Path(name).expanduser()
    if name in (models.PACKAGED_ENCODER, models.PACKAGED_E5) or p.is_dir():
        return models.encoder_path(name)
    if p.is_absolute() or name.startswith((".", "~")) or p.suffix:
        raise PreceptorError("Encoder not found", f"{name!r} is not a folder", f"Use {models.PACKAGED_ENCODER!r} or the path of a sentence-transformers folder.")
    return name  # a hub id: loaded by sentence-transformers (downloads only if allowed)

def slug(text: str) -> str:
    s = re.sub(r"[^A-Za-z0-9._-]+", "-", text.strip()).strip("-")
    return s[-48:] or "encoder"

def base_label(base: str) -> str:
    return models.PACKAGED_ENCODER if base == models.PACKAGED_ENCODER else slug(Path(base).name if Path(base).is_dir() else base)
