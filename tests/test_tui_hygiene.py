"""The app starts without the heavy stack: importing it pulls in none of the ML libraries."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ["torch", "transformers", "peft", "trl", "sentence_transformers", "litellm", "bert_score", "datasets",
         "sqlite_utils", "numpy", "scipy"]


def modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", f"{code}\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"],
                         capture_output=True, text=True, check=True).stdout
    return set(json.loads(out.strip().splitlines()[-1]))


def test_app_and_cli_entry_import_light():
    mods = modules_after("import preceptor.tui.app\nimport preceptor.cli.tui")
    assert "textual" in mods
    assert sorted(set(HEAVY) & mods) == []


def test_every_screen_module_imports_light():
    screens = ["dashboard", "judge", "data", "train", "results", "export"]
    mods = modules_after("\n".join(f"import preceptor.tui.screens.{s}" for s in screens))
    assert sorted(set(HEAVY) & mods) == []
