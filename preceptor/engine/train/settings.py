"""Training settings: ``[train.sft]`` and ``[train.dpo]`` tables, presets, CLI flags.

Resolution order: the named preset's values → the project's table → command-line flags.
Every field here is both a key of the table and a ``--flag`` of ``preceptor train sft`` /
``dpo`` (underscores become dashes).

Presets
-------
``seed000`` reproduces seed 000's run exactly: LoRA r=8, alpha=32 on q_proj/v_proj,
dropout 0.05, batch 2 × accumulation 4, 3 epochs, lr 2e-5, warmup 0.1, max length 2048
with every example padded to that length, seed 42, 2 checkpoints kept.

``default`` changes what seed 000's own conclusion and the LoRA literature point at:

* r=16, alpha=32 on **every** attention and MLP projection (q/k/v/o, gate/up/down).
  Seed 000 found r=8 on q/v too small to learn the domain; adapting all linear layers
  is what QLoRA showed matters most (more than the rank), at ~2-3 % trainable parameters.
* lr 2e-4 with cosine decay. 2e-5 is a full fine-tuning rate; LoRA updates start from
  zero and need ~10× more (the peft/QLoRA recipes use 1e-4 to 2e-4), otherwise three
  epochs barely move the adapter.
* batch 4 × accumulation 2 (same effective batch of 8, fewer, fuller steps).
* max length 1024 and no padding: each micro-batch is flattened into one row with
  position ids restarting per example (padding-free), used only after a check at start
  that the model's attention then stays within each example (transformers 5 builds that
  mask from the position ids for Llama / Qwen2 / Mistral-style models); otherwise batches
  of similar lengths (length-grouped sampling). Packing is used on a GPU with
  FlashAttention. Padding everything to 2048 made seed 000 spend most of its compute on
  padding (see ``bench/train_sft.py``).
* gradient checkpointing off: a 135M–2B student fits without it, and it costs ~30 %
  more compute. Turn it on for bigger students.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from preceptor import config as cfg
from preceptor.config import setting
from preceptor.errors import PreceptorError

if TYPE_CHECKING:
    from preceptor.project import Project

ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class CommonSettings:
    """Settings shared by SFT and DPO."""

    preset: Literal["default", "seed000"] = setting("default", "Named starting values: default, or seed000 (the seed's exact run).")
    base_system: str = setting("base", "System whose model is the base being adapted (its `model`).")
    name: str = setting("", "Name of the system registered on success (default: <kind>-<run id>).")
    collection: str | None = setting(None, "Train only on prompts of this collection (default: all the project's own).")
    epochs: float = setting(3.0, "Passes over the training data (ignored when max_steps > 0).")
    max_steps: int = setting(0, "Stop after this many optimizer steps (0: run the epochs).")
    batch_size: int = setting(4, "Examples per device per forward pass.")
    grad_accum: int = setting(2, "Gradient accumulation: effective batch = batch_size × grad_accum × devices.")
    lr: float = setting(2e-4, "Peak learning rate.")
    warmup_ratio: float = setting(0.1, "Fraction of the steps spent warming the learning rate up.")
    scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = setting("cosine", "Learning-rate schedule.")
    weight_decay: float = setting(0.0, "AdamW weight decay.")
    max_length: int = setting(1024, "Longest tokenized example (prompt + answer); longer ones are truncated at the end.")
    seed: int = setting(42, "Random seed (data order, LoRA init, dropout).")
    lora_r: int = setting(16, "LoRA rank.")
    lora_alpha: int = setting(32, "LoRA alpha (scaling = alpha / r).")
    lora_dropout: float = setting(0.05, "Dropout on the LoRA branch.")
    lora_targets: list[str] = setting(ALL_LINEAR, "Layer names that get a LoRA adapter (those present in the model are used).")
    keep_checkpoints: int = setting(2, "Checkpoints kept in the run folder (older ones are deleted).")
    save_steps: int = setting(0, "Save a checkpoint every N optimizer steps (0: at the end of each epoch).")
    logging_steps: int = setting(1, "Record loss / learning rate / grad norm every N optimizer steps.")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = setting(
        "auto", "Mixed precision: auto = bf16 on a GPU that supports it, else fp32; bf16/fp16 fail where unsupported.")
    device: Literal["auto", "cpu", "cuda"] = setting("auto", "Where to train: auto = the GPU when there is one.")
    threads: int = setting(0, "Torch CPU threads (0: $OMP_NUM_THREADS, else 1).")
    gradient_checkpointing: bool = setting(False, "Recompute activations in the backward pass (less memory, ~30% slower).")
    eval_every: Literal["epoch", "end"] = setting(
        "epoch", "When the val split's loss is measured: after each epoch, or once at the end (saves a val pass per epoch).")

    def __post_init__(self) -> None:
        checks = [
            (self.epochs > 0, "epochs must be > 0"),
            (self.max_steps >= 0, "max_steps must be >= 0"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.grad_accum >= 1, "grad_accum must be >= 1"),
            (self.lr > 0, "lr must be > 0"),
            (0 <= self.warmup_ratio < 1, "warmup_ratio must be in [0, 1)"),
            (self.max_length >= 16, "max_length must be >= 16"),
            (self.lora_r >= 1, "lora_r must be >= 1"),
            (self.lora_alpha >= 1, "lora_alpha must be >= 1"),
            (0 <= self.lora_dropout < 1, "lora_dropout must be in [0, 1)"),
            (bool(self.lora_targets), "lora_targets must name at least one layer"),
            (self.keep_checkpoints >= 1, "keep_checkpoints must be >= 1"),
            (self.save_steps >= 0, "save_steps must be >= 0"),
            (self.logging_steps >= 1, "logging_steps must be >= 1"),
            (self.threads >= 0, "threads must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


@dataclass
class SFTSettings(CommonSettings):
    """``[train.sft]``: LoRA supervised fine-tuning on another system's answers."""

    from_system: str = setting("teacher", "System (name, or role = every system with that role) whose train-split answers are the "
                               "targets; gold = the prompts' own references (where the data has them).")
    batching: Literal["auto", "padding_free", "group", "pack", "pad_max", "plain"] = setting(
        "auto", "How batches are built: padding_free = each micro-batch flattened into one row, no padding at all "
        "(used only where exact for the model: checked at start); group = similar lengths together, padded; "
        "pack = several examples per max_length row (changes examples per step); pad_max = pad every example to "
        "max_length (seed 000); plain = trl's default; auto = pack with FlashAttention on a GPU, else padding_free "
        "where exact, else group.")


@dataclass
class DPOSettings(CommonSettings):
    """``[train.dpo]``: direct preference optimisation starting from an SFT adapter."""

    from_system: str = setting("ft", "System whose LoRA adapter DPO starts from (name, or role = the latest succeeded one).")
    beta: float = setting(0.1, "DPO beta: how far the policy may move from the reference (higher = closer).")
    loss_type: Literal["sigmoid", "hinge", "ipo", "robust", "bco_pair", "sppo_hard", "nca_pair", "apo_zero", "apo_down"] = setting(
        "sigmoid", "DPO loss (sigmoid = the original DPO loss; ipo is more robust to noisy labels).")
    sft_weight: float = setting(0.0, "Weight of an added language-model loss on the chosen answers (RPO; 0 = plain DPO). "
                                "Keeps the policy's likelihood of chosen answers from falling while the margin grows.")
    ld_alpha: float | None = setting(None, "Length desensitisation (LD-DPO): weight of the tokens of the longer answer beyond "
                                     "the shorter one's length (0 = masked, 1 or unset = plain DPO). Stops DPO from "
                                     "rewarding length itself.")
    source: Literal["expert", "llm", "metric", "agreed", "all"] = setting(
        "all", "With --from-db: which judgments make pairs (see `preceptor export dpo`).")
    min_confidence: float = setting(0.0, "With --from-db: minimum judge confidence of a pair.")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.beta <= 0:
            raise ValueError("beta must be > 0")
        if not 0 <= self.min_confidence <= 1:
            raise ValueError("min_confidence must be in [0, 1]")
        if self.sft_weight < 0:
            raise ValueError("sft_weight must be >= 0")
        if self.ld_alpha is not None and not 0 <= self.ld_alpha <= 1:
            raise ValueError("ld_alpha must be in [0, 1]")


SFT_PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "seed000": {
        "lora_r": 8, "lora_alpha": 32, "lora_targets": ["q_proj", "v_proj"], "lora_dropout": 0.05,
        "batch_size": 2, "grad_accum": 4, "epochs": 3.0, "lr": 2e-5, "warmup_ratio": 0.1, "scheduler": "linear",
        "max_length": 2048, "seed": 42, "keep_checkpoints": 2, "batching": "pad_max", "weight_decay": 0.0,
    },
}
# DPO: the seed never ran DPO; its preset keeps the seed's adapter shape and batch so a DPO
# run on top of a seed000 SFT adapter has the matching LoRA settings.
DPO_PRESETS: dict[str, dict[str, Any]] = {
    "default": {"lr": 5e-5, "epochs": 1.0, "max_length": 1024},
    "seed000": {**{k: v for k, v in SFT_PRESETS["seed000"].items() if k != "batching"}, "epochs": 1.0},
}

TABLES = {SFTSettings: ("train.sft", SFT_PRESETS), DPOSettings: ("train.dpo", DPO_PRESETS)}


def resolve(project: Project, cls: type, preset: str | None = None, **flags: Any) -> Any:
    """Settings ``cls`` from preset → ``[train.sft|dpo]`` table → flags (None flags are ignored)."""
    table_name, presets = TABLES[cls]
    table = dict(project.table(table_name)) if project is not None else {}
    name = preset or table.get("preset") or "default"
    if name not in presets:
        raise PreceptorError("Unknown preset", f"preset {name!r} is not one of {', '.join(presets)}",
                             f"Use --preset {' or --preset '.join(presets)}.")
    values = {**presets[name], **{k: v for k, v in table.items() if k != "preset"}, "preset": name}
    where = f"{project.config_path}: [{table_name}]" if project is not None else f"[{table_name}]"
    settings = cfg.section(cls, values, where)
    return cfg.override(settings, "flags", **flags)


def to_dict(settings: Any) -> dict[str, Any]:
    return dataclasses.asdict(settings)


def from_dict(cls: type, values: dict[str, Any]) -> Any:
    """Rebuild settings recorded in a run's config (a resumed run uses exactly these)."""
    return cfg.section(cls, values, "run config")
