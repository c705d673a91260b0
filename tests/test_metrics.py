"""Text metrics, BERTScore routing and perplexity against hand-computed values and the libraries."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from preceptor.engine.evaluation import metrics as M
from preceptor.engine.evaluation.language import script_of


def test_registry_names_and_unknown_metric() -> None:
    for name in ("rougeL", "bleu", "bertscore_f1", "facet_f1", "key_terms", "triple_exact", "triple_soft"):
        assert name in M.names()
    from preceptor.errors import PreceptorError

    with pytest.raises(PreceptorError) as e:
        M.scorer("rouge2")
    assert e.value.message == "no metric named 'rouge2'"


def test_rougeL_hand_computed_and_equal_to_library() -> None:
    from rouge_score import rouge_scorer

    sc = M.scorer("rougeL")
    pred, ref = "the cat sat on the mat", "the cat is on the mat"
    # LCS = "the cat on the mat" (5 tokens) of 6 and 6 -> P = R = F = 5/6
    assert sc.score([pred], [ref])[0] == pytest.approx(5 / 6)
    # stemming on: "inhibits" and "inhibit" match
    assert sc.score(["warfarin inhibits vkorc1"], ["warfarin inhibit vkorc1"])[0] == pytest.approx(1.0)
    direct = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    preds = ["Clarithromycin raises midazolam levels.", "", "x " * 3000]
    refs = ["Clarithromycin is a strong CYP3A inhibitor and raises midazolam exposure.", "anything", "x y"]
    assert sc.score(preds, refs) == [direct.score(r, p)["rougeL"].fmeasure for p, r in zip(preds, refs, strict=False)]
    assert sc.score([""], ["ref"]) == [0.0]


def test_rougeL_thai_words_and_korean_morphemes() -> None:
    from rouge_score import rouge_scorer

    from preceptor.engine.evaluation.language import ScriptTokenizer, korean_morphemes, thai_words

    sc = M.scorer("rougeL")
    # Thai: newmm words, never pieces of a syllable; ยา|นี้|ยับยั้ง|เอนไซม์ vs the same + cyp3a4
    assert thai_words("ยานี้ยับยั้งเอนไซม์ CYP3A4") == ("ยา", "นี้", "ยับยั้ง", "เอนไซม์", "cyp3a4")
    assert "เป" not in thai_words("ยานี้เป็นยาต้านการแข็งตัวของเลือด")
    pred, ref = "ยานี้ยับยั้งเอนไซม์", "ยานี้ยับยั้งเอนไซม์ CYP3A4"
    assert sc.score([pred], [ref]) == [pytest.approx(2 * 4 / 9)]  # LCS 4 of 4 and 5 words
    # rouge-score's own tokenizer would drop every Thai letter (score 0); ours equals the library with our tokenizer
    assert rouge_scorer.RougeScorer(["rougeL"]).score(ref, pred)["rougeL"].fmeasure == 0.0
    direct = rouge_scorer.RougeScorer(["rougeL"], tokenizer=ScriptTokenizer())
    assert sc.score([pred], [ref]) == [direct.score(ref, pred)["rougeL"].fmeasure]
    # Korean: morphemes, so a particle change still matches the stem (eojeol would give 0 here)
    assert korean_morphemes("클라리트로마이신은 CYP3A4를 억제합니다")[:3] == ("클라리트로마이신", "은", "cyp3a4")
    k = sc.score(["클라리트로마이신이 CYP3A4를 억제한다"], ["클라리트로마이신은 CYP3A4를 억제합니다"])[0]
    assert 0.4 < k < 1.0


def test_bleu_equals_sacrebleu_sentence_bleu() -> None:
    import sacrebleu

    sc = M.scorer("bleu")
    preds = ["Rifampin induces CYP3A and lowers midazolam exposure.", "Warfarin is a blood thinner.", "", "a " * 2000]
    refs = ["Rifampin is a strong CYP3A inducer and lowers midazolam exposure.", "Warfarin inhibits VKORC1.", "x", "a b"]
    got = sc.score(preds, refs)
    want = [sacrebleu.sentence_bleu(p, [r]).score / 100 for p, r in zip(preds, refs, strict=False)]
    assert got == pytest.approx(want, abs=1e-12)
    assert sc.score(["the same sentence here ok"], ["the same sentence here ok"])[0] == pytest.approx(1.0)
    assert got[2] == 0.0
    assert all(0.0 <= v <= 1.0 for v in got)
    # Thai words (newmm) and Korean morphemes (Kiwi) read as they are; other non-Latin scripts: intl
    from preceptor.engine.evaluation.language import words

    th = ("ยานี้ยับยั้งเอนไซม์", "ยานี้ยับยั้งเอนไซม์ CYP3A4")
    ko = ("클라리트로마이신이 CYP3A4를 억제한다", "클라리트로마이신은 CYP3A4를 억제합니다")
    ru = ("Кларитромицин ингибирует CYP3A4.", "Кларитромицин сильно ингибирует CYP3A4.")
    assert sc.score([th[0], ko[0], ru[0]], [th[1], ko[1], ru[1]]) == pytest.approx(
        [sacrebleu.sentence_bleu(" ".join(words(th[0])), [" ".join(words(th[1]))], tokenize="none").score / 100,
         sacrebleu.sentence_bleu(" ".join(words(ko[0])), [" ".join(words(ko[1]))], tokenize="none").score / 100,
         sacrebleu.sentence_bleu(ru[0], [ru[1]], tokenize="intl").score / 100], abs=1e-12)


def test_chrf_equals_sacrebleu_chrf_plus_plus() -> None:
    from sacrebleu.metrics import CHRF

    sc = M.scorer("chrf")
    preds = ["Rifampin induces CYP3A.", "ยานี้ยับยั้งเอนไซม์", "클라리트로마이신이 억제한다", ""]
    refs = ["Rifampin is a CYP3A inducer.", "ยานี้ยับยั้งเอนไซม์ CYP3A4", "클라리트로마이신은 억제합니다", "x"]
    want = [CHRF(word_order=2).sentence_score(p, [r]).score / 100 for p, r in zip(preds, refs, strict=True)]
    assert sc.score(preds, refs) == pytest.approx(want, abs=1e-12)
    assert sc.score(["same text"], ["same text"]) == [pytest.approx(1.0)]


def test_corpus_bleu_matches_sacrebleu() -> None:
    import sacrebleu

    from preceptor.engine.evaluation.metrics.text import corpus_bleu

    preds, refs = ["a b c d e", "f g h i"], ["a b c d x", "f g h i"]
    assert corpus_bleu(preds, refs) == pytest.approx(sacrebleu.corpus_bleu(preds, [refs]).score / 100)
    assert corpus_bleu([], []) == 0.0


@pytest.mark.parametrize("text,lang", [
    ("Clarithromycin inhibits CYP3A4.", "en"),
    ("Le kétoconazole inhibe le CYP3A4.", "en"),  # Latin script
    ("ยานี้ยับยั้งเอนไซม์ CYP3A4 อย่างแรง", "th"),
    ("클라리트로마이신은 CYP3A4를 억제합니다", "ko"),
    ("Кларитромицин ингибирует CYP3A4", "other"),
    ("クラリスロマイシンはCYP3A4を阻害する", "other"),
    ("", "en"),
    ("12345 !!", "en"),
])
def test_script_of(text: str, lang: str) -> None:
    assert script_of(text) == lang


def _hf(encoder: Path) -> str:
    from preceptor.engine.evaluation.metrics.text import hf_folder

    return str(hf_folder(encoder))


def test_bertscore_equals_bert_score_library(tiny_encoder: Path) -> None:
    import bert_score

    sc = M.scorer("bertscore_f1", encoder=str(tiny_encoder))
    preds = ["warfarin inhibits vitamin k epoxide reductase", "aspirin inhibits cox-1", "metformin lowers glucose"]
    refs = ["warfarin inhibits vkorc1", "aspirin inhibits platelet aggregation", "metformin lowers hepatic glucose production"]
    res = sc.score_all(preds, refs)
    P, R, F = bert_score.score(preds, refs, model_type=_hf(tiny_encoder), num_layers=2, batch_size=64)
    assert res.p == pytest.approx(P.tolist(), abs=1e-6)
    assert res.r == pytest.approx(R.tolist(), abs=1e-6)
    assert res.f1 == pytest.approx(F.tolist(), abs=1e-6)
    assert sc.score(preds, refs) == pytest.approx(F.tolist(), abs=1e-6)
    assert res.rescaled == [False, False, False]  # no baseline exists for a local encoder
    same = sc.score(["warfarin inhibits vkorc1"], ["warfarin inhibits vkorc1"])[0]
    assert same == pytest.approx(1.0, abs=1e-5)


def test_bertscore_empty_and_very_long(tiny_encoder: Path) -> None:
    sc = M.scorer("bertscore_f1", encoder=str(tiny_encoder))
    long = "warfarin inhibits vkorc1 and raises bleeding risk " * 400  # far beyond the encoder's positions
    vals = sc.score(["", "warfarin", long], ["warfarin inhibits vkorc1", "", "warfarin inhibits vkorc1"])
    assert vals[0] == 0.0 and vals[1] == 0.0
    assert math.isfinite(vals[2]) and 0.0 < vals[2] <= 1.0


def test_bertscore_routes_thai_and_korean_to_their_encoder(tiny_encoder: Path, tmp_path: Path) -> None:
    import bert_score

    from preceptor.testing.tiny import build_encoder

    other = build_encoder(tmp_path / "other_enc", seed=1)
    # the tiny encoders know no Thai or Korean: allowed here (max_unknown=1) to compare with the library
    sc = M.scorer("bertscore_f1", encoder=str(tiny_encoder), encoders={"th": str(other), "ko": str(other)}, max_unknown=1.0)
    preds = ["warfarin inhibits vkorc1", "ยานี้ยับยั้ง cyp3a4", "억제 cyp3a4 inhibits"]
    refs = ["warfarin inhibits the vkorc1 enzyme", "ยับยั้ง cyp3a4 แรง", "억제합니다 cyp3a4"]
    res = sc.score_all(preds, refs)
    assert res.skipped == [False, False, False]
    assert res.lang == ["en", "th", "ko"]
    assert res.encoder[0] == _hf(tiny_encoder) and res.encoder[1] == res.encoder[2] == _hf(other)
    _, _, F_en = bert_score.score(preds[:1], refs[:1], model_type=_hf(tiny_encoder), num_layers=2)
    _, _, F_other = bert_score.score(preds[1:], refs[1:], model_type=_hf(other), num_layers=2)
    assert res.f1[0] == pytest.approx(float(F_en[0]), abs=1e-6)
    assert res.f1[1:] == pytest.approx(F_other.tolist(), abs=1e-6)


def test_bertscore_rescaled_only_with_a_baseline(tiny_encoder: Path, tmp_path: Path) -> None:
    base = tmp_path / "baseline.tsv"
    base.write_text("LAYER,P,R,F\n0,0.5,0.5,0.5\n1,0.6,0.6,0.6\n2,0.8,0.7,0.75\n")
    one = dict(encoder=str(tiny_encoder), multilingual=None, max_unknown=1.0)  # one tiny encoder for every script
    raw = M.scorer("bertscore_f1", **one)
    resc = M.scorer("bertscore_f1", **one, baselines={"en": str(base)})
    preds, refs = ["warfarin inhibits vkorc1", "ยับยั้ง"], ["warfarin lowers clotting factors", "ยับยั้ง cyp3a4"]
    r0, r1 = raw.score_all(preds, refs), resc.score_all(preds, refs)
    assert r1.rescaled == [True, False]  # the Thai item has no baseline
    # layer 2 row: F baseline 0.75 -> (raw - 0.75) / (1 - 0.75)
    assert r1.f1[0] == pytest.approx((r0.f1[0] - 0.75) / 0.25, abs=1e-5)
    assert r1.p[0] == pytest.approx((r0.p[0] - 0.8) / 0.2, abs=1e-5)
    assert r1.f1[1] == pytest.approx(r0.f1[1], abs=1e-6)
    assert raw.signature != resc.signature


def test_bertscore_refuses_an_encoder_that_cannot_read_the_script(tiny_encoder: Path) -> None:
    from preceptor.engine.evaluation.metrics.text import unknown_share

    sc = M.scorer("bertscore_f1", encoder=str(tiny_encoder), multilingual=None)
    preds = ["warfarin inhibits vkorc1", "ยานี้ยับยั้งเอนไซม์", "วันนี้อากาศร้อนมาก"]
    refs = ["warfarin inhibits the vkorc1 enzyme", "ยานี้ยับยั้งเอนไซม์ CYP3A4", "ยานี้ยับยั้งเอนไซม์ CYP3A4"]
    res = sc.score_all(preds, refs)
    # an English WordPiece vocabulary turns every Thai word into [UNK]: refused, never F1 = 1
    assert res.skipped == [False, True, True]
    assert res.f1[1] is None and res.f1[2] is None and res.p[2] is None
    assert res.unknown[0] == 0.0 and res.unknown[1] > 0.9
    # counted in characters: the Latin code is read, the Thai words are not
    assert 0.6 < unknown_share(_tok(tiny_encoder), "ยานี้ยับยั้งเอนไซม์ CYP3A4") < 0.8
    assert "multilingual" not in sc.signature and "unk<=0.05" in sc.signature


def _tok(encoder: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(_hf(encoder))


def test_bertscore_missing_baseline_file_is_a_clear_error(tiny_encoder: Path, tmp_path: Path) -> None:
    from preceptor.errors import PreceptorError

    with pytest.raises(PreceptorError) as e:
        M.scorer("bertscore_f1", encoder=str(tiny_encoder), baselines={"en": str(tmp_path / "nope.tsv")})
    assert e.value.message == f"{tmp_path / 'nope.tsv'} does not exist"


def _direct_ppl(lm_dir: Path, prompt_text: str | None, output: str) -> float:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(lm_dir)
    model = AutoModelForCausalLM.from_pretrained(lm_dir).eval()
    target = tok(output, add_special_tokens=False)["input_ids"]
    if prompt_text is None:
        ctx, target = target[:1], target[1:]
    else:
        msgs = [{"role": "user", "content": prompt_text}]
        try:
            from preceptor.prompts.templates import student_messages

            msgs, _ = student_messages(prompt_text)
        except ImportError:
            pass
        ctx = tok(tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False), add_special_tokens=False)["input_ids"]
    ids = torch.tensor([ctx + target])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0]
    logp = torch.log_softmax(logits.float(), dim=-1)
    nll = -sum(float(logp[len(ctx) + i - 1, t]) for i, t in enumerate(target))
    return math.exp(nll / len(target))


def test_perplexity_hand_computed_batched_and_empty(tiny_lm: Path) -> None:
    sc = M.scorer("ppl", model=str(tiny_lm), batch_size=2)
    outs = ["Warfarin inhibits vitamin K epoxide reductase.", "Metformin lowers hepatic glucose production.",
            "Omeprazole inhibits the proton pump and CYP2C19.", ""]
    prompts = ["State the mechanism of action of warfarin.", "Explain metformin.", "Omeprazole?", "Empty"]
    got = sc.score(outs, None, prompts=prompts)
    assert got[3] is None  # nothing to score
    for o, p, v in zip(outs[:3], prompts[:3], got[:3], strict=False):
        assert v == pytest.approx(_direct_ppl(tiny_lm, p, o), rel=1e-4)
    # padding in a batch changes nothing
    single = [sc.score([o], None, prompts=[p])[0] for o, p in zip(outs[:3], prompts[:3], strict=False)]
    assert got[:3] == pytest.approx(single, rel=1e-5)
    unconditional = M.scorer("ppl", model=str(tiny_lm), conditional=False).score(outs[:1], None)
    assert unconditional[0] == pytest.approx(_direct_ppl(tiny_lm, None, outs[0]), rel=1e-4)


def test_perplexity_long_output_is_truncated(tiny_lm: Path) -> None:
    sc = M.scorer("ppl", model=str(tiny_lm), max_tokens=64)
    v = sc.score(["warfarin inhibits vkorc1 " * 300], None, prompts=["Explain."])[0]
    assert v is not None and math.isfinite(v) and v > 1.0
    assert sc.tokens_scored <= 63


def test_eval_loss_perplexity() -> None:
    from preceptor.engine.evaluation.metrics.perplexity import from_eval_loss

    assert from_eval_loss(math.log(7.5)) == pytest.approx(7.5)
    assert from_eval_loss(None) is None and from_eval_loss(float("nan")) is None


def test_scorers_import_nothing_heavy_until_built() -> None:
    import subprocess
    import sys

    code = ("import sys; import preceptor.engine.evaluation.metrics, preceptor.engine.evaluation.evaluate, preceptor.engine.results.report, "
            "preceptor.db.metrics, preceptor.cli.eval; "
            "print(json.dumps(sorted(m for m in ('torch','bert_score','transformers','rouge_score','sacrebleu') if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


@pytest.mark.slow
def test_bertscore_with_the_packaged_minilm_equals_the_library() -> None:
    import bert_score

    from preceptor.engine.evaluation.metrics.text import resolve_encoder

    folder = resolve_encoder(None)
    sc = M.scorer("bertscore_f1")
    preds = ["Clarithromycin strongly inhibits CYP3A, increasing midazolam exposure.", "Warfarin is a blood thinner."]
    refs = ["Clarithromycin is a strong CYP3A inhibitor and raises midazolam exposure.", "Warfarin inhibits VKORC1."]
    res = sc.score_all(preds, refs)
    P, R, F = bert_score.score(preds, refs, model_type=str(folder), num_layers=6)
    assert res.f1 == pytest.approx(F.tolist(), abs=1e-6)
    assert res.rescaled == [False, False]
    assert res.f1[0] > res.f1[1]
