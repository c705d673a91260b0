#!/usr/bin/env python3
"""Build the shipped demo dataset of preceptor from the shared, public source data.

Usage (from the repository root):

    python3 scripts/build_demo_data.py --shared ../shared

It reads ``<shared>/data`` once (DrugCentral, the FDA CYP/transporter table, the
drug-interaction-mcp pairs, openFDA labels, MedQuAD questions) and writes, under
``preceptor/demo/data``:

* ``demo.jsonl`` -- prompt/reference items for the four task styles
  (interaction, moa, normalize, card), with split, group and per-item provenance;
* ``embed_stage1.jsonl`` .. ``embed_stage3.jsonl`` -- the staged embedding curriculum;
* ``NOTICE`` and ``README.md``.

The product never reads the shared folder at run time. Standard library only; the output
is deterministic (sorted inputs, hash-based choices with a fixed seed), so running the
script twice gives byte-identical files.

Provenance: every item lists ``meta.sources``, each ``{"file": <path under data/>, "row": n}``.
For the TSV/CSV files ``row`` is the 1-based physical line number in the file (line 1 is
the header, or the first comment line of fda_roles.csv); for interactions.json it is the
1-based position of the entry in the JSON array; openFDA and MedQuAD sources name the
section code / question id instead.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import re
import sys
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from pathlib import Path

SEED = "preceptor-demo-v1"
REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "preceptor" / "demo" / "data"

F_TARGET = "drugcentral/drug_target.tsv"
F_CLASS = "drugcentral/pharm_class.tsv"
F_IND = "drugcentral/drug_indication.tsv"
F_FDA = "fda-roles/fda_roles.csv"
F_MCP = "drug-interaction-mcp/interactions.json"
F_VIAGRA = "openfda/64f8040f-938d-4236-8e22-c838c9b5f8da.xml"
F_HUMIRA = "openfda/humira.xml"
F_LIPITOR = "openfda/lipitor-orig.xml"
MEDQUAD_DIRS = ("medquad/11_MPlusDrugs_QA", "medquad/12_MPlusHerbsSupplements_QA")

# US (USAN) display name <-> DrugCentral (INN) name, for the few that differ.
US_TO_DC = {
    "acetaminophen": "paracetamol",
    "aspirin": "acetylsalicylic acid",
    "rifampin": "rifampicin",
    "cyclosporine": "ciclosporin",
    "glyburide": "glibenclamide",
    "meperidine": "pethidine",
    "albuterol": "salbutamol",
    "ethinyl estradiol": "ethinylestradiol",
    "enoxaparin": "enoxaparin sodium",
    "lithium": "lithium carbonate",
}
DC_TO_US = {v: k for k, v in US_TO_DC.items()}
DC_TO_US["lithium carbonate"] = "lithium carbonate"


def dc_name(us: str) -> str:
    return US_TO_DC.get(us, us)


def us_name(dc: str) -> str:
    return DC_TO_US.get(dc, dc)


def h(*parts: object) -> int:
    """Deterministic hash of parts with the fixed seed."""
    s = SEED + "|" + "|".join(str(p) for p in parts)
    return int(hashlib.sha256(s.encode("utf-8")).hexdigest(), 16)


def cap(s: str) -> str:
    return s[:1].upper() + s[1:] if s else s


def decap(s: str) -> str:
    """Lower-case the first letter unless the first word looks like an acronym."""
    if len(s) > 1 and s[0].isupper() and s[1].islower():
        return s[0].lower() + s[1:]
    return s


def soft_lower(text: str) -> str:
    """Lower-case Title-case words (and hyphen parts) but keep acronyms such as HMG-CoA."""

    def fix(part: str) -> str:
        # "Inhibitor" -> "inhibitor"; keep "HMG", "CoA", "Xa", "K", "mTOR"
        if len(part) > 2 and part[0].isupper() and part[1:].islower():
            return part.lower()
        return part

    out = []
    for word in text.split(" "):
        out.append("-".join(fix(p) for p in word.split("-")))
    return " ".join(out)


def article(phrase: str) -> str:
    w = phrase.split(" ")[0].split("-")[0]
    if len(w) > 1 and (w.isupper() or any(c.isupper() for c in w[1:])):  # acronym
        return "an" if w[0].upper() in "AEFHILMNORSX" else "a"
    if re.match(r"(?i)(uni|uri|use|eu|one)", w):
        return "a"
    return "an" if w[:1].lower() in "aeiou" else "a"


def join_and(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    if len(items) == 2:
        return f"{items[0]} and {items[1]}"
    return ", ".join(items[:-1]) + f", and {items[-1]}"


def src(file: str, row: int, **extra: object) -> dict:
    d: dict = {"file": file, "row": row}
    d.update(extra)
    return d


# --------------------------------------------------------------------------- loading


class Data:
    def __init__(self, shared: Path) -> None:
        self.root = shared / "data"
        if not self.root.is_dir():
            sys.exit(f"no data folder at {self.root}")
        self.targets: dict[str, list[dict]] = defaultdict(list)
        self.classes: dict[str, list[dict]] = defaultdict(list)
        self.inds: dict[str, list[dict]] = defaultdict(list)
        self._load_drugcentral()
        self.fda: dict[str, list[dict]] = defaultdict(list)
        self._load_fda()
        self.mcp = json.loads((self.root / F_MCP).read_text(encoding="utf-8"))
        self._load_medquad()
        self._load_labels()

    def _tsv(self, rel: str):
        with open(self.root / rel, newline="", encoding="utf-8") as f:
            reader = csv.reader(f, delimiter="\t")
            header = next(reader)
            for line, row in enumerate(reader, start=2):
                yield line, dict(zip(header, row, strict=False))

    def _load_drugcentral(self) -> None:
        for line, r in self._tsv(F_TARGET):
            self.targets[r["DRUG_NAME"]].append(
                {"row": line, "target": r["TARGET_NAME"], "gene": r["GENE"],
                 "family": r["TARGET_FAMILY"], "action": r["ACTION_TYPE"], "source": r["SOURCE"]})
        for line, r in self._tsv(F_CLASS):
            self.classes[r["DRUG_NAME"]].append(
                {"row": line, "type": r["TYPE"], "class": r["CLASS"], "source": r["SOURCE"]})
        for line, r in self._tsv(F_IND):
            self.inds[r["DRUG_NAME"]].append({"row": line, "ind": r["INDICATION_FDB"]})

    def _load_fda(self) -> None:
        lines = (self.root / F_FDA).read_text(encoding="utf-8").splitlines()
        header = None
        for line_no, text in enumerate(lines, start=1):
            if not text.strip() or text.startswith("#"):
                continue
            row = next(csv.reader([text]))
            if header is None:
                header = row
                continue
            r = dict(zip(header, row, strict=False))
            name = r["fda_name"].lower()
            self.fda[name].append({"row": line_no, "drug_id": r["drug_id"], "pathway": r["pathway"],
                                   "role": r["role"], "level": r["level"]})

    def _load_medquad(self) -> None:
        self.medquad: list[dict] = []
        for d in MEDQUAD_DIRS:
            for path in sorted((self.root / d).glob("*.xml")):
                root = ET.parse(path).getroot()
                doc = {"file": f"{d}/{path.name}", "focus": (root.findtext("Focus") or "").strip(),
                       "questions": []}
                for q in root.iter("Question"):
                    doc["questions"].append({"qid": q.get("qid"), "qtype": q.get("qtype"),
                                             "text": " ".join((q.text or "").split())})
                self.medquad.append(doc)

    def _label_section(self, rel: str, code: str) -> str:
        ns = "{urn:hl7-org:v3}"
        root = ET.parse(self.root / rel).getroot()
        for sec in root.iter(ns + "section"):
            c = sec.find(ns + "code")
            if c is not None and c.get("code") == code:
                return " ".join("".join(sec.itertext()).split())
        raise SystemExit(f"section {code} missing in {rel}")

    def _load_labels(self) -> None:
        self.labels: dict[tuple[str, str], str] = {}
        for rel in (F_VIAGRA, F_HUMIRA, F_LIPITOR):
            for code in ("43679-0", "34073-7"):
                self.labels[(rel, code)] = self._label_section(rel, code)

    def label_sentence(self, rel: str, code: str, start: str) -> str:
        """The label sentence starting with `start`, without bracketed cross-references."""
        text = self.labels[(rel, code)]
        i = text.find(start)
        if i < 0:
            raise SystemExit(f"label text not found in {rel}: {start!r}")
        m = re.search(r"\.(\s|$)", text[i:])
        sent = text[i: i + m.start() + 1] if m else text[i:]
        sent = re.sub(r"\s*\[see [^\]]*\]", "", sent)
        sent = " ".join(sent.split())
        if len(sent) > 400 or re.search(r"\(\d+\.\d+[,)]", sent):
            raise SystemExit(f"label sentence in {rel} looks wrong: {sent[:120]!r}")
        return sent


# --------------------------------------------------------------------------- FDA helpers

LEVEL_ORDER = {"strong": 0, "moderate": 1, "weak": 2, "sensitive": 0, "moderate-sensitive": 1,
               "unspecified": 3}
SEVERITY_ORDER = {"danger": 0, "warning": 1, "caution": 2}


def fda_phrase(r: dict) -> str:
    if r["level"] == "unspecified":
        return f"{r['pathway']} {r['role']}"
    return f"{r['level']} {r['pathway']} {r['role']}"


def norm_pathway(p: str) -> str:
    p = p.upper()
    return "CYP3A" if p.startswith("CYP3A") else p


# --------------------------------------------------------------------------- curation of
# drug-interaction-mcp rows. Every row (1-based) was read by hand. Rows not listed in KEEP
# are dropped for the reason in DROP.

DROP = {
    5: "supplement (vitamin E); effect stated only as 'may'",
    8: "supplement (fish oil); weak evidence, 'may modestly'",
    9: "food/supplement (cranberry); variable, weak evidence",
    11: "herbal (St. John's wort); not a drug-drug pair, the FDA table drops herbals",
    26: "food (grapefruit); not a drug-drug pair",
    27: "food (grapefruit); not a drug-drug pair",
    28: "food (grapefruit); not a drug-drug pair",
    40: "food (tyramine); not a drug-drug pair",
    46: "alcohol; not a drug-drug pair",
    55: "alcohol; not a drug-drug pair",
    63: "alcohol; not a drug-drug pair",
    64: "blanket 'withhold 48 hours' advice; current metformin labeling makes it eGFR-dependent",
    69: "alcohol; also claims alcohol inhibits opioid metabolism, which is not established",
    72: "alcohol; not a drug-drug pair",
    75: "duplicate of row 35 (SSRI + NSAID bleeding)",
    80: "herbal (St. John's wort)",
    81: "herbal (St. John's wort)",
    82: "herbal (St. John's wort)",
    83: "herbal (St. John's wort)",
    84: "herbal (ginkgo)",
    85: "herbal (ginseng); mechanism speculative",
    86: "herbal (kava)",
    94: "supplement (CoQ10); speculative",
    95: "supplement (turmeric); in-vitro evidence only",
    106: "duplicate of row 76 (NSAID + lithium); also calls aspirin a 'safer alternative'",
    108: "mechanism (mineralocorticoid receptor inhibition by tacrolimus) is not a fair summary",
    123: "duplicate of row 102 (corticosteroid + fluoroquinolone tendon rupture)",
    128: "smoking; not a drug-drug pair",
    129: "duplicate of row 73 (acetaminophen + warfarin)",
    131: "alcohol; not a drug-drug pair",
    135: "supplement (tryptophan / 5-HTP)",
    146: "smoking; not a drug-drug pair",
    149: "says 'contraindicated' citing the US dabigatran label; the US label gives a dose "
         "reduction in renal impairment (the contraindication is EU labeling)",
    152: "alcohol; not a drug-drug pair",
    160: "herbal (saw palmetto)",
    162: "food (soy)",
    163: "supplement (glucosamine); mechanism uncertain",
    164: "supplement (garlic)",
    165: "food (green tea)",
    166: "supplement (evening primrose oil)",
    167: "herbal (black cohosh)",
    170: "food (grapefruit)",
    171: "food (grapefruit)",
    172: "food (grapefruit)",
}

# row -> (drug shown first, drug shown second, hand-review note). Optional extras in KEEP_X.
KEEP: dict[int, tuple[str, str, str]] = {
    1: ("warfarin", "aspirin", "additive bleeding: anticoagulant plus COX-1 antiplatelet effect"),
    2: ("warfarin", "ibuprofen", "bleeding; NSAID antiplatelet effect and GI injury"),
    3: ("warfarin", "naproxen", "bleeding; NSAID antiplatelet effect and GI injury"),
    4: ("warfarin", "vitamin K", "vitamin K reverses warfarin; advice is about steady intake"),
    6: ("warfarin", "fluconazole", ""),
    7: ("warfarin", "metronidazole", ""),
    10: ("warfarin", "amiodarone", ""),
    12: ("apixaban", "ketoconazole", ""),
    13: ("rivaroxaban", "ketoconazole", ""),
    14: ("enoxaparin", "aspirin", "additive bleeding; combination sometimes intended"),
    15: ("clopidogrel", "omeprazole", ""),
    16: ("clopidogrel", "esomeprazole", ""),
    17: ("lisinopril", "potassium chloride", "hyperkalemia; ACE inhibitor lowers aldosterone"),
    18: ("lisinopril", "spironolactone", "hyperkalemia; additive potassium retention"),
    19: ("lisinopril", "ibuprofen", "NSAID blunts ACE inhibitor effect and kidney function"),
    20: ("digoxin", "amiodarone", "P-gp: FDA table lists amiodarone as P-gp inhibitor and digoxin "
                                  "as P-gp substrate; consistent"),
    21: ("digoxin", "verapamil", "P-gp plus additive AV-node slowing; FDA table lists verapamil "
                                 "as P-gp inhibitor"),
    22: ("digoxin", "quinidine", "P-gp: FDA table lists quinidine as P-gp inhibitor; consistent"),
    23: ("metoprolol", "verapamil", "additive negative chronotropy and AV block"),
    24: ("amlodipine", "simvastatin", ""),
    25: ("nitroglycerin", "sildenafil", "additive NO-cGMP vasodilation; contraindication matches "
                                        "the VIAGRA label; garbled timing sentence removed"),
    29: ("simvastatin", "clarithromycin", ""),
    30: ("simvastatin", "gemfibrozil", "OATP1B1/glucuronidation: FDA table lists gemfibrozil as "
                                       "OATP1B1 inhibitor; simvastatin as OATP1B1 substrate"),
    31: ("fluoxetine", "phenelzine", "serotonin syndrome; contraindicated, washout stated"),
    32: ("sertraline", "tramadol", "serotonin syndrome and seizure threshold"),
    33: ("escitalopram", "sumatriptan", "serotonin syndrome risk, commonly co-prescribed"),
    34: ("paroxetine", "tamoxifen", ""),
    35: ("sertraline", "ibuprofen", "GI bleeding; SSRI platelet serotonin depletion plus NSAID"),
    36: ("citalopram", "lithium", "serotonergic excess; lithium monitoring"),
    37: ("venlafaxine", "phenelzine", "serotonin syndrome; contraindicated"),
    38: ("duloxetine", "tramadol", "serotonin syndrome and seizures"),
    39: ("bupropion", "phenelzine", "hypertensive reaction; contraindicated"),
    41: ("clozapine", "carbamazepine", ""),
    42: ("clozapine", "fluvoxamine", ""),
    43: ("quetiapine", "ketoconazole", ""),
    44: ("haloperidol", "lithium", "encephalopathic syndrome; mechanism stated as not understood"),
    45: ("alprazolam", "oxycodone", "additive CNS/respiratory depression; boxed warning"),
    47: ("carbamazepine", "ethinyl estradiol", ""),
    48: ("valproic acid", "lamotrigine", "glucuronidation inhibition; dosing matches labeling"),
    49: ("valproic acid", "carbamazepine", "bidirectional; epoxide hydrolase inhibition"),
    50: ("phenytoin", "valproic acid", "protein-binding displacement; monitor free phenytoin"),
    51: ("ciprofloxacin", "aluminum hydroxide", "chelation by polyvalent cations"),
    52: ("ciprofloxacin", "theophylline", ""),
    53: ("ciprofloxacin", "tizanidine", ""),
    54: ("doxycycline", "antacids", "chelation by metal cations"),
    56: ("methotrexate", "trimethoprim", "additive antifolate toxicity"),
    57: ("trimethoprim", "lisinopril", "hyperkalemia; trimethoprim blocks ENaC like amiloride"),
    58: ("rifampin", "ethinyl estradiol", ""),
    59: ("rifampin", "warfarin", ""),
    60: ("linezolid", "fluoxetine", "linezolid is an MAO inhibitor; serotonin syndrome"),
    61: ("clarithromycin", "ergotamine", ""),
    62: ("azithromycin", "amiodarone", "additive QT prolongation"),
    65: ("insulin", "propranolol", "beta blockers mask hypoglycemia"),
    66: ("glimepiride", "fluconazole", ""),
    67: ("metformin", "topiramate", "metabolic acidosis; carbonic anhydrase inhibition"),
    68: ("empagliflozin", "furosemide", "additive volume depletion"),
    70: ("oxycodone", "gabapentin", "additive respiratory depression"),
    71: ("codeine", "fluoxetine", ""),
    73: ("acetaminophen", "warfarin", "INR rise with regular higher-dose acetaminophen"),
    74: ("ibuprofen", "aspirin", "competition at COX-1; timing matches FDA advice"),
    76: ("naproxen", "lithium", "reduced renal lithium clearance"),
    77: ("diclofenac", "methotrexate", "reduced methotrexate clearance"),
    78: ("fentanyl", "ritonavir", ""),
    79: ("meperidine", "tranylcypromine", "serotonin syndrome; hyperbolic sentence removed"),
    87: ("levothyroxine", "ferrous sulfate", "GI complexation; separate doses"),
    88: ("levothyroxine", "calcium carbonate", "GI complexation; separate doses"),
    89: ("ciprofloxacin", "calcium supplements", "chelation; separate doses"),
    90: ("ciprofloxacin", "ferrous sulfate", "chelation; separate doses"),
    91: ("alendronate", "magnesium oxide", "chelation; bisphosphonate dosing instructions"),
    92: ("hydrochlorothiazide", "vitamin D", "hypercalcemia with high-dose vitamin D"),
    93: ("melatonin", "fluvoxamine", ""),
    96: ("methotrexate", "amoxicillin", "reduced renal tubular secretion of methotrexate"),
    97: ("azathioprine", "allopurinol", "xanthine oxidase inhibition; dose cut matches labeling"),
    98: ("spironolactone", "potassium chloride", "hyperkalemia"),
    99: ("sildenafil", "doxazosin", "additive vasodilation; matches the VIAGRA label"),
    100: ("theophylline", "erythromycin", ""),
    101: ("prednisone", "naproxen", "additive GI ulceration"),
    102: ("prednisone", "levofloxacin", "tendon rupture; fluoroquinolone boxed warning"),
    103: ("spironolactone", "digoxin", "raised digoxin and assay interference"),
    104: ("lithium", "hydrochlorothiazide", "reduced lithium clearance"),
    105: ("lithium", "enalapril", "reduced lithium clearance"),
    107: ("cyclosporine", "naproxen", "additive nephrotoxicity"),
    109: ("doxycycline", "isotretinoin", "pseudotumor cerebri"),
    110: ("metoclopramide", "levodopa", "D2 antagonism opposes levodopa"),
    111: ("sertraline", "dextromethorphan", "serotonergic excess"),
    112: ("omeprazole", "ferrous sulfate", "reduced iron absorption with less gastric acid"),
    113: ("pantoprazole", "methotrexate", "raised methotrexate, mainly high-dose"),
    114: ("cimetidine", "theophylline", ""),
    115: ("amiodarone", "simvastatin", ""),
    116: ("amiodarone", "phenytoin", ""),
    117: ("diltiazem", "simvastatin", ""),
    118: ("phenytoin", "ethinyl estradiol", ""),
    119: ("phenobarbital", "ethinyl estradiol", ""),
    120: ("ritonavir", "lovastatin", ""),
    121: ("ritonavir", "midazolam", ""),
    122: ("ketoconazole", "triazolam", ""),
    124: ("colchicine", "clarithromycin", ""),
    125: ("colchicine", "cyclosporine", "P-gp: FDA table lists cyclosporine as P-gp inhibitor"),
    126: ("trazodone", "ketoconazole", ""),
    127: ("quetiapine", "carbamazepine", ""),
    130: ("donepezil", "oxybutynin", "pharmacological antagonism at acetylcholine"),
    132: ("tamoxifen", "warfarin", "raised anticoagulant effect"),
    133: ("alendronate", "ibuprofen", "additive GI mucosal injury"),
    134: ("clonidine", "propranolol", "rebound hypertension on clonidine withdrawal"),
    136: ("pimozide", "clarithromycin", ""),
    137: ("ergotamine", "ritonavir", ""),
    138: ("sildenafil", "ritonavir", ""),
    139: ("sulfasalazine", "folic acid", "reduced folate absorption"),
    140: ("isoniazid", "acetaminophen", ""),
    141: ("isoniazid", "phenytoin", ""),
    142: ("probenecid", "methotrexate", "reduced renal tubular secretion of methotrexate"),
    143: ("chloramphenicol", "warfarin", ""),
    144: ("voriconazole", "sirolimus", ""),
    145: ("metformin", "cimetidine", "OCT2: FDA table lists cimetidine as OCT2/MATE inhibitor "
                                    "and metformin as OCT2/MATE substrate; consistent"),
    147: ("olanzapine", "fluvoxamine", ""),
    148: ("phenytoin", "fluconazole", ""),
    150: ("mycophenolate", "magnesium hydroxide", "reduced absorption with antacids"),
    151: ("potassium chloride", "ibuprofen", "hyperkalemia in renal impairment"),
    153: ("duloxetine", "ciprofloxacin", ""),
    154: ("rasagiline", "meperidine", "MAO-B inhibitor with serotonergic opioid"),
    155: ("methylene blue", "escitalopram", "methylene blue inhibits MAO-A"),
    156: ("dronedarone", "digoxin", "P-gp: FDA table lists dronedarone as P-gp inhibitor"),
    157: ("ivabradine", "verapamil", ""),
    158: ("ranolazine", "ketoconazole", ""),
    159: ("ticagrelor", "aspirin", "aspirin dose above 100 mg/day reduces ticagrelor effect"),
    161: ("levothyroxine", "omeprazole", "higher gastric pH lowers absorption"),
    168: ("dapsone", "trimethoprim", "methemoglobinemia"),
    169: ("carbamazepine", "erythromycin", ""),
    173: ("eplerenone", "itraconazole", ""),
    174: ("apixaban", "rifampin", ""),
    175: ("ticlopidine", "theophylline", ""),
    176: ("atazanavir", "omeprazole", "pH-dependent absorption"),
}

# Kind of the non-CYP rows (default: pharmacodynamic), set by hand.
KIND = {
    2: "pd+pk", 3: "pd+pk", 20: "pk", 21: "pd+pk", 22: "pk", 30: "pk", 48: "pk", 49: "pk",
    50: "pk", 51: "pk", 54: "pk", 76: "pk", 77: "pk", 87: "pk", 88: "pk", 89: "pk", 90: "pk",
    91: "pk", 96: "pk", 97: "pk", 103: "pk", 104: "pk", 105: "pk", 112: "pk", 113: "pk",
    125: "pk", 132: "pd+pk", 139: "pk", 142: "pk", 145: "pk", 150: "pk", 156: "pk",
    161: "pk", 168: "pd+pk", 176: "pk",
}
KIND_LABEL = {"pd": "pharmacodynamic", "pk": "non-CYP pharmacokinetic",
              "pd+pk": "pharmacodynamic and non-CYP pharmacokinetic"}
# CYP pathways to compare when the source names none ("CYP450").
PATHS = {114: {"CYP1A2"}}

# Strength words the source used for a perpetrator (read by hand), row -> {drug: word}.
SAID = {
    6: {"fluconazole": "potent"},
    12: {"ketoconazole": "strong"},
    13: {"ketoconazole": "strong"},
    29: {"clarithromycin": "strong"},
    34: {"paroxetine": "potent"},
    42: {"fluvoxamine": "potent"},
    43: {"ketoconazole": "strong"},
    47: {"carbamazepine": "strongly"},
    53: {"ciprofloxacin": "potently"},
    58: {"rifampin": "one of the most potent"},
    59: {"rifampin": "potently"},
    71: {"fluoxetine": "potent"},
    78: {"ritonavir": "potent"},
    93: {"fluvoxamine": "potently"},
    120: {"ritonavir": "one of the most potent"},
    137: {"ritonavir": "potently"},
    158: {"ketoconazole": "strong"},
    173: {"itraconazole": "strong"},
}
WORD_LEVEL = {"potent": "strong", "potently": "strong", "strong": "strong", "strongly": "strong",
              "one of the most potent": "strong"}

# Mechanism text replaced where the source's strength word disagrees with the FDA grade
# (or where it speaks of a whole class the FDA grades differently).
MECH_OVERRIDE = {
    6: "Fluconazole inhibits CYP2C9, the primary enzyme responsible for S-warfarin metabolism, "
       "which increases warfarin plasma levels.",
    29: "Clarithromycin inhibits CYP3A4, blocking the primary metabolic pathway for simvastatin.",
    53: "Ciprofloxacin inhibits CYP1A2, increasing tizanidine AUC by up to 10-fold.",
    59: "Rifampin induces CYP2C9, CYP3A4, and CYP1A2, all involved in warfarin metabolism. "
        "Warfarin clearance may increase 3-fold.",
}
# Extra hand notes for CYP rows (appended to the automatic FDA comparison).
CYP_NOTE = {
    7: "FDA table does not grade metronidazole; mechanism kept as stated (no strength given)",
    10: "FDA table does not grade amiodarone for CYP1A2",
    15: "FDA table does not list clopidogrel's CYP2C19 activation; separating doses does not "
        "reduce this interaction per FDA, so that advice was removed",
    16: "FDA table does not grade esomeprazole",
    24: "amlodipine is not in the FDA table subset; no strength stated by source",
    29: "source called all macrolides strong; FDA grades erythromycin moderate, clarithromycin "
        "strong -> reference names clarithromycin and uses FDA grade",
    41: "FDA table does not grade carbamazepine for CYP1A2",
    61: "FDA grades erythromycin moderate CYP3A inhibitor",
    100: "FDA table does not grade erythromycin for CYP1A2",
    114: "source said 'non-selective CYP450 inhibitor' (no strength); advice to use ranitidine "
         "removed (withdrawn from the US market)",
    140: "CYP2E1 is not in the FDA table",
    141: "FDA table does not grade isoniazid",
    143: "FDA table does not grade chloramphenicol",
    147: "olanzapine is not in the FDA table subset",
    175: "FDA grades ticlopidine only for CYP2C19/CYP2B6, not CYP1A2",
}
# Sentences removed from the source text (wrong, outdated or hyperbolic).
CUT = {
    15: ["Separate dosing by 12 hours if omeprazole must be used."],
    25: ["Do not use within 24 hours of sildenafil or 48 hours of tadalafil after nitrate use."],
    79: ["This is one of the most dangerous drug combinations known."],
    114: ["Other H2 blockers (ranitidine, famotidine) have less effect.",
          "Use famotidine or ranitidine instead."],
}
# Label sentences added (openFDA, Viagra label, drug interactions section 34073-7).
LABEL_ADD = {
    25: "Administration of VIAGRA with nitric oxide donors such as organic nitrates",
    99: "When VIAGRA is co-administered with an alpha-blocker",
    138: "Co-administration of ritonavir, a strong CYP3A4 inhibitor, greatly increased",
}

CLASS_WORDS = {
    "ssri": "an SSRI", "snri": "an SNRI", "maoi": "an MAOI", "nsaid": "an NSAID",
    "ace inhibitor": "an ACE inhibitor", "beta blocker": "a beta blocker",
    "calcium channel blocker": "a calcium channel blocker", "statin": "a statin",
    "benzodiazepine": "a benzodiazepine", "opioid": "an opioid",
    "fluoroquinolone": "a fluoroquinolone", "sulfonylurea": "a sulfonylurea",
    "sglt2 inhibitor": "an SGLT2 inhibitor", "loop diuretic": "a loop diuretic",
    "thiazide": "a thiazide", "corticosteroid": "a corticosteroid",
    "bisphosphonate": "a bisphosphonate", "proton pump inhibitor": "a proton pump inhibitor",
    "anticholinergic": "an anticholinergic", "alpha blocker": "an alpha blocker",
    "triptans": "a triptan", "nitrate": "a nitrate",
    "potassium-sparing diuretic": "a potassium-sparing diuretic",
    "oral contraceptive": "an oral contraceptive component", "penicillin": "a penicillin",
}
NOT_ANNOTATED = {"antacids", "calcium supplements", "vitamin K", "vitamin D"}


def split_sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+(?=[A-Z0-9])", text.strip()) if s]


def mcp_side_class(names: list[str], shown: str) -> str:
    if shown in NOT_ANNOTATED:
        return ""
    for n in names:
        if n in CLASS_WORDS and n != shown:
            return CLASS_WORDS[n]
    return ""


NON_TYPE_CLASS = re.compile(r"Cytochrome P450|P-Glycoprotein|Transporter|UGT1A1|Organic Anion")

# DrugCentral 2016 indication rows that are plainly wrong for the drug (read by hand for the
# drugs that get cards); also kept out of the stage-3 queries.
INDICATION_BLOCK = {
    ("rifampicin", "tonic clonic seizure"), ("rifampicin", "epilepsy"),
    ("rifampicin", "complex-partial epilepsy"), ("rifampicin", "simple-partial epilepsy"),
    ("rifampicin", "lennox-gastaut epilepsy"), ("rifampicin", "bipolar disorder in remission"),
    ("digoxin", "digitalis toxicity"),
    # surfaced while reviewing the stage-3 queries (name mix-ups / combination products)
    ("oxycodone", "tinea cruris"), ("atropine", "pituitary dwarfism"),
    ("nicotine", "niacin deficiency"), ("nicotine", "pellagra"),
    ("phentermine", "hypotension secondary to spinal anesthesia"),
    ("thiamine", "pernicious anemia"), ("betaine", "e. coli pyelonephritis"),
    ("apixaban", "myocardial reinfarction prevention"),
    ("fluoxymesterone", "myotonia congenita - autosomal dominant form"),
    ("benzyl alcohol", "suppression of the gag reflex"),
    ("norfloxacin", "gardnerella septic abortion"),
    ("lansoprazole", "rheumatoid arthritis"),
    ("amlodipine", "primary dysbetalipoproteinemia"),
    ("terbutaline", "dry eye"), ("misoprostol", "prevention of cmv disease after organ transplant"),
    ("betaine", "klebsiella complicated uti"), ("desonide", "atopic rhinitis"),
    ("dexamethasone", "perforation of cornea"), ("mesna", "testicular germ cell tumor"),
    ("pyridoxine", "inactive tuberculosis"), ("lovastatin", "high density lipoid deficiency"),
}

# --------------------------------------------------------------------------- builders


class Builder:
    def __init__(self, data: Data) -> None:
        self.d = data
        self.items: list[dict] = []
        self.report: list[str] = []
        self.mcp_kept: dict[int, dict] = {}
        self._medquad_focus()
        self.pop = self._popularity()

    # ---- shared helpers
    def fda_rows(self, us: str) -> list[dict]:
        return self.d.fda.get(us, [])

    def _medquad_focus(self) -> None:
        route = (r"\s+(injection|oral inhalation|nasal spray|oral|topical|ophthalmic|"
                 r"transdermal patch|transdermal|rectal|vaginal|otic|inhalation|sublingual|"
                 r"buccal|implant|intrauterine|nasal|extended-release|delayed-release)\b.*$")
        self.mq_single: dict[str, list[dict]] = defaultdict(list)  # dc name -> docs
        self.partners: dict[str, set[str]] = defaultdict(set)  # combination partners
        for doc in self.d.medquad:
            if not doc["file"].startswith(MEDQUAD_DIRS[0]):
                continue
            focus = doc["focus"].lower()
            parts = [p.strip() for p in re.split(r",\s*(?:and\s+)?|\s+and\s+", focus) if p.strip()]
            parts = [re.sub(route, "", p) for p in parts]
            names = [dc_name(p) for p in parts]
            if len(names) == 1:
                self.mq_single[names[0]].append(doc)
            else:
                for a in names:
                    for b in names:
                        if a != b:
                            self.partners[a].add(b)

    def _popularity(self) -> Counter:
        pop: Counter = Counter()
        mcp_names = set()
        for r in self.d.mcp:
            mcp_names |= set(r["drug_a"]) | set(r["drug_b"])
        names = set(self.d.targets) | set(self.d.classes) | set(self.d.inds)
        for dc in names:
            us = us_name(dc)
            pop[dc] = (bool(self.d.targets.get(dc)) + bool(self.epc(dc)) + bool(self.d.inds.get(dc))
                       + 2 * bool(self.fda_rows(us)) + (us in mcp_names) + bool(self.mq_single.get(dc)))
        return pop

    def epc(self, dc: str) -> list[dict]:
        """EPC classes, the drug-type ones first (CYP/transporter-inhibitor EPCs last)."""
        rows = [c for c in self.d.classes.get(dc, []) if c["type"] == "EPC"]
        return sorted(rows, key=lambda c: (bool(NON_TYPE_CLASS.search(c["class"])), c["row"]))

    def moa_targets(self, dc: str) -> list[dict]:
        rows = [t for t in self.d.targets.get(dc, []) if t["action"] not in ("SUBSTRATE", "OTHER")
                and not t["target"].lower().startswith("cytochrome p450")]
        prio = {"DRUG LABEL": 0, "IUPHAR": 1, "KEGG DRUG": 2, "SCIENTIFIC LITERATURE": 3, "CHEMBL": 4}
        return sorted(rows, key=lambda t: (prio.get(t["source"], 5), t["row"]))

    def clean_inds(self, dc: str) -> list[dict]:
        """Indications of dc without those that only come from a combination partner.

        DrugCentral attaches the indications of fixed-dose combinations to each ingredient
        (atorvastatin gets 'Hypertension' from amlodipine/atorvastatin). An indication is
        dropped when a MedQuAD combination partner of the drug also has it and no other
        drug of the same EPC class has it (only judged when the class has other drugs with
        indications). Rows in INDICATION_BLOCK are dropped too.
        """
        rows = self.d.inds.get(dc, [])
        partner_inds = {i["ind"].lower() for p in self.partners.get(dc, ()) for i in self.d.inds.get(p, [])}
        mates = self.classmates(dc)
        mate_inds = {i["ind"].lower() for m in mates for i in self.d.inds.get(m, [])}
        has_mates = any(self.d.inds.get(m) for m in mates)
        out, seen = [], set()
        for r in rows:
            k = r["ind"].lower()
            if not k or k in seen or (dc, k) in INDICATION_BLOCK:
                continue
            if has_mates and k in partner_inds and k not in mate_inds:
                continue
            seen.add(k)
            out.append(r)
        return out

    def classmates(self, dc: str) -> set[str]:
        classes = {c["class"] for c in self.epc(dc)}
        return {n for n, cs in self._epc_index().items() if n != dc and classes & cs}

    def _epc_index(self) -> dict[str, set[str]]:
        if not hasattr(self, "_epc_idx"):
            idx: dict[str, set[str]] = {}
            for n, cs in self.d.classes.items():
                s = {c["class"] for c in cs if c["type"] == "EPC"}
                if s:
                    idx[n] = s
            self._epc_idx = idx
        return self._epc_idx

    def main_inds(self, dc: str, k: int = 3) -> list[dict]:
        """Up to k indications, class-typical ones first (shared with EPC class-mates)."""
        mates = self.classmates(dc)
        share = Counter()
        for m in mates:
            for i in {x["ind"].lower() for x in self.d.inds.get(m, [])}:
                share[i] += 1
        rows = self.clean_inds(dc)
        rows = sorted(rows, key=lambda r: (-share[r["ind"].lower()], r["row"]))
        return rows[:k]

    def add(self, task: str, group: str, prompt: str, reference: str, sources: list[dict],
            check: str, **meta: object) -> None:
        self.items.append({"task": task, "group": group, "prompt": prompt, "reference": reference,
                           "sources": sources, "check": check, "meta": meta})

    # ---- interaction: drug-interaction-mcp rows
    def build_mcp(self) -> None:
        rows = self.d.mcp
        for idx in range(1, len(rows) + 1):
            if idx not in KEEP and idx not in DROP:
                raise SystemExit(f"interactions.json row {idx} has no curation decision")
        for idx, r in enumerate(rows, start=1):
            if idx in DROP:
                self.report.append(f"interactions.json row {idx} dropped: {DROP[idx]}")
                continue
            a, b, note = KEEP[idx]
            side_a = [n.lower() for n in r["drug_a"]]
            side_b = [n.lower() for n in r["drug_b"]]
            sides = {}
            for shown in (a, b):
                key = {"antacids": "antacid", "calcium supplements": "calcium supplement"}.get(
                    shown, shown.lower())
                if key in side_a:
                    sides[shown] = side_a
                elif key in side_b:
                    sides[shown] = side_b
                else:
                    raise SystemExit(f"row {idx}: {shown} not among {side_a + side_b}")
            if sides[a] is sides[b]:
                raise SystemExit(f"row {idx}: {a} and {b} are on the same side")
            cls_a, cls_b = mcp_side_class(sides[a], a), mcp_side_class(sides[b], b)
            label_a = f"{a} ({cls_a})" if cls_a else a
            label_b = f"{b} ({cls_b})" if cls_b else b
            text_all = " ".join([r["description"], r["mechanism"], r["recommendation"]])
            mech = MECH_OVERRIDE.get(idx, r["mechanism"])
            parts = []
            for field in (r["description"], mech, r["recommendation"]):
                sents = [s for s in split_sentences(field) if s not in CUT.get(idx, [])]
                parts.append(" ".join(sents))
            for cut in CUT.get(idx, []):
                if cut not in text_all:
                    raise SystemExit(f"row {idx}: cut sentence not found: {cut}")
            desc, mech_t, rec = parts
            sources = [src(F_MCP, idx)]
            fda_sent = ""
            if "CYP" in text_all:
                check, fda_sent, fda_src = self._cyp_check(idx, a, b, text_all)
                sources += fda_src
            else:
                check = f"{KIND_LABEL[KIND.get(idx, 'pd')]}; reviewed by hand: {note}"
                named = {"P-gp": "P-glycoprotein", "OATP1B1": "OATP1B1", "OCT2": "OCT2"}
                for shown in (a, b):
                    for fr in self.fda_rows(shown):
                        if fr["pathway"] in named and named[fr["pathway"]] in text_all:
                            sources.append(src(F_FDA, fr["row"]))
            ref = f"{cap(label_a)} with {label_b}: {decap(desc)} {mech_t}"
            if fda_sent:
                ref += " " + fda_sent
            if idx in LABEL_ADD:
                sent = self.d.label_sentence(F_VIAGRA, "34073-7", LABEL_ADD[idx])
                ref += f" The VIAGRA label states: \"{sent}\""
                sources.append({"file": F_VIAGRA, "section": "34073-7"})
            if rec:
                ref += " " + rec
            ref += f" (Source severity: {r['severity']}.)"
            ref = " ".join(ref.split())
            group = "+".join(sorted([a.lower(), b.lower()]))
            first, second = (a, b) if h("order", group) % 2 == 0 else (b, a)
            self.add("interaction", group, f"Explain the interaction between {first} and {second}.",
                     ref, sources, check, kind="mcp", severity=r["severity"],
                     cited_by_source=r["source"])
            self.mcp_kept[idx] = {"a": a, "b": b, "severity": r["severity"],
                                  "description": r["description"], "row": idx}

    def _cyp_check(self, idx: int, a: str, b: str, text: str) -> tuple[str, str, list[dict]]:
        """Compare a CYP row with the FDA grading of the two drugs shown.

        The perpetrator is the drug graded (on the CYP pathways the row names) in the role
        the row describes (inhibits / induces); the victim's substrate grade is reported
        when it has one. A drug is never reported as substrate where it is the perpetrator.
        """
        paths = {norm_pathway(p) for p in re.findall(r"CYP\d[A-Z]\d*", text)} or PATHS.get(idx, set())
        roles = {role for role, pat in (("inhibitor", r"inhibit"), ("inducer", r"induc"))
                 if re.search(pat, text, re.I)}
        said = SAID.get(idx, {})
        graded = {d: [r for r in self.fda_rows(d) if r["pathway"] in paths and r["level"] != "unspecified"]
                  for d in (a, b)}
        perp = {d: [r for r in graded[d] if r["role"] in roles and (not said or d in said)]
                for d in (a, b)}
        chosen: list[tuple[str, dict]] = []
        for d in (a, b):
            chosen += [(d, r) for r in perp[d]]
        for d in (a, b):
            if perp[d]:
                continue  # the perpetrator's own substrate role is not the point here
            chosen += [(d, r) for r in graded[d] if r["role"] == "substrate"]
        facts, srcs = [], []
        per_drug: dict[str, list[str]] = {}
        for drug, r in chosen:
            srcs.append(src(F_FDA, r["row"]))
            per_drug.setdefault(drug, []).append(f"{article(r['level'])} {fda_phrase(r)}")
            fact = f"FDA grades {drug} {fda_phrase(r)}"
            if r["role"] != "substrate":
                w = said.get(drug)
                if w is None:
                    fact += "; source gave no strength"
                elif WORD_LEVEL[w] == r["level"]:
                    fact += f"; source said {w}, consistent"
                else:
                    fact += f"; source said {w} -> reference uses FDA grade"
            facts.append(fact)
        if not facts:
            facts.append(f"neither {a} nor {b} is graded for {'/'.join(sorted(paths))} in the FDA table")
        if idx in CYP_NOTE:
            facts.append(CYP_NOTE[idx])
        sent_parts = [f"{drug} is {join_and(ps)}" for drug, ps in per_drug.items()]
        sentence = ("FDA grading: " + "; ".join(sent_parts) + ".") if sent_parts else ""
        return "; ".join(facts), sentence, srcs

    # ---- interaction: FDA table joins
    def build_fda_pairs(self, n: int) -> None:
        perps, subs = [], []
        for name, rows in sorted(self.d.fda.items()):
            for r in rows:
                if not r["pathway"].startswith("CYP"):
                    continue
                if r["role"] in ("inhibitor", "inducer") and r["level"] in ("strong", "moderate"):
                    perps.append((name, r))
                if r["role"] == "substrate" and r["level"] in ("sensitive", "moderate-sensitive"):
                    subs.append((name, r))
        # Exclusions (reviewed by hand):
        excluded_subs = {
            "r-venlafaxine": "the FDA lists R-venlafaxine, not racemic venlafaxine",
            "tramadol": "prodrug (O-desmethyltramadol): more parent drug does not simply mean more effect",
        }
        boosted = {"darunavir", "saquinavir", "tipranavir", "indinavir"}
        boosters = {"ritonavir", "cobicistat"}
        taken = {it["group"] for it in self.items if it["task"] == "interaction"}
        cands = []
        for pn, pr in perps:
            for sn, sr in subs:
                if pn == sn or sr["pathway"] != pr["pathway"] or sn in excluded_subs:
                    continue
                if pn in boosters and sn in boosted:
                    continue  # intended pharmacokinetic boosting, not an adverse interaction
                if pr["level"] == "moderate" and sr["level"] == "moderate-sensitive":
                    continue  # FDA defines no expected effect size for this combination
                group = "+".join(sorted([pn, sn]))
                if group in taken:
                    continue
                score = self.pop[dc_name(pn)] + self.pop[dc_name(sn)]
                cands.append((-score, h("fda", group) % 1000, group, pn, pr, sn, sr))
        cands.sort(key=lambda c: c[:3])
        used_p, used_s, per_path, chosen = Counter(), Counter(), Counter(), []
        path_cap = {"CYP3A": n * 2 // 5}
        for c in cands:
            _, _, group, pn, pr, sn, sr = c
            if group in taken or used_p[pn] >= 3 or used_s[sn] >= 2:
                continue
            if per_path[pr["pathway"]] >= path_cap.get(pr["pathway"], n // 5):
                continue
            taken.add(group)
            used_p[pn] += 1
            used_s[sn] += 1
            per_path[pr["pathway"]] += 1
            chosen.append(c)
            if len(chosen) >= n:
                break
        for k, v in excluded_subs.items():
            self.report.append(f"fda_roles.csv: {k} not used as a substrate in generated pairs: {v}")
        self.report.append("fda_roles.csv: ritonavir/cobicistat x HIV protease inhibitor pairs skipped "
                           "(intended boosting)")
        for _, _, group, pn, pr, sn, sr in chosen:
            self._fda_item(group, pn, pr, sn, sr)

    def _fda_item(self, group: str, pn: str, pr: dict, sn: str, sr: dict) -> None:
        path = pr["pathway"]
        inhib = pr["role"] == "inhibitor"
        if inhib:
            if pr["level"] == "strong" and sr["level"] == "sensitive":
                why = (f"by the FDA definitions, a strong inhibitor raises the AUC of sensitive "
                       f"{path} substrates 5-fold or more")
            elif pr["level"] == "strong":
                why = (f"by the FDA definitions, the AUC of a moderate sensitive {path} substrate "
                       f"rises 2- to less than 5-fold with a strong inhibitor")
            else:
                why = (f"by the FDA definitions, a moderate inhibitor raises the AUC of sensitive "
                       f"{path} substrates 2- to less than 5-fold")
            effect = (f"Taking them together raises {sn} exposure because less {sn} is cleared "
                      f"through {path} ({why}), so {sn} concentrations and dose-related adverse "
                      f"effects can increase; check the {sn} label for a dose reduction or "
                      f"avoidance, and monitor the patient.")
        else:
            if sr["level"] == "sensitive":
                pct = "80% or more" if pr["level"] == "strong" else "50% to less than 80%"
                why = (f" (by the FDA definitions, a {pr['level']} inducer lowers the AUC of "
                       f"sensitive {path} substrates by {pct})")
            else:
                why = ""
            effect = (f"Taking them together lowers {sn} exposure because {pn} speeds up its "
                      f"{path} metabolism{why}, so {sn} may lose efficacy; check the {sn} label "
                      f"for a dose adjustment or avoidance, and monitor the response.")
        ref = (f"{cap(pn)} is {article(pr['level'])} {pr['level']} {path} {pr['role']}; {sn} is "
               f"{article(sr['level'])} {sr['level']} {path} substrate. {effect}")
        first, second = (pn, sn) if h("order", group) % 2 == 0 else (sn, pn)
        check = (f"FDA table: {pn} {pr['level']} {path} {pr['role']} x {sn} {sr['level']} {path} "
                 f"substrate; effect size from the FDA classification definitions")
        self.add("interaction", group, f"Explain the interaction between {first} and {second}.", ref,
                 [src(F_FDA, pr["row"]), src(F_FDA, sr["row"])], check, kind="fda-table",
                 pathway=path, direction="increase" if inhib else "decrease")

    # ---- drug pool for moa / normalize / card
    def drug_pool(self) -> list[str]:
        pool = []
        for dc in sorted(self.d.targets):
            if self.moa_targets(dc) and self.epc(dc) and self.clean_inds(dc):
                pool.append(dc)
        pool.sort(key=lambda dc: (-self.pop[dc], h("pool", dc) % 10007, dc))
        return pool

    VERBS = {
        "INHIBITOR": "inhibits", "AGONIST": "is an agonist of", "ANTAGONIST": "antagonizes",
        "BLOCKER": "blocks", "POSITIVE ALLOSTERIC MODULATOR": "is a positive allosteric modulator of",
        "ANTIBODY BINDING": "is an antibody that binds", "OPENER": "opens", "MODULATOR": "modulates",
        "POSITIVE MODULATOR": "positively modulates", "ACTIVATOR": "activates",
        "PARTIAL AGONIST": "is a partial agonist of", "INVERSE AGONIST": "is an inverse agonist of",
        "NEGATIVE ALLOSTERIC MODULATOR": "is a negative allosteric modulator of",
        "RELEASING AGENT": "is a releasing agent at", "ALLOSTERIC ANTAGONIST": "allosterically antagonizes",
    }

    @staticmethod
    def merge_targets(names: list[str]) -> list[str]:
        """Merge target names that differ only in the middle, e.g. GABA-A receptor subtypes:
        'the GABA-A receptor (alpha-1/beta-2/gamma-2, alpha-2/beta-3/gamma-2, and 2 more)',
        'the sodium channel protein type (4, 9, and 5) subunit alpha'."""
        names = [re.sub(r"^GABA A receptor", "GABA-A receptor", n) for n in names]
        groups: list[list[str]] = []  # [prefix words..., members...] kept as (prefix, members)
        prefixes: list[str] = []
        for n in names:
            w = n.split(" ")
            for gi, members in enumerate(groups):
                if len(members) > 1:
                    pre = prefixes[gi]
                    if n == pre:  # the generic name is covered by the merged group
                        break
                    if n.startswith(pre + " ") and len(n) > len(pre) + 1:
                        members.append(n)
                        break
                    continue
                v = members[0].split(" ")
                k = 0
                while k < min(len(v), len(w)) - 1 and v[k] == w[k]:
                    k += 1
                common = " ".join(w[:k])
                if k >= 2 and len(common) >= 15:
                    prefixes[gi] = common
                    members.append(n)
                    break
            else:
                groups.append([n])
                prefixes.append(n)
        out = []
        for pre, members in zip(prefixes, groups, strict=True):
            if len(members) == 1:
                out.append("the " + decap(members[0]))
                continue
            rests = [m[len(pre):].strip().split(" ") for m in members]
            j = 0  # common suffix words, leaving at least one word in each middle
            while all(len(r) - j > 1 for r in rests) and len({tuple(r[len(r) - j - 1:]) for r in rests}) == 1:
                j += 1
            mids = [" ".join(r[: len(r) - j]) for r in rests]
            suffix = (" " + " ".join(rests[0][len(rests[0]) - j:])) if j else ""
            shown = mids[:3]
            more = len(mids) - len(shown)
            inner = join_and(shown + [f"{more} more"]) if more else join_and(shown)
            out.append(f"the {decap(pre)} ({inner}){suffix}")
        return out

    def mechanism_phrase(self, dc: str, limit: int = 3) -> tuple[str, list[dict]]:
        rows = self.moa_targets(dc)
        by_action: dict[str, list[dict]] = defaultdict(list)
        for t in rows:
            by_action[t["action"]].append(t)
        order = sorted(by_action, key=lambda a: (-len(by_action[a]), min(t["row"] for t in by_action[a])))
        main = order[0]
        uniq: list[str] = []
        used: list[dict] = []
        for t in by_action[main]:
            if t["target"] not in uniq:
                uniq.append(t["target"])
                used.append(t)
        merged = self.merge_targets(uniq)
        extra = len(merged) - limit
        shown = merged[:limit]
        if extra > 0:
            shown.append(f"{extra} other target{'s' if extra > 1 else ''}")
        phrase = f"{self.VERBS[main]} {join_and(shown)}"
        if len(order) > 1:
            t2 = by_action[order[1]][0]
            phrase += f"; it also {self.VERBS[order[1]]} the {decap(t2['target'])}"
            used.append(t2)
        return phrase, used

    def build_moa(self, drugs: list[str]) -> None:
        label_moa = {
            "atorvastatin": (F_LIPITOR, "LIPITOR is a selective, competitive inhibitor of HMG-CoA reductase",
                             "LIPITOR", "Atorvastatin (LIPITOR)"),
            "sildenafil": (F_VIAGRA, "Sildenafil enhances the effect of NO by inhibiting", None, None),
            "adalimumab": (F_HUMIRA, "Adalimumab binds specifically to TNF-alpha", None, None),
        }
        for dc in drugs:
            us = us_name(dc)
            e = self.epc(dc)[0]
            cls = soft_lower(e["class"])
            sources = [src(F_CLASS, e["row"])]
            if dc in label_moa:
                rel, start, old, new = label_moa[dc]
                sent = self.d.label_sentence(rel, "43679-0", start)
                if old:
                    sent = sent.replace(old, new, 1)
                ref = sent
                sources.insert(0, {"file": rel, "section": "43679-0"})
                t = self.moa_targets(dc)[0]
                sources.append(src(F_TARGET, t["row"]))
                check = "openFDA label mechanism section (LOINC 43679-0), first sentence naming the target"
            else:
                phrase, used = self.mechanism_phrase(dc)
                ref = f"{cap(us)} is {article(cls)} {cls}: it {phrase}."
                sources += [src(F_TARGET, t["row"]) for t in used]
                check = "DrugCentral drug_target ACTION_TYPE + TARGET_NAME; EPC class from pharm_class"
            self.add("moa", us, f"State the mechanism of action of {us} in one sentence.", ref, sources, check)

    def enzyme_roles(self, us: str) -> list[dict]:
        out = []
        for r in sorted(self.fda_rows(us), key=lambda r: (r["pathway"], r["role"])):
            d = {"pathway": r["pathway"], "role": r["role"]}
            if r["level"] != "unspecified":
                d["level"] = r["level"]
            out.append(d)
        return out

    def build_normalize(self, drugs: list[str]) -> None:
        for dc in drugs:
            us = us_name(dc)
            e = self.epc(dc)[0]
            ts = self.moa_targets(dc)
            names, used = [], []
            for t in ts:
                if t["target"] not in names:
                    names.append(t["target"])
                    used.append(t)
                if len(names) >= 4:
                    break
            actions = sorted({t["action"].lower() for t in used})
            obj = {"name": us, "class": e["class"], "targets": names, "actions": actions,
                   "enzyme_roles": self.enzyme_roles(us)}
            ref = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
            sources = [src(F_CLASS, e["row"])] + [src(F_TARGET, t["row"]) for t in used]
            sources += [src(F_FDA, r["row"]) for r in sorted(self.fda_rows(us), key=lambda r: r["row"])]
            self.add("normalize", us,
                     f"Normalize the product {us} into JSON with the fields name, class, targets, "
                     f"actions, enzyme_roles.", ref, sources,
                     "JSON built from DrugCentral (EPC class, up to 4 targets with ACTION_TYPE) and "
                     "fda_roles.csv rows (empty enzyme_roles when the drug is not in the FDA table)")

    def interaction_caution(self, us: str) -> tuple[str, list[dict]] | None:
        mine = [m for m in self.mcp_kept.values() if us in (m["a"], m["b"])]
        if mine:
            m = min(mine, key=lambda m: (SEVERITY_ORDER[m["severity"]], m["row"]))
            other = m["b"] if m["a"] == us else m["a"]
            return (f"with {other}: {decap(m['description'])}", [src(F_MCP, m["row"])])
        rows = self.fda_rows(us)
        subs = [r for r in rows if r["role"] == "substrate" and r["level"] in ("sensitive", "moderate-sensitive")
                and r["pathway"].startswith("CYP")]
        perps = [r for r in rows if r["role"] in ("inhibitor", "inducer") and r["level"] in ("strong", "moderate")
                 and r["pathway"].startswith("CYP")]
        if subs:
            r = min(subs, key=lambda r: (LEVEL_ORDER[r["level"]], r["pathway"]))
            p = r["pathway"]
            lvl, inh = self._examples(p, "inhibitor", exclude=us)
            text = (f"{article(r['level'])} {r['level']} {p} substrate: {lvl} {p} inhibitors "
                    f"(e.g., {join_and([x[0] for x in inh])}) raise its exposure")
            s = [src(F_FDA, r["row"])] + [src(F_FDA, x[1]) for x in inh]
            lvl2, ind = self._examples(p, "inducer", exclude=us)
            if ind:
                text += f"; {lvl2} {p} inducers (e.g., {join_and([x[0] for x in ind])}) lower it"
                s += [src(F_FDA, x[1]) for x in ind]
            return text, s
        if perps:
            r = min(perps, key=lambda r: (LEVEL_ORDER[r["level"]], r["pathway"]))
            lvl, ex = self._examples(r["pathway"], "substrate", exclude=us)
            verb = "raises" if r["role"] == "inhibitor" else "lowers"
            text = (f"{article(r['level'])} {r['level']} {r['pathway']} {r['role']}: it {verb} exposure to "
                    f"{lvl} {r['pathway']} substrates (e.g., {join_and([x[0] for x in ex])})")
            return text, [src(F_FDA, r["row"])] + [src(F_FDA, x[1]) for x in ex]
        return None

    def _examples(self, path: str, role: str, exclude: str, k: int = 2) -> tuple[str, list[tuple[str, int]]]:
        """The strongest FDA grade present for (path, role) and up to k well-known drugs."""
        levels = ("sensitive",) if role == "substrate" else ("strong", "moderate")
        for level in levels:
            c = [(n, r["row"]) for n, rows in self.d.fda.items() for r in rows
                 if r["pathway"] == path and r["role"] == role and r["level"] == level and n != exclude
                 and n != "r-venlafaxine"]
            if c:
                c.sort(key=lambda x: (-self.pop[dc_name(x[0])], x[0]))
                return level, c[:k]
        return "", []

    def build_cards(self, drugs: list[str]) -> int:
        made = 0
        for dc in drugs:
            us = us_name(dc)
            caution = self.interaction_caution(us)
            if caution is None:
                continue
            e = self.epc(dc)[0]
            phrase, used = self.mechanism_phrase(dc, limit=2)
            roles = [fda_phrase(r) for r in sorted(self.fda_rows(us), key=lambda r: (r["pathway"], r["role"]))]
            inds = self.main_inds(dc)
            lines = [
                f"{cap(us)}: clinical card",
                f"Class: {e['class']}",
                f"Mechanism: {us} {phrase}.",
                "CYP/transporter roles (FDA): " + ("; ".join(roles) if roles else "none listed in the FDA table") + ".",
                f"Interaction caution: {caution[0]}" + ("" if caution[0].endswith(".") else "."),
                "Main indications: " + "; ".join(i["ind"] for i in inds) + ".",
            ]
            sources = ([src(F_CLASS, e["row"])] + [src(F_TARGET, t["row"]) for t in used]
                       + [src(F_FDA, r["row"]) for r in sorted(self.fda_rows(us), key=lambda r: r["row"])]
                       + caution[1] + [src(F_IND, i["row"]) for i in inds])
            seen, uniq = set(), []
            for s in sources:
                k = json.dumps(s, sort_keys=True)
                if k not in seen:
                    seen.add(k)
                    uniq.append(s)
            self.add("card", us, f"Create a concise clinical card for {us}.", "\n".join(lines), uniq,
                     "lines from DrugCentral (class, targets, indications), fda_roles.csv (roles) and a "
                     "kept interactions.json row or the FDA table (caution); indications from "
                     "combination products filtered")
            made += 1
        return made


# --------------------------------------------------------------------------- splits & subsets


def split_of(group: str) -> str:
    v = h("split", group) % 100
    return "train" if v < 70 else ("val" if v < 90 else "test")


def finalize(items: list[dict]) -> list[dict]:
    prefix = {"interaction": "ddi", "moa": "moa", "normalize": "norm", "card": "card"}
    order = {"interaction": 0, "moa": 1, "normalize": 2, "card": 3}
    items.sort(key=lambda it: (order[it["task"]], it["group"]))
    counters: Counter = Counter()
    out = []
    for it in items:
        counters[it["task"]] += 1
        meta = {"sources": it["sources"], "check": it["check"], "fast": False, "small": False}
        meta.update(it["meta"])
        out.append({"id": f"{prefix[it['task']]}-{counters[it['task']]:04d}", "prompt": it["prompt"],
                    "reference": it["reference"], "task": it["task"], "group": it["group"],
                    "split": split_of(it["group"]), "meta": meta})
    # fast / small subsets: round-robin over tasks, shortest references first.
    tasks = ["interaction", "moa", "normalize", "card"]
    for split, n_fast, n_small in (("train", 10, 24), ("val", 6, 12)):
        pools = {t: sorted([x for x in out if x["split"] == split and x["task"] == t],
                           key=lambda x: (len(x["reference"]), x["id"])) for t in tasks}
        picked: list[dict] = []
        i = 0
        while len(picked) < n_small and any(pools.values()):
            t = tasks[i % len(tasks)]
            i += 1
            if pools[t]:
                picked.append(pools[t].pop(0))
        for k, x in enumerate(picked):
            x["meta"]["small"] = True
            x["meta"]["fast"] = k < n_fast
    return out


# --------------------------------------------------------------------------- embeddings

STAGE2_TYPES = {
    "contraindication": "who should not get this vaccine or medicine",
    "precautions": "safety concerns and special precautions before using this medicine",
    "side effects": "unwanted effects and risks this medicine can cause",
    "important warning": "serious warnings to know before using this medicine",
    "interactions with medications": "other medicines that can interact with this product",
    "interactions with herbs and supplements": "herbs and supplements that can interfere with this product",
    "interactions with foods": "foods and drinks that can interact with this product",
    "dietary": "special diet instructions while taking this medicine",
    "emergency or overdose": "what to do if someone takes too much of this medicine",
    "severe reaction": "what to do after a severe reaction to a vaccine",
    "forget a dose": "what to do after missing a dose",
    "storage and disposal": "how to store this medicine safely and get rid of leftovers",
}


def name_leaks(query: str, names: list[str]) -> bool:
    q = query.lower()
    for n in names:
        n = n.lower()
        if n and n in q:
            return True
        words = [w for w in re.split(r"[\s\-/,()]+", n) if len(w) >= 4]
        if len(words) > 1 and any(w in q for w in words):
            return True
    return False


def build_embeddings(b: Builder) -> tuple[list[dict], list[dict], list[dict]]:
    d = b.d
    consumer = sorted(b.mq_single, key=lambda dc: (h("e", dc) % 100003, dc))
    # stage 1: drug <-> EPC / MoA class (drug-type level), CYP/transporter MoA classes left out
    s1 = []
    for dc in consumer:
        for c in d.classes.get(dc, []):
            if c["type"] not in ("EPC", "MoA"):
                continue
            if re.search(r"Cytochrome P450|P-Glycoprotein|Transporter|UGT1A1|Organic Anion", c["class"]):
                continue
            s1.append({"anchor": us_name(dc), "positive": c["class"], "group": us_name(dc),
                       "source": {"file": F_CLASS, "row": c["row"], "type": c["type"]}})
        if len(s1) >= 600:
            break
    s1 = s1[:600]
    # stage 2: safety question type <-> plain description, then description <-> questions
    s2 = []
    by_type: dict[str, list[tuple[dict, dict]]] = defaultdict(list)
    for doc in d.medquad:
        for q in doc["questions"]:
            if q["qtype"] in STAGE2_TYPES:
                by_type[q["qtype"]].append((doc, q))
    per_type = 24
    for qtype in sorted(STAGE2_TYPES):
        desc = STAGE2_TYPES[qtype]
        s2.append({"anchor": qtype, "positive": desc, "group": qtype,
                   "source": {"file": "medquad", "qtype": qtype, "note": "hand-written description"}})
        qs = sorted(by_type[qtype], key=lambda x: (h("s2", x[1]["qid"]) % 1000003, x[1]["qid"]))
        for doc, q in qs[:per_type]:
            s2.append({"anchor": desc, "positive": q["text"], "group": qtype,
                       "source": {"file": doc["file"], "qid": q["qid"], "qtype": qtype}})
    # stage 3: consumer query -> drug, the query never names the drug
    s3, anchors = [], set()
    pool = [dc for dc in consumer if d.inds.get(dc)]
    epc_idx = b._epc_index()

    def plausible(dc: str) -> list[dict]:
        """Indications we trust for a query: shared with a drug of the same EPC class, or,
        for a drug without such class-mates, all of them when the drug has at most 12.
        (DrugCentral 2016 attaches some indications to the wrong drug, e.g. tinea to
        oxycodone or growth failure to atropine; those are never class-typical.)"""
        rows = b.clean_inds(dc)
        mates = {n for n, cs in epc_idx.items() if n != dc and cs & epc_idx.get(dc, set())}
        mate_inds = {i["ind"].lower() for m in mates for i in d.inds.get(m, [])}
        if mate_inds:
            return [r for r in rows if r["ind"].lower() in mate_inds]
        return rows if len(rows) <= 12 else []

    good = {dc: plausible(dc) for dc in pool}
    by_ind: dict[str, set[str]] = defaultdict(set)
    by_cls_ind: dict[tuple[str, str], set[str]] = defaultdict(set)
    for dc in pool:
        c = b.epc(dc)[0]["class"] if b.epc(dc) else None
        for r in good[dc]:
            by_ind[r["ind"].lower()].add(dc)
            if c:
                by_cls_ind[(c, r["ind"].lower())].add(dc)

    def names_of(dc: str) -> list[str]:
        return sorted({dc, us_name(dc)} | {doc["focus"] for doc in b.mq_single.get(dc, [])})

    def emit(anchor: str, dc: str, source: dict, others: set[str]) -> bool:
        if anchor in anchors or name_leaks(anchor, names_of(dc)):
            return False
        anchors.add(anchor)
        source = dict(source)
        source["also"] = sorted(us_name(o) for o in others if o != dc)
        s3.append({"anchor": anchor, "positive": us_name(dc), "group": us_name(dc), "source": source})
        return True

    q1_tmpl = ["a medicine for {i}", "which drug is prescribed for {i}?", "what can I take for {i}?"]
    mq_types = ["side effects", "precautions", "indication", "dietary", "important warning"]
    quota = {"indication": 200, "class+indication": 250, "medquad-masked": 150}
    made: Counter = Counter()
    for max_amb in (1, 2, 3):  # unambiguous queries first, then up to 3 correct drugs
        for dc in pool:
            inds = sorted(good[dc], key=lambda r: (h("i", dc, r["row"]) % 10007, r["row"]))
            c = b.epc(dc)[0] if b.epc(dc) else None
            for r in inds:
                key = r["ind"].lower()
                if made["indication"] < quota["indication"] and len(by_ind[key]) == max_amb:
                    t = q1_tmpl[h("t", dc, r["row"]) % len(q1_tmpl)]
                    if emit(t.format(i=key), dc, {"file": F_IND, "row": r["row"], "kind": "indication"},
                            by_ind[key]):
                        made["indication"] += 1
                        break
            for r in inds:
                key = r["ind"].lower()
                if c and made["class+indication"] < quota["class+indication"] \
                        and len(by_cls_ind[(c["class"], key)]) == max_amb:
                    cls = soft_lower(c["class"]).lower() if not NON_TYPE_CLASS.search(c["class"]) else ""
                    if not cls:
                        break
                    q = f"{article(cls)} {cls} used for {key}"
                    if emit(q, dc, {"file": F_IND, "row": r["row"], "class_row": c["row"],
                                    "kind": "class+indication"}, by_cls_ind[(c["class"], key)]):
                        made["class+indication"] += 1
                        break
            docs = b.mq_single.get(dc, [])
            if docs and made["medquad-masked"] < quota["medquad-masked"]:
                doc = docs[0]
                qs = [q for q in doc["questions"] if q["qtype"] in mq_types]
                r = next((x for x in inds if len(by_ind[x["ind"].lower()]) == max_amb), None)
                if qs and r:
                    q = qs[h("q", dc) % len(qs)]
                    masked = re.sub(re.escape(doc["focus"]), f"the medicine for {r['ind'].lower()}",
                                    q["text"], flags=re.I).replace(" ?", "?")
                    if masked != q["text"] and emit(
                            masked, dc, {"file": doc["file"], "qid": q["qid"], "ind_file": F_IND,
                                         "ind_row": r["row"], "kind": "medquad-masked"},
                            by_ind[r["ind"].lower()]):
                        made["medquad-masked"] += 1
    s3.sort(key=lambda x: (h("s3", x["anchor"]) % 1000003, x["anchor"]))
    return s1, s2, s3


# --------------------------------------------------------------------------- writing

NOTICE_TMPL = """preceptor demo data -- third-party sources and licences
=======================================================

The files in this folder (demo.jsonl, embed_stage1.jsonl, embed_stage2.jsonl,
embed_stage3.jsonl) are derived from the public data sets below by
scripts/build_demo_data.py. Changes made: rows were selected, filtered and rephrased
into templated English sentences or compact JSON; nothing was added that the rows do not
state, apart from the FDA's published definitions of inhibitor/inducer strength and the
hand-written descriptions of MedQuAD question types. Each item names its source rows
(meta.sources / source: a path below, and a 1-based line, entry, section or question id).

1. DrugCentral (drug targets, pharmacologic classes, indications)
   Source:   https://github.com/olegursu/drugtarget @ commit 64630f7c
             files drug_target.tsv, pharm_class.tsv, drug_indication.tsv (DrugCentral 2016)
   Licence:  Creative Commons Attribution 4.0 International (CC BY 4.0),
             https://creativecommons.org/licenses/by/4.0/
   Attribution: DrugCentral, https://drugcentral.org (data via olegursu/drugtarget)
   Files used: drugcentral/drug_target.tsv, drugcentral/pharm_class.tsv,
             drugcentral/drug_indication.tsv
   Used in:  demo.jsonl (moa, normalize, card), embed_stage1.jsonl, embed_stage3.jsonl

2. FDA table of substrates, inhibitors and inducers (CYP enzymes and transporters)
   Source:   US FDA, "Drug Development and Drug Interactions -- Table of Substrates,
             Inhibitors and Inducers" (Table 1, content current as of 2026-05-29),
             {fda_url}
             as extracted in fda_roles.csv of https://github.com/akarales/drug-interaction-visualizer
             @ commit 7b91b4c0, path crates/engine/data/fda_roles.csv
   Licence:  the FDA table is a work of the US government (public domain); the repository
             that extracted it declares the MIT licence.
   Files used: fda-roles/fda_roles.csv
   Used in:  demo.jsonl (interaction, normalize, card)

3. drug-interaction-mcp (hand-written interaction pairs)
   Source:   PyPI package drug-interaction-mcp==0.1.0, drug_interaction_mcp/interactions.py
             (data exported to JSON)
   Licence:  MIT, Copyright (c) 2026 Pillright -- full text below.
   Files used: drug-interaction-mcp/interactions.json
   Used in:  demo.jsonl (interaction, card). Rows were reviewed by hand; {mcp_dropped} of
             {mcp_total} rows were dropped (foods, herbals, alcohol, duplicates, outdated or
             doubtful advice), some sentences removed and strength words replaced by FDA grades
             (see meta.check of each item).

4. openFDA SPL test labels
   Source:   https://github.com/FDA/openfda @ commit 2c152208 (test SPL XML labels)
   Licence:  CC0 1.0 Universal (public domain dedication)
   Files used: {label_files}
   Used in:  demo.jsonl (moa for atorvastatin, sildenafil, adalimumab; label sentences in a
             few sildenafil interactions)

5. MedQuAD (consumer drug questions; answers removed upstream)
   Source:   https://github.com/abachaa/MedQuAD @ commit 577bd37b,
             11_MPlusDrugs_QA and 12_MPlusHerbsSupplements_QA
   Licence:  Creative Commons Attribution 4.0 International (CC BY 4.0),
             https://creativecommons.org/licenses/by/4.0/
   Attribution: Asma Ben Abacha and Dina Demner-Fushman, "A Question-Entailment Approach to
             Question Answering", BMC Bioinformatics 20:511 (2019).
   Files used: medquad/11_MPlusDrugs_QA/*.xml, medquad/12_MPlusHerbsSupplements_QA/*.xml
   Used in:  embed_stage2.jsonl (questions verbatim), embed_stage3.jsonl (questions with the
             drug name replaced), and to pick consumer-relevant drugs.

Nothing here is medical advice; the data are for demonstrating and testing the software.

-----------------------------------------------------------------------------------------
drug-interaction-mcp licence (MIT)
-----------------------------------------------------------------------------------------
{mcp_license}
"""


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False, sort_keys=False) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", default=str(REPO / ".." / "shared"),
                    help="the shared reference folder (default: ../shared from the repo root)")
    ap.add_argument("--out", default=str(OUT), help="output folder (default: preceptor/demo/data)")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--verbose", action="store_true", help="also list every curation decision")
    args = ap.parse_args(argv)
    shared = Path(args.shared)
    if not shared.is_absolute():
        shared = (REPO / shared).resolve() if not shared.exists() else shared.resolve()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    data = Data(shared)
    b = Builder(data)
    b.build_mcp()
    b.build_fda_pairs(56)
    pool = b.drug_pool()
    must = ["atorvastatin", "sildenafil", "adalimumab"]
    moa_drugs = must + [dc for dc in pool if dc not in must][: 75 - len(must)]
    b.build_moa(moa_drugs)
    b.build_normalize(moa_drugs[:65])
    card_cands = [dc for dc in moa_drugs if b.interaction_caution(us_name(dc)) is not None]
    b.build_cards(card_cands[:65])
    items = finalize(b.items)

    # sanity: one split per group, unique ids
    g2s: dict[str, str] = {}
    for it in items:
        assert g2s.setdefault(it["group"], it["split"]) == it["split"]
    assert len({it["id"] for it in items}) == len(items)

    s1, s2, s3 = build_embeddings(b)
    write_jsonl(out / "demo.jsonl", items)
    write_jsonl(out / "embed_stage1.jsonl", s1)
    write_jsonl(out / "embed_stage2.jsonl", s2)
    write_jsonl(out / "embed_stage3.jsonl", s3)

    fda_url = ""
    for line in (data.root / F_FDA).read_text(encoding="utf-8").splitlines():
        m = re.search(r"(https://www\.fda\.gov/\S+)", line)
        if m:
            fda_url = m.group(1)
            break
    notice = NOTICE_TMPL.format(
        fda_url=fda_url, mcp_dropped=len(DROP), mcp_total=len(data.mcp),
        label_files=", ".join([F_VIAGRA + " (VIAGRA)", F_HUMIRA + " (HUMIRA)", F_LIPITOR + " (LIPITOR)"]),
        mcp_license=(data.root / "drug-interaction-mcp" / "LICENSE").read_text(encoding="utf-8").strip())
    (out / "NOTICE").write_text(notice, encoding="utf-8")
    (out / "README.md").write_text(readme(items, s1, s2, s3, b), encoding="utf-8")
    if not args.quiet:
        c = Counter((it["task"], it["split"]) for it in items)
        for t in ("interaction", "moa", "normalize", "card"):
            print(f"{t:12s}", {s: c[(t, s)] for s in ("train", "val", "test")},
                  sum(c[(t, s)] for s in ("train", "val", "test")))
        print("total", len(items), "| embed stages:", len(s1), len(s2), len(s3))
    if args.verbose:
        print("\n".join(b.report))
    return 0


def readme(items: list[dict], s1: list, s2: list, s3: list, b: Builder) -> str:
    c = Counter((it["task"], it["split"]) for it in items)
    kinds = Counter(it["meta"].get("kind") for it in items if it["task"] == "interaction")
    rows = []
    for t in ("interaction", "moa", "normalize", "card"):
        n = [c[(t, s)] for s in ("train", "val", "test")]
        rows.append(f"| {t} | {n[0]} | {n[1]} | {n[2]} | {sum(n)} |")
    tot = [sum(c[(t, s)] for t in ("interaction", "moa", "normalize", "card")) for s in ("train", "val", "test")]
    rows.append(f"| **all** | {tot[0]} | {tot[1]} | {tot[2]} | {sum(tot)} |")
    fast = Counter(it["split"] for it in items if it["meta"]["fast"])
    small = Counter(it["split"] for it in items if it["meta"]["small"])
    table = "\n".join(rows)
    s3_unique = sum(1 for r in s3 if not r["source"].get("also"))
    n_drop, n_mcp = len(DROP), len(b.d.mcp)
    return f"""# preceptor demo data

Built by `scripts/build_demo_data.py` from the public data in the shared reference folder
(see `NOTICE` for sources, commits and licences). Do not edit by hand: rerun the script,
which is deterministic (sorted inputs, fixed seed `{SEED}`).

## demo.jsonl

One JSON object per line:
`{{"id", "prompt", "reference", "task", "group", "split", "meta": {{"sources", "check", "fast", "small", ...}}}}`.

| task | train | val | test | total |
|---|---|---|---|---|
{table}

### Tasks

* **interaction** -- "Explain the interaction between X and Y." Two kinds:
  * `kind: fda-table` ({kinds.get('fda-table', 0)} items): a strong or moderate CYP inhibitor or
    inducer joined to a sensitive (or, for strong perpetrators, moderate-sensitive) substrate of
    the same pathway in `fda_roles.csv`; the reference states both grades, the direction of the
    exposure change and the FDA's definition of the effect size. Left out: moderate inhibitor x
    moderate-sensitive substrate (no FDA effect size), R-venlafaxine (not racemic venlafaxine),
    tramadol (prodrug), ritonavir/cobicistat x HIV protease inhibitors (intended boosting).
    Chosen by how many sources know both drugs, at most 3 items per perpetrator and 2 per
    substrate, CYP3A capped at 40%.
  * `kind: mcp` ({kinds.get('mcp', 0)} items): the drug-interaction-mcp pairs, every row read by
    hand. Foods, herbals, supplements, alcohol and smoking, duplicates, and rows with doubtful
    or outdated advice were dropped; a few sentences were removed. Rows that mention a CYP
    enzyme were compared with the FDA grading: `meta.check` records the outcome (e.g. "FDA
    grades fluconazole moderate CYP2C9 inhibitor; source said potent -> reference uses FDA
    grade") and the reference carries an "FDA grading:" sentence. Other rows have `meta.check`
    = "pharmacodynamic; reviewed by hand: ..." (or "non-CYP pharmacokinetic ...").
  * group = the two drug names, sorted and joined with `+`.
* **moa** -- "State the mechanism of action of X in one sentence." From DrugCentral
  `drug_target.tsv` (ACTION_TYPE + TARGET_NAME, label-sourced rows first) and the FDA EPC class
  in `pharm_class.tsv`; for atorvastatin, sildenafil and adalimumab the sentence comes from the
  openFDA label mechanism section (LOINC 43679-0). group = the drug.
* **normalize** -- "Normalize the product X into JSON with the fields name, class, targets,
  actions, enzyme_roles." The reference is compact JSON: `name`, `class` (EPC), `targets` (up to
  4 DrugCentral target names), `actions` (their ACTION_TYPEs, lower case), `enzyme_roles`
  (`fda_roles.csv` rows as `{{pathway, role, level?}}`; `level` absent when unspecified).
* **card** -- "Create a concise clinical card for X." Six short lines: class, mechanism,
  CYP/transporter roles, one interaction caution (the most severe kept interaction row with the
  drug, else its FDA substrate/perpetrator role), up to 3 indications (class-typical first;
  indications that DrugCentral attaches through a fixed-dose combination partner, found via
  MedQuAD combination products, are filtered out).

Drugs for moa/normalize/card are the best-known ones (present in the most sources: DrugCentral
targets, class, indications, the FDA table, the interaction pairs, MedQuAD), so the same drug
gives a moa, a normalize and usually a card item, all with group = the drug.

### Splits and subsets

`split` is a hash of `group` with the fixed seed (about 70/20/10 train/val/test), so a group
never spans two splits. An interaction group `a+b` is distinct from a drug group `a`.
`meta.fast` marks {fast.get('train', 0)} train + {fast.get('val', 0)} val items (mixed tasks, shortest references; used by
`preceptor demo --fast`); `meta.small` marks {small.get('train', 0)} train + {small.get('val', 0)} val items, a superset of fast.

### Provenance

`meta.sources` lists the rows used: `{{"file": "drugcentral/drug_target.tsv", "row": 366}}`, where
`row` is the 1-based physical line in the TSV/CSV file (line 1 = header, or the first comment
line of `fda_roles.csv`) or the 1-based entry of `interactions.json`; openFDA sources give the
LOINC `section` instead.

## Embedding curriculum

Rows `{{"anchor", "positive", "group", "source"}}`; each stage starts from the previous model.

| file | rows | content |
|---|---|---|
| embed_stage1.jsonl | {len(s1)} | drug <-> pharmacologic class (DrugCentral `pharm_class.tsv`, FDA EPC and MoA types; CYP/transporter classes left out); consumer drugs (single-ingredient MedQuAD drugs) only. group = the drug. |
| embed_stage2.jsonl | {len(s2)} | MedQuAD safety question type <-> a hand-written plain description (one row per type), then description <-> real MedQuAD questions of that type (24 per type, unmasked). group = the question type. |
| embed_stage3.jsonl | {len(s3)} | consumer query -> drug. The query never contains the drug's name (nor any word of 4+ letters of a multi-word name): "a medicine for <indication>" (and two paraphrases), "a <class> used for <indication>" and MedQuAD questions with the drug name replaced by "the medicine for <indication>". Unambiguous queries first: {s3_unique} rows have no other consumer drug with that indication (or class + indication); in the rest, `source.also` lists the (at most 2) other drugs that are equally correct -- do not use them as negatives. Every query string is unique. group = the drug. |

Stage 2 positives are template-like (MedQuAD questions differ mostly by drug name); train with
in-batch/hard negatives and evaluate for collapse, as the 002 write-up warns.

Stage-3 indications are only those a drug shares with another drug of its FDA EPC class (or,
for drugs without such class-mates, all of a drug's indications when it has at most 12),
because DrugCentral 2016 attaches some indications to the wrong drug.

## Known problems in the source data (handled by the build)

* DrugCentral `drug_indication.tsv` (2016) has wrong rows, e.g. rifampicin -> epilepsy /
  bipolar disorder, oxycodone -> tinea and peptic ulcer, atropine -> growth failure, nicotine ->
  niacin deficiency, phentermine -> hypotension in spinal anaesthesia (mephentermine), digoxin
  -> digitalis toxicity; and it gives ingredients the indications of their fixed-dose
  combinations (atorvastatin -> hypertension via amlodipine/atorvastatin). The ones seen are
  blocked in the script (`INDICATION_BLOCK`), combination indications are filtered, and stage-3
  queries use class-typical indications only. Others may remain.
* DrugCentral names are INN (paracetamol, rifampicin, ciclosporin); items use US names
  (acetaminophen, rifampin, cyclosporine).
* `pharm_class.tsv` gives some drugs only CYP/P-gp "MoA" classes (clarithromycin: "Cytochrome
  P450 3A4 Inhibitors"), which are not their mechanism; such classes are never used as a
  drug's class.
* `fda_roles.csv` lists "R-venlafaxine" (matched to venlafaxine upstream); it is not used for
  racemic venlafaxine.
* drug-interaction-mcp: hand-written; {n_drop} of {n_mcp} rows dropped (foods, herbals,
  supplements, alcohol, smoking, duplicates, doubtful or outdated advice such as dabigatran +
  dronedarone called contraindicated on the US label, or blanket metformin + contrast advice)
  and a few sentences removed (separating clopidogrel and omeprazole by 12 hours, which the
  FDA says does not help; ranitidine as an alternative; a garbled nitrate timing rule; a
  hyperbolic remark). Strength words that contradict the FDA grading ("potent" CYP2C9
  inhibitor fluconazole, "potently" CYP1A2-inhibiting ciprofloxacin, macrolides all "strong")
  were replaced; `meta.check` says what was done for each CYP row.

## Item meta fields

`sources`, `check`, `fast`, `small` on every item; interaction items add `kind`
(`fda-table` | `mcp`), fda-table items `pathway` and `direction` (`increase` | `decrease`),
mcp items `severity` (the source's danger / warning / caution) and `cited_by_source` (the
citation the source gives, not verified).
"""


if __name__ == "__main__":
    raise SystemExit(main())
