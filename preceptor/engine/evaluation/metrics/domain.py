"""Domain metrics from a domain pack: facet F1, key-term coverage, fact-triple match.

Nothing here knows a domain word: lexicons, facets, key-term kinds and the triple pattern
(subject kinds, relation kind with verb / participle / noun forms, object kinds, negation
words, the passive marker, pronouns) all come from the pack
(:mod:`preceptor.prompts.domains`).

Triple extraction, per sentence, around each relation mention:

* verb ("X inhibits A, B and C"): the subject is the nearest subject mention before it
  (or, when the sentence opens with one of the pack's pronouns, the previous sentence's
  subject); the objects are the object mentions after it up to the next relation or subject;
* passive participle + marker ("A is inhibited by X"): objects before, subject after;
* noun ("X is a strong A inhibitor", "X, an inhibitor of A"): objects just before the
  noun, else after it when a preposition follows; the subject is the nearest subject
  before (else just after: "the A inhibitor X");
* a negation word within three tokens before the relation drops it ("does not inhibit").
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from preceptor.prompts.domains import DomainPack, Entry, Mention, Tokens, load, tokenize


@dataclass(frozen=True)
class Triple:
    subject: Entry
    relation: Entry
    object: Entry
    sentence: int

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.subject.id, self.relation.id, self.object.id)


@functools.lru_cache(maxsize=50_000)
def _analyse(pack_root: str, text: str) -> tuple[Tokens, tuple[Mention, ...]]:
    pack = load(pack_root)
    toks = tokenize(text)
    return toks, tuple(pack.mentions(text, toks))


def analyse(pack: DomainPack, text: str) -> tuple[Tokens, tuple[Mention, ...]]:
    """Tokens and mentions of ``text`` (cached: the same text is analysed once per process)."""
    return _analyse(str(pack.root), text or "")


def mentions(pack: DomainPack, text: str) -> tuple[Mention, ...]:
    return analyse(pack, text)[1]


def facet_sets(pack: DomainPack, text: str) -> dict[str, set[str]]:
    """Facet name -> canonical ids mentioned in ``text``."""
    out: dict[str, set[str]] = {f: set() for f in pack.facets}
    for m in mentions(pack, text):
        for facet, kinds in pack.facets.items():
            out[facet].update(e.id for e in m.of_kind(kinds))
    return out


def key_terms(pack: DomainPack, text: str) -> set[tuple[str, str]]:
    """(kind, canonical id) of every key term mentioned in ``text``."""
    return {(e.kind, e.id) for m in mentions(pack, text) for e in m.of_kind(pack.key_term_kinds)}


def _first(m: Mention, kinds: tuple[str, ...]) -> Entry | None:
    for k in kinds:
        for e in m.entries:
            if e.kind == k:
                return e
    return None


@dataclass
class _Parsed:
    """A text's mentions with, per mention, its subject / relation / object entry (or None)."""

    ms: tuple[Mention, ...]
    subj: list[Entry | None]
    rel: list[Entry | None]
    obj: list[Entry | None]

    def objects_after(self, same: list[int], k: int) -> list[Entry]:
        found: list[Entry] = []
        for j in same:
            if j <= k:
                continue
            if self.rel[j] is not None or (self.subj[j] is not None and self.obj[j] is None):
                break
            if self.obj[j] is not None:
                found.append(self.obj[j])  # type: ignore[arg-type]
        return found

    def objects_before(self, same: list[int], k: int, max_gap: int | None) -> list[Entry]:
        found: list[Entry] = []
        edge = self.ms[k].start
        for j in reversed([j for j in same if j < k]):
            if self.rel[j] is not None or self.obj[j] is None:
                break
            if max_gap is not None and edge - self.ms[j].end > max_gap:
                break
            found.append(self.obj[j])  # type: ignore[arg-type]
            edge = self.ms[j].start
        return found[::-1]

    def subject_before(self, same: list[int], k: int) -> Entry | None:
        for j in reversed([j for j in same if j < k]):
            if self.subj[j] is not None:
                return self.subj[j]
        return None

    def subject_after(self, same: list[int], k: int, max_gap: int | None) -> Entry | None:
        for j in same:
            if j > k and self.subj[j] is not None:
                if max_gap is None or self.ms[j].start - self.ms[k].end <= max_gap:
                    return self.subj[j]
                return None
        return None


def extract_triples(pack: DomainPack, text: str) -> list[Triple]:
    """Subject–relation–object triples stated in ``text`` (see the module doc)."""
    spec = pack.triples
    if spec is None:
        return []
    toks, ms = analyse(pack, text)
    P = _Parsed(ms, [_first(m, spec.subject) for m in ms], [_first(m, (spec.relation,)) for m in ms],
                [_first(m, spec.object) for m in ms])
    sent_start: dict[int, int] = {}
    for i, s in enumerate(toks.sentence):
        sent_start.setdefault(s, i)
    by_sentence: dict[int, list[int]] = {}
    for j, m in enumerate(ms):
        by_sentence.setdefault(m.sentence, []).append(j)
    topic: dict[int, Entry] = {}  # sentence -> the first subject stated in it (outside a relation)
    for j, m in enumerate(ms):
        if P.subj[j] is not None and P.rel[j] is None:
            topic.setdefault(m.sentence, P.subj[j])  # type: ignore[arg-type]

    out: list[Triple] = []
    seen: set[tuple[str, str, str]] = set()
    for k, m in enumerate(ms):
        r = P.rel[k]
        if r is None:
            continue
        s0 = sent_start[m.sentence]
        if any(t in spec.negations for t in toks.folded[max(s0, m.start - 3):m.start]):
            continue
        same = by_sentence[m.sentence]
        nxt = toks.folded[m.end] if m.end < len(toks.folded) else ""
        if r.form == "participle" and spec.passive_marker and nxt == spec.passive_marker:
            subject, objects = P.subject_after(same, k, None), P.objects_before(same, k, None)
        elif r.form == "noun":
            objects = P.objects_before(same, k, 3)
            if not objects and nxt in spec.object_prepositions:
                objects = P.objects_after(same, k)
            subject = P.subject_before(same, k) or P.subject_after(same, k, 1)
        else:
            subject, objects = P.subject_before(same, k), P.objects_after(same, k)
        if subject is None and any(toks.folded[s0:s0 + len(p)] == p for p in spec.pronouns):
            subject = next((topic[s] for s in range(m.sentence - 1, -1, -1) if s in topic), None)
        if subject is None:
            continue
        for o in objects:
            t = Triple(subject, r, o, m.sentence)
            if t.key not in seen and o.id != subject.id:
                seen.add(t.key)
                out.append(t)
    return out


def _soft_same(pack: DomainPack, a: Entry, b: Entry) -> bool:
    if a.id == b.id:
        return True
    if a.group and a.group == b.group and a.kind == b.kind:
        return True
    return b.id in pack.classes_of(a.id) or a.id in pack.classes_of(b.id)


def soft_match(pack: DomainPack, p: Triple, q: Triple) -> bool:
    """Same fact up to synonyms (same id), the relation's or object's group, or class membership."""
    subj = p.subject.id == q.subject.id or p.subject.id in pack.classes_of(q.subject.id) \
        or q.subject.id in pack.classes_of(p.subject.id)
    return subj and _soft_same(pack, p.relation, q.relation) and _soft_same(pack, p.object, q.object)


def _f1(tp_p: int, n_p: int, tp_r: int, n_r: int) -> float:
    precision = tp_p / n_p if n_p else 0.0
    recall = tp_r / n_r if n_r else 0.0
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


class _DomainScorer:
    name = ""

    def __init__(self, domain: str = "pharma") -> None:
        self.pack = load(domain)
        self.signature = f"{self.name}:pack={self.pack.name}@{self.pack.version}"

    def via(self, lang: str) -> str:
        return f"domain pack {self.pack.name} {self.pack.version} ({self.pack.language} lexicons)"

    def score(self, predictions: list[str], references: list[str]) -> list[float | None]:
        if len(predictions) != len(references):
            raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
        return [self.one(p or "", r or "") for p, r in zip(predictions, references, strict=True)]

    def one(self, prediction: str, reference: str) -> float | None:  # pragma: no cover - abstract
        raise NotImplementedError


class FacetF1(_DomainScorer):
    """Macro F1 over the facets the reference mentions (None when it mentions none)."""

    name = "facet_f1"

    def one(self, prediction: str, reference: str) -> float | None:
        ref, pred = facet_sets(self.pack, reference), facet_sets(self.pack, prediction)
        scores = []
        for facet, r in ref.items():
            if not r:
                continue
            p = pred[facet]
            scores.append(2 * len(p & r) / (len(p) + len(r)))
        return sum(scores) / len(scores) if scores else None


class KeyTerms(_DomainScorer):
    """Share of the reference's key terms (canonical ids) that the prediction mentions."""

    name = "key_terms"

    def one(self, prediction: str, reference: str) -> float | None:
        ref = key_terms(self.pack, reference)
        if not ref:
            return None
        return len(ref & key_terms(self.pack, prediction)) / len(ref)


class TripleMatch(_DomainScorer):
    """F1 between the prediction's and the reference's fact triples (exact or soft)."""

    def __init__(self, soft: bool = False, domain: str = "pharma") -> None:
        self.soft = soft
        self.name = "triple_soft" if soft else "triple_exact"
        super().__init__(domain)

    def one(self, prediction: str, reference: str) -> float | None:
        ref = extract_triples(self.pack, reference)
        if not ref:
            return None
        pred = extract_triples(self.pack, prediction)
        if not pred:
            return 0.0
        if not self.soft:
            rk, pk = {t.key for t in ref}, {t.key for t in pred}
            return _f1(len(pk & rk), len(pk), len(pk & rk), len(rk))
        tp_p = sum(any(soft_match(self.pack, p, q) for q in ref) for p in pred)
        tp_r = sum(any(soft_match(self.pack, p, q) for p in pred) for q in ref)
        return _f1(tp_p, len(pred), tp_r, len(ref))
