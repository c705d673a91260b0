"""Test set-up: every test in its own temp project and PRECEPTOR_HOME; no network.

The converted packaged models live in one shared cache for the whole run (made once by
``preceptor models setup`` in ``make test``, read-only to tests) so no test repeats a
model conversion.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.setdefault("WANDB_DISABLED", "true")

import pytest  # noqa: E402

# The real model cache, resolved before any test changes PRECEPTOR_HOME.
from preceptor import paths  # noqa: E402

SHARED_MODELS = paths.models_dir()


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRECEPTOR_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PRECEPTOR_MODELS", str(SHARED_MODELS))
    monkeypatch.delenv("PRECEPTOR_PROJECT", raising=False)


@pytest.fixture
def project(tmp_path: Path):
    from preceptor.project import Project

    p = Project.init(tmp_path / "proj")
    yield p
    p.close()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Qwen2 causal LM + ChatML tokenizer folder, built once per test session (read-only)."""
    from preceptor.testing.tiny import build_causal_lm

    return build_causal_lm(tmp_path_factory.mktemp("tiny_lm") / "model")


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT sentence encoder (sentence-transformers folder), built once per session."""
    from preceptor.testing.tiny import build_encoder

    return build_encoder(tmp_path_factory.mktemp("tiny_encoder") / "model")
