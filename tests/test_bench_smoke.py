"""bench/import_export.py runs end to end on a small size and prints its BENCH lines."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "import_export.py"


def test_import_export_bench_small() -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(BENCH), "--rows", "300", "--pairs", "300", "--repeats", "1"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH ")]
    names = [ln.split()[1] for ln in lines]
    assert "import_vs_sqlite_floor" in names and "export_jsonl_vs_direct_write" in names
    assert names[-1] == "export_vs_direct_write"
    for ln in lines:
        assert re.fullmatch(r"BENCH \w+ \d+(\.\d+)? (x|MB|rows/s|pairs/s)", ln), ln
    assert "OMP_NUM_THREADS=1" in proc.stdout
