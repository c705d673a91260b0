"""Hand-written Thai, Korean and English test triples for the language-aware metrics.

Each language has a reference answer and three candidates: the same text, a paraphrase
(same facts, other words and order) and an unrelated answer (another topic). Every text
metric must rank them identical > paraphrase > unrelated (tests/test_language.py,
scripts/language_triples.py prints the table). Written for this project.
"""

from __future__ import annotations

# lang: (reference, paraphrase, unrelated); "identical" is the reference itself
TRIPLES: dict[str, tuple[str, str, str]] = {
    "th": (
        "คลาริโทรมัยซินยับยั้งเอนไซม์ CYP3A4 ทำให้ระดับยามิดาโซแลมในเลือดสูงขึ้น จึงควรหลีกเลี่ยงการใช้ยาทั้งสองร่วมกัน",
        "คลาริโทรมัยซินเป็นตัวยับยั้ง CYP3A4 ซึ่งเพิ่มระดับมิดาโซแลมในเลือด ดังนั้นไม่ควรใช้ยาสองตัวนี้ร่วมกัน",
        "วันนี้อากาศร้อนมาก เด็กนักเรียนจึงไปว่ายน้ำที่สระใกล้บ้านหลังเลิกเรียนตอนเย็น",
    ),
    "ko": (
        "클라리트로마이신은 CYP3A4를 억제하여 미다졸람의 혈중 농도를 높이므로 두 약을 함께 복용하지 않는 것이 좋습니다.",
        "클라리트로마이신이 CYP3A4 효소를 억제하기 때문에 미다졸람 혈중 농도가 올라가므로 두 약의 병용을 피해야 합니다.",
        "오늘은 날씨가 맑아서 아이들과 함께 공원에 산책을 다녀왔고 저녁에는 영화를 보았습니다.",
    ),
    "en": (
        "Clarithromycin inhibits CYP3A4, which raises midazolam blood levels, so the two drugs should not be taken together.",
        "Because clarithromycin blocks CYP3A4, midazolam levels in the blood go up, so these two drugs should not be combined.",
        "The weather was sunny today, so the children walked to the park after school and watched a film in the evening.",
    ),
}

CANDIDATES = ("identical", "paraphrase", "unrelated")


def candidates(lang: str) -> tuple[str, list[str]]:
    """(reference, [identical, paraphrase, unrelated]) of one language."""
    ref, para, unrelated = TRIPLES[lang]
    return ref, [ref, para, unrelated]
