"""LoRA supervised fine-tuning on another system's answers (the teacher's by default).

Data: the project's train-split prompts that have a successful output from
``from_system`` (a system name, or a role: every system with that role, generating ones
first, so the imported ``response_teacher`` column counts when nothing else answered).
Each example is prompt/completion in chat form: the prompt is exactly what students are
asked (``preceptor.prompts.templates.student_messages``), the completion the target
answer; the loss covers the completion only. Val-split prompts answered by the same
system are evaluated each epoch (and at the end of a ``max_steps`` run); perplexity =
exp(eval_loss) is recorded with every evaluation.

:func:`run` executes inside the worker process (``fn(ctx) -> summary``);
:func:`prepare_data` is cheap (no heavy imports) and also serves the CLI's pre-flight check.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from preceptor.db import outputs as q_outputs
from preceptor.db import prompts as q_prompts
from preceptor.db import systems as q_systems
from preceptor.engine.train.settings import SFTSettings, from_dict
from preceptor.errors import Cancelled, PreceptorError

if TYPE_CHECKING:
    from preceptor.project import Project


def student_messages(prompt: Any, system_prompt: str | None = None) -> tuple[list[dict[str, str]], str]:
    """Exactly what the trained student will be asked at generation time (contract F)."""
    from preceptor.prompts.templates import student_messages as render

    messages, template_hash = render(prompt, system_prompt)
    return [{"role": m["role"], "content": m["content"]} for m in messages], template_hash


GOLD = "gold"  # from_system = gold: train on the prompts' references instead of a system's answers


def target_systems(store: Any, name_or_role: str) -> list[q_systems.System]:
    """The systems whose outputs are targets, in order of preference."""
    system = q_systems.by_name(store, name_or_role)
    if system is not None:
        return [system]
    if name_or_role in q_systems.ROLES:
        found = [s for s in q_systems.all_systems(store) if s.role == name_or_role]
        found.sort(key=lambda s: (s.imported, -s.id))
        if found:
            return found
    q_systems.resolve(store, name_or_role)  # raises "Unknown system" with the known names
    return []


@dataclass
class SFTData:
    train: list[dict[str, Any]] = field(default_factory=list)
    val: list[dict[str, Any]] = field(default_factory=list)
    sources: dict[str, int] = field(default_factory=dict)
    template_hashes: list[str] = field(default_factory=list)


def prepare_data(project: Project, s: SFTSettings) -> SFTData:
    """Prompt/completion rows for the train and val splits (errors say what is missing)."""
    from preceptor.engine.train.common import base_model_name

    store = project.store
    _, base_params = base_model_name(project, s.base_system)
    system_prompt = base_params.get("system_prompt")  # the ft system inherits the base's params
    flt = q_prompts.PromptFilter(split=("train", "val"), collections=[s.collection] if s.collection else None)
    answers: dict[int, tuple[str, str]] = {}  # prompt id -> (answer, system name), first system wins
    if s.from_system == GOLD:  # the prompts' own references (where the data has them)
        systems: list[q_systems.System] = []
        answers = {p.id: (p.reference, GOLD) for p in q_prompts.select(store, flt) if p.reference and p.reference.strip()}
    else:
        systems = target_systems(store, s.from_system)
    for system in systems:
        for out in q_outputs.for_system(store, system.id):
            if out.prompt_id not in answers and out.text and out.text.strip():
                answers[out.prompt_id] = (out.text, system.name)
    data = SFTData()
    hashes: set[str] = set()
    for p in q_prompts.select(store, flt):
        if p.id not in answers:
            continue
        text, source = answers[p.id]
        messages, template_hash = student_messages(p, system_prompt)
        hashes.add(template_hash)
        row = {"prompt": messages, "completion": [{"role": "assistant", "content": text}], "prompt_id": p.id}
        (data.train if p.split == "train" else data.val).append(row)
        if p.split == "train":
            data.sources[source] = data.sources.get(source, 0) + 1
    data.template_hashes = sorted(hashes)
    if not data.train:
        if s.from_system == GOLD:
            raise PreceptorError(
                "No training data",
                f"no train-split prompt{' of collection ' + repr(s.collection) if s.collection else ''} has a gold reference",
                "Import a file with a reference column (`preceptor import FILE --reference-col NAME`), or train on a "
                "system's answers (--from-system teacher).")
        names = ", ".join(x.name for x in systems)
        n_train = q_prompts.counts_by_split(store)
        raise PreceptorError(
            "No training data",
            f"no train-split prompt{' of collection ' + repr(s.collection) if s.collection else ''} has an answer from "
            f"{s.from_system!r} ({names}); prompts per split: {n_train}",
            f"Generate the answers first (`preceptor generate --system {systems[0].name if systems else 'teacher'} --split train`), "
            "import a file with a response_teacher column, or pick another --from-system.",
        )
    return data


def _drop_too_long(ctx: Any, tok: Any, rows: list[dict[str, Any]], max_length: int, split: str) -> list[dict[str, Any]]:
    """Leave out examples whose prompt alone fills max_length (no answer token would be trained on)."""
    kept = []
    for row in rows:
        n = len(tok.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"])
        if n < max_length - 1:
            kept.append(row)
    if len(kept) < len(rows):
        ctx.warn(f"{len(rows) - len(kept)} of {len(rows)} {split} examples left out: their prompt alone is "
                 f"max_length = {max_length} tokens or more (raise max_length to keep them)")
    return kept


def padding_free_exact(model: Any, tok: Any) -> bool:
    """Does this model give the same logits for two sequences flattened into one row
    (position ids restarting, no attention mask) as for the same two padded? True for models
    that build their attention mask from packed position ids (transformers 5: Llama, Qwen2,
    Mistral...) or run FlashAttention; False means padding-free batches would leak attention
    across examples, so they are not used."""
    import torch

    a = tok("Clarithromycin is a strong CYP3A inhibitor.", add_special_tokens=False)["input_ids"]
    b = tok("Rifampin induces it.", add_special_tokens=False)["input_ids"]
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    n = max(len(a), len(b))
    ids = torch.tensor([a + [pad] * (n - len(a)), b + [pad] * (n - len(b))])
    mask = torch.tensor([[1] * len(a) + [0] * (n - len(a)), [1] * len(b) + [0] * (n - len(b))])
    flat = torch.tensor([a + b])
    pos = torch.tensor([list(range(len(a))) + list(range(len(b)))])
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            # use_cache=False as trl's SFTTrainer passes it (a cache turns the packed-sequence mask off)
            ref = model(input_ids=ids, attention_mask=mask, use_cache=False).logits.float()
            got = model(input_ids=flat, position_ids=pos, use_cache=False).logits.float()
    except Exception:  # noqa: BLE001 - a model that cannot take position ids this way: not exact
        return False
    finally:
        model.train(training)
    return bool(torch.allclose(got[0, :len(a)], ref[0, :len(a)], atol=1e-3, rtol=1e-3)
                and torch.allclose(got[0, len(a):], ref[1, :len(b)], atol=1e-3, rtol=1e-3))


def _flash_attention(device: str) -> bool:
    if device != "cuda":
        return False
    import importlib.util

    return importlib.util.find_spec("flash_attn") is not None


def choose_batching(s: SFTSettings, model: Any, tok: Any) -> str:
    """The batching actually used; padding-free modes only where they are exact for this model."""
    if s.batching in ("auto", "padding_free", "pack"):
        exact = padding_free_exact(model, tok)
        if s.batching == "auto":
            return "padding_free" if exact else "group"
        if not exact:
            raise PreceptorError("Padding-free batches not exact", f"batching = {s.batching!r}: this model attends across "
                                 "examples flattened into one row (its attention mask ignores position ids)",
                                 "Use batching = 'group' (similar lengths together), or FlashAttention on a GPU.")
    return s.batching


def fit_to_max_length(ctx: Any, tok: Any, rows: list[dict[str, Any]], max_length: int, split: str) -> list[dict[str, Any]]:
    """Cut answers so prompt + answer fit ``max_length`` tokens (padding-free batches are not truncated by trl)."""
    out: list[dict[str, Any]] = []
    cut = 0
    for row in rows:
        fitted = row
        for _ in range(4):
            n = len(tok.apply_chat_template(fitted["prompt"] + fitted["completion"], tokenize=True, return_dict=True)["input_ids"])
            if n <= max_length:
                break
            ids = tok(fitted["completion"][0]["content"], add_special_tokens=False)["input_ids"]
            keep = max(1, len(ids) - (n - max_length) - 4)
            fitted = {**fitted, "completion": [{"role": "assistant", "content": tok.decode(ids[:keep])}]}
        else:
            continue  # could not be made to fit: left out (counted below)
        cut += fitted is not row
        out.append(fitted)
    if (cut or len(out) < len(rows)) and ctx is not None:
        ctx.log(f"{cut} of {len(rows)} {split} answers cut to fit max_length = {max_length} tokens"
                + (f"; {len(rows) - len(out)} left out" if len(out) < len(rows) else ""), "warning")
    return out


def sft_config_kwargs(batching: str, max_length: int) -> dict[str, Any]:
    """SFTConfig fields that implement a batching mode (shared with the benchmark)."""
    if batching == "pad_max":
        return {"pad_to_multiple_of": max_length, "padding_free": False, "packing": False, "max_length": max_length}
    if batching == "group":
        return {"train_sampling_strategy": "group_by_length", "padding_free": False, "packing": False, "max_length": max_length}
    if batching == "padding_free":  # answers are cut to max_length beforehand (fit_to_max_length)
        return {"padding_free": True, "packing": False, "max_length": None}
    if batching == "pack":
        return {"packing": True, "packing_strategy": "bfd", "padding_free": True, "max_length": max_length}
    return {"max_length": max_length}


def run(ctx: Any) -> dict[str, Any]:
    """Train a LoRA adapter (in the worker process); returns the summary with the new system's name."""
    from preceptor.engine.models import set_threads
    from preceptor.engine.train import common

    s: SFTSettings = from_dict(SFTSettings, ctx.config["settings"])
    threads = set_threads(s.threads or None)
    device, bf16, fp16 = common.device_and_precision(s)
    model_name, params = common.base_model_name(ctx.project, s.base_system)
    common.system_name(ctx, s, "ft")
    data = prepare_data(ctx.project, s)
    rows = [{"prompt": r["prompt"], "completion": r["completion"]} for r in data.train]
    val_rows = [{"prompt": r["prompt"], "completion": r["completion"]} for r in data.val]
    ctx.log(f"SFT on {len(rows)} train / {len(val_rows)} val examples from {data.sources}; base {model_name}; "
            f"{device}, {'bf16' if bf16 else 'fp16' if fp16 else 'fp32'}, {threads} thread(s)")
    if ctx.cancel.is_set():
        raise Cancelled()

    import datasets
    from trl import SFTConfig, SFTTrainer

    from preceptor.engine.train.callbacks import run_callback

    model, tok = common.load_base(model_name, threads)
    targets = common.check_targets(model, s.lora_targets, model_name)
    rows = _drop_too_long(ctx, tok, rows, s.max_length, "train")
    val_rows = _drop_too_long(ctx, tok, val_rows, s.max_length, "val")
    if not rows:
        raise PreceptorError("No training data", f"every train prompt is max_length = {s.max_length} tokens or longer",
                             "Raise max_length (in [train.sft] or with --max-length).")
    if not val_rows:
        ctx.warn(f"the val split has no usable answers from {s.from_system!r}: no eval loss or perplexity this run "
                 "(generate answers for the val split, or import more data)")
    batching = "pack" if s.batching == "auto" and _flash_attention(device) else choose_batching(s, model, tok)
    if batching in ("padding_free",):
        rows = fit_to_max_length(ctx, tok, rows, s.max_length, "train")
        val_rows = fit_to_max_length(ctx, tok, val_rows, s.max_length, "val")
    sha = common.sha256_rows(rows)  # of exactly what is trained on
    ctx.record_config(base_model=model_name, device=device, threads=threads, batching=batching, lora_targets_used=targets,
                      data={"train": len(rows), "val": len(val_rows), "sha256": sha, "val_sha256": common.sha256_rows(val_rows),
                            "sources": data.sources, "template_hashes": data.template_hashes},
                      prompt_ids=sorted({int(r["prompt_id"]) for r in (*rows, *val_rows) if r.get("prompt_id") is not None}))
    args = SFTConfig(**{
        **common.training_args(s, ctx.run_dir, device=device, bf16=bf16, fp16=fp16, has_eval=bool(val_rows)),
        "completion_only_loss": True,
        **sft_config_kwargs(batching, s.max_length),
    })
    callback = run_callback(ctx, "sft")
    trainer = SFTTrainer(
        model=model, args=args, processing_class=tok, peft_config=common.lora_config(s, targets),
        train_dataset=datasets.Dataset.from_list(rows),
        eval_dataset=datasets.Dataset.from_list(val_rows) if val_rows else None,
        callbacks=[callback],
    )
    adapter, sizes = common.train_and_save(ctx, trainer, callback, bool(val_rows))
    meta = {"from_system": s.from_system, "sources": data.sources, "base_system": s.base_system, "preset": s.preset,
            "data_sha256": sha, "n_train": len(rows)}
    system = common.register(ctx, role="ft", s=s, model_name=model_name, adapter=adapter, params=params, meta=meta)
    out: dict[str, Any] = {"system": system, "adapter": str(adapter), "steps": trainer.state.global_step,
                           "train": len(rows), "val": len(val_rows), "data_sha256": sha, **sizes}
    if callback.eval_losses:
        step, loss = callback.eval_losses[-1]
        out.update(eval_loss=loss, eval_step=step)
        if loss < 700:
            import math

            out["perplexity"] = math.exp(loss)
    return out
