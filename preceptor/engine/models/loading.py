"""Loading models: a packaged name, a local folder, a GGUF file or a hub id -> a ready model.

Heavy libraries (torch, transformers, peft) are imported inside the functions only.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from preceptor.engine.models import e5
from preceptor.engine.models.cache import converted_dir, is_converted, quiet_transformers
from preceptor.engine.models.catalogue import (
    PACKAGED,
    PACKAGED_E5,
    PACKAGED_ENCODER,
    PACKAGED_STUDENT,
    not_installed,
    package_file,
)
from preceptor.errors import PreceptorError


def resolve_lm(model: str) -> Path | str:
    """A packaged name -> its converted folder; a local folder or ``.gguf`` file -> that path; else the hub id."""
    if not model or not str(model).strip():
        raise PreceptorError("No model named", "the model name is empty", f"Use {PACKAGED_STUDENT!r}, a local folder or a hub id.")
    model = str(model).strip()
    if model in PACKAGED:
        if PACKAGED[model].kind != "causal-lm":
            raise PreceptorError("Not a language model", f"{model!r} is a sentence encoder", f"Use {PACKAGED_STUDENT!r} for generation.")
        out = converted_dir(model)
        if not is_converted(out):
            raise PreceptorError("Model not set up", f"{model} has not been converted yet (looked in {out})",
                                 "Run `preceptor models setup` once (about half a minute).")
        return out
    p = Path(model).expanduser()
    if p.exists():
        return p.resolve()
    if model.endswith(".gguf") or model.startswith(("/", "./", "../", "~")):
        raise PreceptorError("Model not found", f"{model}: no such file or folder", "Check the path, or use a packaged name: " + PACKAGED_STUDENT)
    return model  # a hub id: the user named it, so loading may download

DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
          "float16": "float16", "fp16": "float16", "auto": "auto"}

def torch_dtype(dtype: str) -> Any:
    import torch

    key = DTYPES.get(str(dtype).lower())
    if key is None:
        raise PreceptorError("Unknown dtype", f"dtype {dtype!r} is not one of {', '.join(sorted(DTYPES))}", "Use auto, bf16 or fp32.")
    return "auto" if key == "auto" else getattr(torch, key)

def cpu_has_fast_bf16() -> bool:
    """True on CPUs with AVX512-bf16 or AMX-bf16 (where bf16 matmuls beat fp32)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False

def preferred_dtype(device: str = "cpu") -> str:
    """The fastest sensible dtype for generation on ``device``: bf16 where supported, else fp32 (fp16 on old GPUs)."""
    if device.startswith("cuda"):
        import torch

        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp16"
    if device == "cpu":
        return "bf16" if cpu_has_fast_bf16() else "fp32"
    return "fp32"

def set_threads(n: int | None) -> int:
    """Pin torch's intra-op threads (None -> $PRECEPTOR_THREADS, $OMP_NUM_THREADS, else 1); return the count used."""
    import torch

    if n is None or n <= 0:
        env = os.environ.get("PRECEPTOR_THREADS") or os.environ.get("OMP_NUM_THREADS") or "1"
        try:
            n = max(1, int(env))
        except ValueError:
            n = 1
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return torch.get_num_threads()

def load_tokenizer(model: str) -> Any:
    """The tokenizer of ``model``: left padding, pad token set."""
    from transformers import AutoTokenizer

    quiet_transformers()
    where, kwargs = _pretrained_location(model)
    try:
        tok = AutoTokenizer.from_pretrained(str(where), **kwargs)
    except (OSError, ValueError) as exc:
        raise PreceptorError("Cannot load tokenizer", f"{model}: {exc}".splitlines()[0], _load_hint(where))
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok

def _pretrained_location(model: str) -> tuple[Path | str, dict[str, Any]]:
    """Where ``from_pretrained`` should look for ``model``, and the ``gguf_file`` argument for a GGUF file."""
    where = resolve_lm(model)
    if isinstance(where, Path) and where.is_file():
        return where.parent, {"gguf_file": where.name}
    return where, {}

def _load_hint(where: Path | str) -> str:
    if isinstance(where, Path):
        return "Check the folder holds config.json, weights and tokenizer files (a transformers model)."
    return "Hub ids need network access or a local copy; offline, use a local folder or " + PACKAGED_STUDENT

def load_causal_lm(model: str, *, adapter: str | None = None, dtype: str = "auto", device: str = "cpu",
                   threads: int | None = None, merge_adapter: bool = False) -> tuple[Any, Any]:
    """(model, tokenizer) ready for generation: eval mode, left padding, pad token set.

    ``model``: a packaged name, a local folder, a ``.gguf`` file or a hub id. ``dtype``:
    auto (the checkpoint's), bf16, fp32, fp16. ``adapter``: a LoRA folder applied with peft
    (``merge_adapter=True`` folds it into the weights, faster to generate with).
    """
    set_threads(threads)
    from transformers import AutoModelForCausalLM

    quiet_transformers()
    tok = load_tokenizer(model)
    where, kwargs = _pretrained_location(model)
    kwargs["dtype"] = torch_dtype(dtype)
    try:
        lm = AutoModelForCausalLM.from_pretrained(str(where), **kwargs)
    except (OSError, ValueError) as exc:
        raise PreceptorError("Cannot load model", f"{model}: {exc}".splitlines()[0], _load_hint(where))
    if adapter:
        ad = Path(adapter).expanduser()
        if not (ad / "adapter_config.json").exists():
            raise PreceptorError("Adapter not found", f"{adapter}: no adapter_config.json there",
                                 "Point --adapter at a LoRA folder saved by `preceptor train`.")
        from peft import PeftModel

        with warnings.catch_warnings():  # transformers' deprecation notices for peft's own calls
            warnings.simplefilter("ignore", FutureWarning)
            lm = PeftModel.from_pretrained(lm, str(ad))
        if merge_adapter:
            lm = lm.merge_and_unload()
    if device and device != "cpu":
        lm = lm.to(device)
    gen = getattr(lm, "generation_config", None)
    if gen is not None and gen.pad_token_id is None:
        gen.pad_token_id = tok.pad_token_id
    lm.eval()
    return lm, tok

def encoder_path(name: str = PACKAGED_ENCODER) -> Path:
    """A sentence-transformers folder: the packaged encoder's, or a local folder as given.

    ``multilingual-e5-small`` -> its converted folder in the model cache (converted on first use).
    """
    if name == PACKAGED_E5:
        return e5.encoder_path()
    if name == PACKAGED_ENCODER:
        p = package_file(PACKAGED_ENCODER)
        if p is None:
            raise not_installed(PACKAGED_ENCODER)
        return p
    p = Path(name).expanduser()
    if p.is_dir():
        return p.resolve()
    raise PreceptorError("Encoder not found", f"{name!r} is neither {PACKAGED_ENCODER!r} nor a local folder",
                         f"Use {PACKAGED_ENCODER!r} or the path of a sentence-transformers folder.")


def try_loading(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Really load every model of :func:`~preceptor.engine.models.catalogue.known_models` rows that
    passed the file checks; a failure becomes the row's status (rows are updated in place)."""
    for row in rows:
        if not row["loads"]:
            continue
        try:
            if row["kind"] == "encoder":
                from sentence_transformers import SentenceTransformer

                SentenceTransformer(row["where"], device="cpu", local_files_only=True)
            else:
                load_causal_lm(row["name"] if row["name"] in PACKAGED else row["where"], dtype="auto")
            row["status"] = "ok (loaded)"
        except Exception as exc:  # noqa: BLE001 - report any load failure as a status
            row["loads"] = False
            row["status"] = f"load failed: {str(exc).splitlines()[0][:120]}"
    return rows
