"""Language routing: script detection, Thai / Korean words, and the triple ranking with the real encoders."""

from __future__ import annotations

import pytest

from preceptor.engine.evaluation import metrics as M
from preceptor.engine.evaluation.language import pair_language, script_of, words
from preceptor.testing.triples import TRIPLES, candidates


def test_pair_language_takes_the_non_latin_side() -> None:
    assert pair_language("ยานี้ยับยั้ง", "Clarithromycin inhibits CYP3A4") == "th"
    assert pair_language("Clarithromycin", "클라리트로마이신은 억제합니다") == "ko"
    assert pair_language("", "") == "en"
    assert script_of("ᄀᄂ") == "ko"  # Hangul jamo


def test_words_by_script() -> None:
    assert words("Clarithromycin inhibits CYP3A4.") == ["clarithromycin", "inhibits", "cyp3a4"]
    assert words("ยาต้านการแข็งตัวของเลือด") == ["ยา", "ต้าน", "การแข็งตัว", "ของ", "เลือด"]
    assert words("혈중 농도를 높입니다")[:4] == ["혈", "중", "농도", "를"]
    assert words("阻害する") == ["阻", "害", "す", "る"]


@pytest.mark.slow
def test_triples_rank_identical_over_paraphrase_over_unrelated() -> None:
    """The done-when figures of issue 16, with the packaged encoders and default routing."""
    text = {n: M.scorer(n) for n in ("rougeL", "bleu", "chrf")}
    bert = M.scorer("bertscore_f1")
    for lang in TRIPLES:
        ref, cands = candidates(lang)
        vals = {n: s.score(cands, [ref] * 3) for n, s in text.items()}
        res = bert.score_all(cands, [ref] * 3)
        assert res.skipped == [False, False, False]
        vals.update(bertscore_p=res.p, bertscore_r=res.r, bertscore_f1=res.f1)
        for name, (same, para, unrelated) in vals.items():
            assert same > para > unrelated, (lang, name, same, para, unrelated)
        for name in ("bertscore_p", "bertscore_r", "bertscore_f1"):
            _, para, unrelated = vals[name]
            assert unrelated < 0.95 and para - unrelated >= 0.08 and para <= 0.99, (lang, name, para, unrelated)
        if lang == "th":
            assert vals["rougeL"][2] <= 0.15
    # Thai and Korean went to the multilingual encoder, English to MiniLM
    assert bert.via("th").startswith("multilingual-e5-small") and bert.via("ko").startswith("multilingual-e5-small")
    assert bert.via("en").startswith("all-minilm-l6-v2")


@pytest.mark.slow
def test_the_english_encoder_is_refused_on_thai() -> None:
    sc = M.scorer("bertscore_f1", multilingual=None)  # MiniLM for every script
    ref, cands = candidates("th")
    res = sc.score_all(cands, [ref] * 3)
    assert res.skipped == [True, True, True] and res.f1 == [None, None, None]


def test_one_normaliser_for_every_identity() -> None:
    import unicodedata

    from preceptor.engine.ingest.splits import text_hash
    from preceptor.text import identity, normalise

    composed = "클라리트로마이신은  억제합니다 "
    decomposed = unicodedata.normalize("NFD", composed)
    assert decomposed != composed and normalise(decomposed) == "클라리트로마이신은 억제합니다"
    assert text_hash(decomposed) == text_hash(composed.upper())
    assert identity("Ada  LOVELACE") == identity(" ada lovelace")
