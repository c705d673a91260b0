"""The domain pack (pharma, built from DrugCentral and the FDA table) and the domain metrics."""

from __future__ import annotations

import filecmp
from pathlib import Path

import pytest

from preceptor.engine.evaluation import metrics as M
from preceptor.engine.evaluation.metrics.domain import extract_triples, facet_sets, key_terms
from preceptor.errors import PreceptorError
from preceptor.prompts.domains import available, load

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
PACK_DIR = Path(__file__).resolve().parents[1] / "preceptor" / "prompts" / "domains" / "pharma"


@pytest.fixture(scope="module")
def pack():
    return load("pharma")


def keys(pack, text: str) -> set[tuple[str, str, str]]:
    return {t.key for t in extract_triples(pack, text)}


def test_pack_loads_with_its_declared_parts(pack) -> None:
    assert "pharma" in available()
    assert pack.kinds == ["action", "class", "drug", "pathway", "target"]
    assert set(pack.facets) == {"target", "action", "pathway"}
    assert pack.triples is not None and pack.triples.relation == "action"
    assert (PACK_DIR / "NOTICE").is_file()
    notice = (PACK_DIR / "NOTICE").read_text()
    assert "CC BY 4.0" in notice and "fda.gov" in notice and "drug-interaction-visualizer" in notice
    total = sum(p.stat().st_size for p in PACK_DIR.iterdir())
    assert total < 3_000_000  # modest


def test_gold_facts_come_from_drugcentral_and_the_fda_table(pack) -> None:
    rows = {(r["drug"], r["action"], r["target"], r["source"]) for r in pack.gold_triples}
    assert ("eltrombopag", "AGONIST", "MPL", "drugcentral") in rows
    assert ("clarithromycin", "INHIBITOR", "CYP3A", "fda") in rows
    assert "azole antifungal" in pack.classes_of("ketoconazole")


def test_mentions_synonyms_case_and_sentences(pack) -> None:
    text = "KIT is a target; a kit is not. P-glycoprotein, P-gp and ABCB1 are one transporter. Aspirin inhibits COX-1."
    ms = pack.mentions(text)
    found = [(text[m.char_start:m.char_end], m.entries[0].kind, m.entries[0].id, m.sentence) for m in ms]
    assert ("KIT", "target", "KIT", 0) in found
    assert not any(f[0] == "kit" for f in found)  # short gene symbols are case-sensitive
    assert [(f[2], f[3]) for f in found if f[1] == "pathway"] == [("P-gp", 2)] * 3  # ";" and ". " end sentences
    assert ("Aspirin", "drug", "acetylsalicylic acid", 3) in found
    assert ("COX-1", "target", "PTGS1", 3) in found


@pytest.mark.parametrize("sentence,expected", [
    ("Clarithromycin is a strong CYP3A inhibitor and raises midazolam exposure.", {("clarithromycin", "INHIBITOR", "CYP3A")}),
    ("Amiodarone prolongs the QT interval and inhibits CYP2C9, CYP2D6 and CYP3A.",
     {("amiodarone", "INHIBITOR", "CYP2C9"), ("amiodarone", "INHIBITOR", "CYP2D6"), ("amiodarone", "INHIBITOR", "CYP3A")}),
    ("CYP3A4 is inhibited by ketoconazole.", {("ketoconazole", "INHIBITOR", "CYP3A")}),
    ("Rifampin is a strong CYP3A inducer. It also induces P-gp.",
     {("rifampicin", "INDUCER", "CYP3A"), ("rifampicin", "INDUCER", "P-gp")}),
    ("Fluconazole does not inhibit CYP3A4.", set()),
    ("Spironolactone is a mineralocorticoid receptor antagonist.", {("spironolactone", "ANTAGONIST", "NR3C2")}),
    ("Eltrombopag is an agonist of the thrombopoietin receptor.", {("eltrombopag", "AGONIST", "MPL")}),
    ("Cediranib inhibits vascular endothelial growth factor receptor 2 and KIT.",
     {("cediranib", "INHIBITOR", "KDR"), ("cediranib", "INHIBITOR", "KIT")}),
    ("Sertraline blocks serotonin reuptake.", {("sertraline", "BLOCKER", "SLC6A4")}),
    ("Midazolam is sedating.", set()),
])
def test_triple_extractor_hand_checked(pack, sentence: str, expected: set) -> None:
    assert keys(pack, sentence) == expected


VERBS = {"INHIBITOR": "inhibits", "BLOCKER": "blocks", "ANTAGONIST": "antagonizes", "AGONIST": "is an agonist of",
         "INDUCER": "induces", "ACTIVATOR": "activates", "PARTIAL AGONIST": "is a partial agonist of",
         "SUBSTRATE": "is a substrate of", "INVERSE AGONIST": "is an inverse agonist of", "OPENER": "opens",
         "MODULATOR": "modulates"}


def test_triple_extractor_recovers_real_drugcentral_facts(pack) -> None:
    """Every gold fact written as a plain sentence: the extractor finds it (names with ';' split sentences)."""
    rows = [r for r in pack.gold_triples if r["action"] in VERBS]
    assert len(rows) > 2000
    hits = 0
    for r in rows:
        sentence = f"{r['drug'].capitalize()} {VERBS[r['action']]} the {r['target_name']}."
        hits += (r["drug"], r["action"], r["target"]) in keys(pack, sentence)
    assert hits / len(rows) >= 0.99


def test_facet_f1_hand_computed(pack) -> None:
    ref = "Clarithromycin is a strong CYP3A inhibitor."
    pred = "Clarithromycin induces CYP3A4 and P-gp."
    assert facet_sets(pack, ref) == {"target": set(), "action": {"INHIBITOR"}, "pathway": {"CYP3A"}}
    # facets the reference mentions: action F1 = 0, pathway F1 = 2*1/(2+1) -> macro 1/3
    sc = M.scorer("facet_f1")
    assert sc.score([pred, ref, ""], [ref, ref, ref]) == pytest.approx([1 / 3, 1.0, 0.0])
    assert sc.score(["anything"], ["No domain words here."]) == [None]


def test_key_term_coverage_hand_computed(pack) -> None:
    ref = "Clarithromycin is a strong CYP3A inhibitor and raises midazolam exposure."
    assert key_terms(pack, ref) == {("drug", "clarithromycin"), ("pathway", "CYP3A"), ("drug", "midazolam")}
    sc = M.scorer("key_terms")
    assert sc.score(["Clarithromycin blocks CYP3A4."], [ref]) == pytest.approx([2 / 3])
    assert sc.score(["Nothing relevant."], [ref]) == [0.0]
    assert sc.score(["x"], ["plain words"]) == [None]


def test_triple_exact_and_soft(pack) -> None:
    exact, soft = M.scorer("triple_exact"), M.scorer("triple_soft")
    ref = "Ketoconazole inhibits CYP3A4 and P-gp."
    # BLOCKER vs INHIBITOR: not exact, same "down" group -> soft; CYP3A5 is CYP3A (synonym)
    pred = "Ketoconazole blocks CYP3A5."
    assert exact.score([pred], [ref]) == [0.0]
    # soft: precision 1/1, recall 1/2 -> F1 2/3
    assert soft.score([pred], [ref]) == pytest.approx([2 / 3])
    # class match: azole antifungals (ketoconazole's class) inhibit CYP3A
    assert soft.score(["Azole antifungals inhibit CYP3A."], ["Ketoconazole inhibits CYP3A."]) == [1.0]
    assert exact.score(["Azole antifungals inhibit CYP3A."], ["Ketoconazole inhibits CYP3A."]) == [0.0]
    # exact: one of two right, one wrong -> P 1/2, R 1/2, F1 1/2
    assert exact.score(["Ketoconazole inhibits CYP3A and induces CYP2C9."], [ref]) == [0.5]
    assert exact.score(["no facts"], ["Midazolam is sedating."]) == [None]
    assert exact.score([""], [ref]) == [0.0]


def test_very_long_and_non_english_outputs(pack) -> None:
    long = "Clarithromycin inhibits CYP3A. " * 2000
    assert M.scorer("triple_exact").score([long], ["Clarithromycin inhibits CYP3A4."]) == [1.0]
    assert M.scorer("key_terms").score(["ยานี้ยับยั้ง CYP3A4"], ["Clarithromycin inhibits CYP3A4."]) == [0.5]


def test_a_second_domain_is_just_data(tmp_path: Path) -> None:
    d = tmp_path / "astro"
    d.mkdir()
    (d / "pack.toml").write_text(
        'name = "astro"\nversion = "1"\n[lexicons]\nbody = "bodies.tsv"\nverb = "verbs.tsv"\n'
        '[facets]\nbody = ["body"]\n[key_terms]\nkinds = ["body"]\n'
        '[triples]\nsubject = ["body"]\nrelation = "verb"\nobject = ["body"]\nnegations = ["not"]\n')
    (d / "bodies.tsv").write_text("id\tgroup\tform\tterms\nMoon\tsatellite\t\tmoon|luna\nEarth\tplanet\t\tearth\n"
                                  "Mars\tplanet\t\tmars\n")
    (d / "verbs.tsv").write_text("id\tgroup\tform\tterms\nORBITS\tmove\tverb\torbits|circles\n")
    astro = load(str(d))
    assert [t.key for t in extract_triples(astro, "Luna circles Earth; Mars does not orbits Earth.")] == [("Moon", "ORBITS", "Earth")]
    sc = M.scorer("triple_soft", domain=str(d))
    assert sc.score(["The moon orbits Mars."], ["The Moon orbits the Earth."]) == [1.0]  # same group "planet"
    assert M.scorer("triple_exact", domain=str(d)).score(["The moon orbits Mars."], ["The Moon orbits the Earth."]) == [0.0]


def test_broken_packs_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(PreceptorError) as e:
        load("nosuchpack")
    assert e.value.message == "no domain pack named 'nosuchpack' (and no pack.toml in that folder)"
    d = tmp_path / "bad"
    d.mkdir()
    (d / "pack.toml").write_text('[lexicons]\ndrug = "drugs.tsv"\n[facets]\ntarget = ["target"]\n')
    with pytest.raises(PreceptorError) as e:
        load(str(d))
    assert e.value.message == f"{d / 'pack.toml'}: kind 'target' is used but has no lexicon"
    (d / "pack.toml").write_text('[lexicons]\ndrug = "drugs.tsv"\n')
    (d / "drugs.tsv").write_text("id\tgroup\tform\tterms\nwarfarin\twarfarin\n")
    with pytest.raises(PreceptorError) as e:
        load(str(d))
    assert e.value.message == f"{d / 'drugs.tsv'}:2: expected 4 tab-separated fields, got 2"


@pytest.mark.skipif(not (SHARED_DATA / "drugcentral" / "drug_target.tsv").is_file(), reason="../shared/data not present")
def test_build_script_is_deterministic_and_the_shipped_pack_is_current(tmp_path: Path) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_domain_pack", PACK_DIR.parents[3] / "scripts" / "build_domain_pack.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.build(SHARED_DATA, tmp_path / "a")
    mod.build(SHARED_DATA, tmp_path / "b")
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == ["actions.tsv", "classes.tsv", "drug_classes.tsv", "drugs.tsv", "gold_triples.tsv", "pathways.tsv", "targets.tsv"]
    match, mismatch, errors = filecmp.cmpfiles(tmp_path / "a", tmp_path / "b", names, shallow=False)
    assert mismatch == [] and errors == []
    match, mismatch, errors = filecmp.cmpfiles(tmp_path / "a", PACK_DIR, names, shallow=False)
    assert mismatch == [] and errors == []
