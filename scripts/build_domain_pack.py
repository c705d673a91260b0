"""Build the pharmacology domain pack from the public data in ``../shared/data``.

Run once at build time (never at run time)::

    python scripts/build_domain_pack.py [--data ../shared/data] [--out preceptor/prompts/domains/pharma]

It reads DrugCentral (``drug_target.tsv``, ``pharm_class.tsv``; CC BY 4.0) and the FDA
table of CYP / transporter substrates, inhibitors and inducers (``fda_roles.csv``; a US
government work, taken from the drug-interaction-visualizer repository, MIT) and writes
the pack's lexicons and gold facts. The output is deterministic: the same inputs give
byte-identical files (everything sorted, no timestamps).

Pack file formats (read by :mod:`preceptor.prompts.domains`):

* lexicon TSV ``id<TAB>group<TAB>form<TAB>terms``: ``terms`` are ``|``-separated surface
  forms; a term starting with ``=`` matches case-sensitively (gene symbols such as ``KIT``);
  ``form`` is used by the action lexicon (``verb`` / ``participle`` / ``noun``).
* ``gold_triples.tsv``: ``drug<TAB>action<TAB>target<TAB>target_name<TAB>detail<TAB>source``.
* ``drug_classes.tsv``: ``drug<TAB>type<TAB>class``.

The hand-written tables below (action verbs, transporter synonyms, a few common target
aliases, a short stop-list of everyday words that are also DrugCentral ingredients) are
the curated part of the pack; everything else is derived from the data.
"""

from __future__ import annotations

import argparse
import csv
import re
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# --- curated tables -----------------------------------------------------------------------

# ACTION_TYPE -> (soft-match group, {form: [surface forms]})
ACTIONS: dict[str, tuple[str, dict[str, list[str]]]] = {
    "INHIBITOR": ("down", {"verb": ["inhibit", "inhibits", "inhibiting"], "participle": ["inhibited"],
                           "noun": ["inhibitor", "inhibitors", "inhibition"]}),
    "BLOCKER": ("down", {"verb": ["block", "blocks", "blocking"], "participle": ["blocked"],
                         "noun": ["blocker", "blockers", "blockade"]}),
    "ANTAGONIST": ("down", {"verb": ["antagonize", "antagonizes", "antagonizing", "antagonise", "antagonises",
                                     "antagonising"], "participle": ["antagonized", "antagonised"],
                            "noun": ["antagonist", "antagonists", "antagonism"]}),
    "INVERSE AGONIST": ("down", {"noun": ["inverse agonist", "inverse agonists"]}),
    "NEGATIVE ALLOSTERIC MODULATOR": ("down", {"noun": ["negative allosteric modulator", "negative allosteric modulators"]}),
    "ALLOSTERIC ANTAGONIST": ("down", {"noun": ["allosteric antagonist", "allosteric antagonists"]}),
    "AGONIST": ("up", {"noun": ["agonist", "agonists", "agonism"]}),
    "PARTIAL AGONIST": ("up", {"noun": ["partial agonist", "partial agonists"]}),
    "ACTIVATOR": ("up", {"verb": ["activate", "activates", "activating", "stimulate", "stimulates", "stimulating"],
                         "participle": ["activated", "stimulated"], "noun": ["activator", "activators", "activation"]}),
    "POSITIVE ALLOSTERIC MODULATOR": ("up", {"noun": ["positive allosteric modulator", "positive allosteric modulators"],
                                             "verb": ["potentiates", "potentiate"]}),
    "POSITIVE MODULATOR": ("up", {"noun": ["positive modulator", "positive modulators"]}),
    "OPENER": ("up", {"verb": ["opens"], "noun": ["opener", "openers"]}),
    "MODULATOR": ("modulate", {"verb": ["modulate", "modulates", "modulating"], "participle": ["modulated"],
                               "noun": ["modulator", "modulators"]}),
    "INDUCER": ("induce", {"verb": ["induce", "induces", "inducing"], "participle": ["induced"],
                           "noun": ["inducer", "inducers", "induction"]}),
    "SUBSTRATE": ("substrate", {"noun": ["substrate", "substrates"]}),
    "RELEASING AGENT": ("release", {"noun": ["releasing agent", "releasing agents"]}),
    "ANTIBODY BINDING": ("bind", {"verb": ["binds", "bind"], "participle": ["bound"]}),
}

FDA_ROLE_ACTION = {"inhibitor": "INHIBITOR", "inducer": "INDUCER", "substrate": "SUBSTRATE"}

# FDA pathway -> (group, synonyms). CYP3A is one group in the FDA table.
PATHWAYS: dict[str, tuple[str, list[str]]] = {
    "CYP1A2": ("CYP", ["CYP1A2", "CYP 1A2"]),
    "CYP2B6": ("CYP", ["CYP2B6", "CYP 2B6"]),
    "CYP2C8": ("CYP", ["CYP2C8", "CYP 2C8"]),
    "CYP2C9": ("CYP", ["CYP2C9", "CYP 2C9"]),
    "CYP2C19": ("CYP", ["CYP2C19", "CYP 2C19"]),
    "CYP2D6": ("CYP", ["CYP2D6", "CYP 2D6"]),
    "CYP3A": ("CYP", ["CYP3A", "CYP3A4", "CYP3A5", "CYP3A4/5", "CYP 3A4", "CYP 3A", "CYP3A4/CYP3A5"]),
    "P-gp": ("transporter", ["P-gp", "Pgp", "P-glycoprotein", "P glycoprotein", "MDR1", "ABCB1"]),
    "BCRP": ("transporter", ["BCRP", "ABCG2", "breast cancer resistance protein"]),
    "OATP1B1": ("transporter", ["OATP1B1", "SLCO1B1"]),
    "OATP1B3": ("transporter", ["OATP1B3", "SLCO1B3"]),
    "OAT1": ("transporter", ["OAT1", "SLC22A6"]),
    "OAT3": ("transporter", ["OAT3", "SLC22A8"]),
    "OCT2": ("transporter", ["OCT2", "SLC22A2"]),
    "MATE1": ("transporter", ["MATE1", "SLC47A1"]),
    "MATE2-K": ("transporter", ["MATE2-K", "MATE2K", "SLC47A2"]),
}

# Common names of frequent targets that DrugCentral does not list as synonyms.
TARGET_ALIASES: dict[str, list[str]] = {
    "PTGS1": ["COX-1", "COX1", "cyclooxygenase-1", "cyclooxygenase 1"],
    "PTGS2": ["COX-2", "COX2", "cyclooxygenase-2", "cyclooxygenase 2"],
    "HMGCR": ["HMG-CoA reductase", "HMG CoA reductase"],
    "VKORC1": ["vitamin K epoxide reductase", "VKOR"],
    "SLC6A4": ["serotonin transporter", "SERT", "serotonin reuptake"],
    "SLC6A2": ["norepinephrine transporter", "noradrenaline transporter", "NET"],
    "SLC6A3": ["dopamine transporter", "DAT"],
    "ATP4A": ["proton pump", "H+/K+ ATPase", "H+/K+-ATPase"],
    "NR3C2": ["mineralocorticoid receptor", "aldosterone receptor"],
    "NR3C1": ["glucocorticoid receptor"],
    "ACE": ["angiotensin-converting enzyme", "angiotensin converting enzyme"],
    "AGTR1": ["angiotensin II receptor", "AT1 receptor"],
    "F2": ["thrombin"],
    "F10": ["factor Xa"],
    "P2RY12": ["P2Y12 receptor", "P2Y12"],
    "KCNH2": ["hERG", "hERG channel"],
    "GABRA1": ["GABA-A receptor", "GABAA receptor"],
    "OPRM1": ["mu opioid receptor", "mu-opioid receptor"],
    "DRD2": ["dopamine D2 receptor", "D2 receptor"],
    "ADRB1": ["beta-1 adrenergic receptor", "beta1 receptor"],
    "ADRB2": ["beta-2 adrenergic receptor", "beta2 receptor"],
    "XDH": ["xanthine oxidase"],
    "DPP4": ["dipeptidyl peptidase-4", "DPP-4"],
    "SLC5A2": ["SGLT2", "sodium-glucose cotransporter 2"],
    "MTOR": ["mTOR"],
    "TUBB": ["beta-tubulin"],
}

# Everyday names of drugs that DrugCentral lists under another name.
DRUG_ALIASES: dict[str, list[str]] = {
    "acetylsalicylic acid": ["aspirin", "ASA"],
    "paracetamol": ["acetaminophen", "APAP"],
    "ciclosporin": ["cyclosporin"],
    "rifampicin": ["rifampin"],
    "salbutamol": ["albuterol"],
    "adrenaline": ["epinephrine"],
    "noradrenaline": ["norepinephrine"],
    "glyceryl trinitrate": ["nitroglycerin"],
    "colecalciferol": ["cholecalciferol"],
}

# DrugCentral lists these everyday substances as ingredients; as key terms they mislead
# (“lowers glucose”, “iron stores”), so the pack leaves them out.
COMMON_WORD_INGREDIENTS = {
    "alanine", "ammonia", "biotin", "calcium", "choline", "ethanol", "fructose", "glucose", "glycerol",
    "glycine", "iodine", "iron", "lactose", "lysine", "magnesium", "maltose", "oxygen", "phenol",
    "potassium", "sodium", "sucrose", "thiamine", "valine", "water", "xenon", "zinc", "alcohol",
    "nitrogen", "carbon dioxide", "sodium chloride", "potassium chloride",
}


# --- helpers --------------------------------------------------------------------------------

def norm_drug(name: str) -> str:
    return re.sub(r"\s+", " ", name.replace("-", " ").strip().lower())


def gene_group(gene: str) -> str:
    m = re.match(r"(CYP\d+[A-Z]|SLC\d+[A-Z]|ABC[A-Z]|[A-Z]+)", gene)
    return m.group(1) if m else gene


def gene_term(gene: str) -> str:
    """Gene symbols with a digit and 4+ characters are safe case-insensitively; others not."""
    return gene if (len(gene) >= 4 and re.search(r"\d", gene)) else "=" + gene


def plural(name: str) -> str:
    return name if name.endswith("s") else name + "s"


def read_tsv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def read_fda(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        lines = [ln for ln in fh if not ln.startswith("#")]
    return list(csv.DictReader(lines))


def write_lexicon(path: Path, rows: dict[tuple[str, str, str], set[str]]) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as fh:
        fh.write("id\tgroup\tform\tterms\n")
        for (ident, group, form), terms in sorted(rows.items()):
            clean = sorted({t.strip() for t in terms if t.strip() and "|" not in t and "\t" not in t})
            if clean:
                fh.write(f"{ident}\t{group}\t{form}\t{'|'.join(clean)}\n")


def write_rows(path: Path, header: list[str], rows: list[tuple[str, ...]]) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as fh:
        fh.write("\t".join(header) + "\n")
        for r in sorted(set(rows)):
            fh.write("\t".join(r) + "\n")


# --- build ----------------------------------------------------------------------------------

def build(data: Path, out: Path) -> dict[str, int]:
    out.mkdir(parents=True, exist_ok=True)
    targets_rows = read_tsv(data / "drugcentral" / "drug_target.tsv")
    class_rows = read_tsv(data / "drugcentral" / "pharm_class.tsv")
    fda_rows = read_fda(data / "fda-roles" / "fda_roles.csv")

    pathway_terms = {t.lower() for _, syns in PATHWAYS.values() for t in syns}
    pathway_id = {t.lower(): ident for ident, (_, syns) in PATHWAYS.items() for t in syns}

    # pathways: FDA CYP / transporter pathways (+ physiologic effects, DrugCentral "PE", below)
    pathways: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for ident, (group, syns) in PATHWAYS.items():
        pathways[(ident, group, "")].update(syns)

    # drugs
    drugs: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for r in targets_rows + class_rows:
        d = norm_drug(r["DRUG_NAME"])
        if d and d not in COMMON_WORD_INGREDIENTS:
            drugs[(d, "", "")].add(r["DRUG_NAME"].strip().lower())
    for r in fda_rows:
        d = norm_drug(r["drug_id"])
        if d in COMMON_WORD_INGREDIENTS:
            continue
        drugs[(d, "", "")].update({r["drug_id"].replace("-", " ").lower(), r["fda_name"].strip().lower()})

    for ident, aliases in DRUG_ALIASES.items():
        key = (norm_drug(ident), "", "")
        if key in drugs:
            drugs[key].update(a.lower() if len(a) > 3 else "=" + a for a in aliases)

    # targets: canonical id = first gene symbol (else the target name)
    # (a target name shared by several genes, e.g. across species, belongs to the smallest id)
    targets: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    target_of: dict[str, tuple[str, str]] = {}
    for r in targets_rows:
        genes = [g.strip() for g in r["GENE"].split("|") if g.strip()]
        name = r["TARGET_NAME"].strip()
        ident = genes[0] if genes else name
        if name not in target_of or ident < target_of[name][0]:
            target_of[name] = (ident, name)
    for r in targets_rows:
        genes = [g.strip() for g in r["GENE"].split("|") if g.strip()]
        name = r["TARGET_NAME"].strip()
        ident = genes[0] if genes else name
        terms = {*(gene_term(g) for g in genes)}
        if target_of[name][0] == ident:
            terms.add(name)
        for g in genes:
            m = re.fullmatch(r"HTR(\d[A-Z]?)", g)
            if m:
                terms.update({f"5-HT{m.group(1)}", f"5-HT{m.group(1)} receptor"})
        terms = {t for t in terms if t.lstrip("=").lower() not in pathway_terms}
        if ident.lower() in pathway_terms:  # an FDA enzyme / transporter: its names join that pathway
            pathways[(pathway_id[ident.lower()], PATHWAYS[pathway_id[ident.lower()]][0], "")].update(terms)
            continue
        if terms:
            targets[(ident, gene_group(ident) if genes else "", "")].update(terms)
    for gene, aliases in TARGET_ALIASES.items():
        key = next((k for k in targets if k[0] == gene), (gene, gene_group(gene), ""))
        targets[key].update(a if len(a) > 3 else "=" + a for a in aliases)

    for r in class_rows:  # physiologic effects
        if r["TYPE"] == "PE":
            effect = re.sub(r"^(Increased|Decreased)\s+", "", r["CLASS"].strip())
            if len(effect) > 3:
                pathways[(effect.lower(), "physiologic", "")].add(effect.lower())

    # classes (EPC = established pharmacologic class, MoA = mechanism of action)
    classes: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    drug_classes: list[tuple[str, str, str]] = []
    for r in class_rows:
        if r["TYPE"] in ("EPC", "MoA"):
            cls = r["CLASS"].strip()
            classes[(cls.lower(), r["TYPE"], "")].update({cls.lower(), plural(cls.lower())})
            d = norm_drug(r["DRUG_NAME"])
            if d not in COMMON_WORD_INGREDIENTS:
                drug_classes.append((d, r["TYPE"], cls.lower()))

    # actions
    actions: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for ident, (group, forms) in ACTIONS.items():
        for form, terms in forms.items():
            actions[(ident, group, form)].update(terms)

    # gold facts
    gold: list[tuple[str, ...]] = []
    for r in targets_rows:
        action = r["ACTION_TYPE"].strip()
        name = r["TARGET_NAME"].strip()
        if action in ACTIONS and name in target_of:
            ident, _ = target_of[name]
            if ident.lower() in pathway_terms:
                ident = pathway_id[ident.lower()]
            gold.append((norm_drug(r["DRUG_NAME"]), action, ident, name, r["TARGET_FAMILY"].strip(), "drugcentral"))
    for r in fda_rows:
        gold.append((norm_drug(r["drug_id"]), FDA_ROLE_ACTION[r["role"]], r["pathway"], r["pathway"],
                     r["level"], "fda"))

    write_lexicon(out / "drugs.tsv", drugs)
    write_lexicon(out / "targets.tsv", targets)
    write_lexicon(out / "pathways.tsv", pathways)
    write_lexicon(out / "classes.tsv", classes)
    write_lexicon(out / "actions.tsv", actions)
    write_rows(out / "gold_triples.tsv", ["drug", "action", "target", "target_name", "detail", "source"], gold)
    write_rows(out / "drug_classes.tsv", ["drug", "type", "class"], drug_classes)
    return {"drugs": len(drugs), "targets": len(targets), "pathways": len(pathways), "classes": len(classes),
            "actions": len(actions), "gold_triples": len(set(gold)), "drug_classes": len(set(drug_classes))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=ROOT / "preceptor" / "prompts" / "domains" / "pharma")
    args = ap.parse_args()
    counts = build(args.data, args.out)
    for k, v in counts.items():
        print(f"{k:>14}: {v}")


if __name__ == "__main__":
    main()
