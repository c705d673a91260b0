"""The headless core never imports Textual; start-up paths never import the heavy stack."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ["torch", "transformers", "peft", "trl", "sentence_transformers", "litellm", "bert_score", "datasets"]


def loaded_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"],
        capture_output=True, text=True, check=True,
    ).stdout
    return set(json.loads(out.strip().splitlines()[-1]))


CORE = [
    "preceptor.db", "preceptor.db.store", "preceptor.db.migrations", "preceptor.db.prompts", "preceptor.db.systems",
    "preceptor.db.outputs", "preceptor.db.runs", "preceptor.engine", "preceptor.engine.ingest.prompts",
    "preceptor.engine.events", "preceptor.engine.views", "preceptor.prompts", "preceptor.project",
]


@pytest.mark.parametrize("module", CORE)
def test_core_imports_without_textual(module):
    mods = loaded_after(f"import {module}")
    assert "textual" not in mods
    assert not (set(HEAVY) & mods), set(HEAVY) & mods


def test_no_module_of_the_core_or_cli_imports_the_heavy_stack_at_import():
    """Every engine / db / prompts / cli module: heavy libraries load only inside the code that needs them."""
    import pkgutil

    import preceptor.cli
    import preceptor.db
    import preceptor.engine
    import preceptor.prompts

    names = []
    for pkg in (preceptor.engine, preceptor.db, preceptor.prompts, preceptor.cli):
        names += [m.name for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + ".")]
    mods = loaded_after("\n".join(f"import {n}" for n in names))
    assert not (set(HEAVY) & mods), sorted(set(HEAVY) & mods)
    assert "sqlite_utils" not in mods


def test_every_engine_and_db_module_is_headless():
    """All modules under engine/, db/, prompts/ (whatever exists) import without textual."""
    import pkgutil

    import preceptor.db
    import preceptor.engine
    import preceptor.prompts

    names = []
    for pkg in (preceptor.engine, preceptor.db, preceptor.prompts):
        names += [m.name for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + ".")]
    code = "\n".join(f"import {n}" for n in names)
    assert "textual" not in loaded_after(code)


def test_cli_start_is_light():
    mods = loaded_after("import preceptor.cli, preceptor.cli.core, preceptor.cli.common")
    assert not (set(HEAVY) & mods)
    assert "textual" not in mods


def test_the_engine_reads_as_the_loop():
    """A few loose plumbing modules at the engine's top; every stage is a package of its own."""
    from pathlib import Path

    import preceptor.engine

    top = Path(preceptor.engine.__file__).parent
    loose = sorted(p.stem for p in top.glob("*.py") if p.stem != "__init__")
    stages = sorted(p.name for p in top.iterdir() if (p / "__init__.py").exists())
    assert len(loose) <= 6, loose
    assert {"ingest", "models", "generation", "train", "evaluation", "judging", "results", "export", "embed"} <= set(stages)


def test_no_app_module_imports_the_store_or_a_string_shim():
    """The app reaches the engine by plain imports only (the contracts in pyproject.toml check the rest)."""
    import ast
    from pathlib import Path

    import preceptor.tui

    for path in Path(preceptor.tui.__file__).parent.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            for name in names:
                assert not name.startswith("preceptor.db"), f"{path}: imports {name}"
                assert name != "importlib", f"{path}: imports the engine by name"
