"""Domain packs: the domain knowledge the engine's domain metrics use, as data.

A pack is a folder with a ``pack.toml`` and the files it names (see ``pharma/pack.toml``,
written by ``scripts/build_domain_pack.py``). The engine knows no domain words: facets,
key terms and fact triples are all defined by the pack. Adding a domain means adding a
folder; :func:`load` takes a packaged pack name (a folder next to this file) or the path
of a pack folder anywhere.

The declared interface (what a pack must provide):

``pack.toml``
    ``name``, ``version``, ``description``, ``language``;
    ``[lexicons]`` kind -> lexicon file;
    ``[facets]`` facet name -> list of lexicon kinds;
    ``[key_terms] kinds``;
    ``[triples]`` ``subject`` (kinds), ``relation`` (one kind whose entries carry a form
    ``verb`` / ``participle`` / ``noun``), ``object`` (kinds), optional ``negations``,
    ``passive_marker``, ``pronouns``, ``object_prepositions``;
    optional ``[gold]`` ``triples`` and ``classes`` files.
lexicon file (TSV, header ``id group form terms``)
    one row per concept (and form); ``terms`` are ``|``-separated surface forms; a term
    starting with ``=`` only matches with the same letter case (short gene symbols).

:meth:`DomainPack.mentions` finds every lexicon mention in a text (longest match, case
folded, punctuation-insensitive: "P-gp", "p gp" and "P gp" are the same), each with its
sentence number; the metrics in :mod:`preceptor.engine.evaluation.metrics.domain` are built on it.
"""

from __future__ import annotations

import csv
import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from preceptor.errors import PreceptorError

HERE = Path(__file__).resolve().parent
TOKEN = re.compile(r"[^\W_]+")
_SENTENCE_GAP = re.compile(r"[;!?\n]|\.\s")


@dataclass(frozen=True)
class Entry:
    """One concept of a lexicon: its kind (lexicon), canonical id, soft-match group and form."""

    kind: str
    id: str
    group: str = ""
    form: str = ""


@dataclass(frozen=True)
class Mention:
    """A lexicon match in a text: token span ``[start, end)``, characters, sentence, entries."""

    start: int
    end: int
    char_start: int
    char_end: int
    sentence: int
    entries: tuple[Entry, ...]

    def of_kind(self, kinds: Iterable[str]) -> list[Entry]:
        ks = set(kinds)
        return [e for e in self.entries if e.kind in ks]


@dataclass(frozen=True)
class Tokens:
    """A text split into case-folded tokens, their original spellings, spans and sentences."""

    folded: tuple[str, ...]
    original: tuple[str, ...]
    spans: tuple[tuple[int, int], ...]
    sentence: tuple[int, ...]


def tokenize(text: str) -> Tokens:
    folded, original, spans, sentence = [], [], [], []
    sent = 0
    prev_end = 0
    for m in TOKEN.finditer(text or ""):
        if original and _SENTENCE_GAP.search(text[prev_end:m.start()]):
            sent += 1
        original.append(m.group())
        folded.append(m.group().casefold())
        spans.append((m.start(), m.end()))
        sentence.append(sent)
        prev_end = m.end()
    return Tokens(tuple(folded), tuple(original), tuple(spans), tuple(sentence))


@dataclass(frozen=True)
class TripleSpec:
    subject: tuple[str, ...]
    relation: str
    object: tuple[str, ...]
    negations: frozenset[str] = frozenset()
    passive_marker: str = ""
    pronouns: tuple[tuple[str, ...], ...] = ()
    object_prepositions: frozenset[str] = frozenset()


@dataclass
class DomainPack:
    """A loaded pack: lexicon index, facets, key-term kinds, triple spec and gold facts."""

    name: str
    version: str
    description: str
    language: str
    root: Path
    facets: dict[str, tuple[str, ...]]
    key_term_kinds: tuple[str, ...]
    triples: TripleSpec | None
    gold_files: dict[str, str] = field(default_factory=dict)
    # phrase (folded tokens) -> [(entry, case-sensitive original tokens or None)]
    index: dict[tuple[str, ...], list[tuple[Entry, tuple[str, ...] | None]]] = field(default_factory=dict)
    max_len: dict[str, int] = field(default_factory=dict)  # first token -> longest phrase length
    entries: dict[str, dict[str, Entry]] = field(default_factory=dict)  # kind -> id -> entry

    @property
    def kinds(self) -> list[str]:
        return sorted(self.entries)

    def add_term(self, entry: Entry, term: str) -> None:
        case_sensitive = term.startswith("=")
        raw = term[1:] if case_sensitive else term
        toks = tokenize(raw)
        if not toks.folded:
            return
        key = toks.folded
        item = (entry, toks.original if case_sensitive else None)
        bucket = self.index.setdefault(key, [])
        if item not in bucket:
            bucket.append(item)
        self.max_len[key[0]] = max(self.max_len.get(key[0], 0), len(key))
        self.entries.setdefault(entry.kind, {}).setdefault(entry.id, entry)

    def mentions(self, text: str, tokens: Tokens | None = None) -> list[Mention]:
        """Every lexicon mention in ``text``, longest match first, left to right."""
        t = tokens or tokenize(text)
        out: list[Mention] = []
        i, n = 0, len(t.folded)
        while i < n:
            longest = self.max_len.get(t.folded[i], 0)
            found = None
            for length in range(min(longest, n - i), 0, -1):
                key = t.folded[i:i + length]
                cands = self.index.get(key)
                if not cands:
                    continue
                if t.sentence[i] != t.sentence[i + length - 1]:
                    continue
                ok = tuple(dict.fromkeys(e for e, cs in cands if cs is None or cs == t.original[i:i + length]))
                if ok:
                    found = Mention(i, i + length, t.spans[i][0], t.spans[i + length - 1][1], t.sentence[i], ok)
                    break
            if found:
                out.append(found)
                i = found.end
            else:
                i += 1
        return out

    def entry(self, kind: str, ident: str) -> Entry | None:
        return self.entries.get(kind, {}).get(ident)

    def _read_rows(self, key: str) -> list[dict[str, str]]:
        name = self.gold_files.get(key)
        if not name:
            return []
        with (self.root / name).open(encoding="utf-8", newline="") as fh:
            return list(csv.DictReader(fh, delimiter="\t"))

    @functools.cached_property
    def gold_triples(self) -> list[dict[str, str]]:
        """Gold facts shipped with the pack: rows with at least drug/subject, action, target."""
        return self._read_rows("triples")

    @functools.cached_property
    def _classes(self) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
        by_member: dict[str, set[str]] = {}
        by_class: dict[str, set[str]] = {}
        for r in self._read_rows("classes"):
            member, cls = r.get("drug") or r.get("member") or "", r.get("class") or ""
            by_member.setdefault(member, set()).add(cls)
            by_class.setdefault(cls, set()).add(member)
        return by_member, by_class

    def classes_of(self, member: str) -> set[str]:
        return self._classes[0].get(member, set())

    def members_of(self, cls: str) -> set[str]:
        return self._classes[1].get(cls, set())


def available() -> list[str]:
    """Names of the packaged domain packs."""
    return sorted(p.name for p in HERE.iterdir() if (p / "pack.toml").is_file())


def _pack_dir(name_or_path: str) -> Path:
    p = Path(name_or_path).expanduser()
    if (p / "pack.toml").is_file():
        return p.resolve()
    if re.fullmatch(r"[A-Za-z0-9_-]+", name_or_path) and (HERE / name_or_path / "pack.toml").is_file():
        return HERE / name_or_path
    raise PreceptorError(
        "Unknown domain pack",
        f"no domain pack named {name_or_path!r} (and no pack.toml in that folder)",
        f"Packaged packs: {', '.join(available()) or 'none'}; or give the path of a folder with a pack.toml.",
    )


def _strs(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PreceptorError("Invalid domain pack", f"{where} must be a list of strings", "See preceptor/prompts/domains/__init__.py.")
    return tuple(value)


def group_columns(name_or_path: str = "pharma") -> tuple[str, ...]:
    """The pack's ``[import] group_columns``: file columns that name the unit a split must keep
    together (a drug), tried by every import. Reads only pack.toml (no lexicons)."""
    conf_path = _pack_dir(name_or_path) / "pack.toml"
    try:
        conf = tomllib.loads(conf_path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise PreceptorError("Invalid domain pack", f"{conf_path}: {exc}", "Fix the TOML syntax at that line.")
    cols = (conf.get("import") or {}).get("group_columns") or []
    if not isinstance(cols, list) or not all(isinstance(c, str) for c in cols):
        raise PreceptorError("Invalid domain pack", f"{conf_path}: [import] group_columns must be a list of column names",
                             'Write e.g. group_columns = ["drug", "ingredient"].')
    return tuple(c.lower() for c in cols)


def load(name_or_path: str = "pharma") -> DomainPack:
    """Load (once per process) a packaged pack by name, or a pack folder by path."""
    return _load(str(_pack_dir(name_or_path)))


@functools.lru_cache(maxsize=8)
def _load(root_s: str) -> DomainPack:
    root = Path(root_s)
    conf_path = root / "pack.toml"
    try:
        conf = tomllib.loads(conf_path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise PreceptorError("Invalid domain pack", f"{conf_path}: {exc}", "Fix the TOML syntax at that line.")
    lexicons = conf.get("lexicons") or {}
    if not isinstance(lexicons, dict) or not lexicons:
        raise PreceptorError("Invalid domain pack", f"{conf_path}: [lexicons] is missing or empty", "Name at least one lexicon file: kind = \"file.tsv\".")
    facets = {k: _strs(v, f"{conf_path}: facets.{k}") for k, v in (conf.get("facets") or {}).items()}
    key_kinds = _strs((conf.get("key_terms") or {}).get("kinds", list(lexicons)), f"{conf_path}: key_terms.kinds")
    tri = conf.get("triples")
    spec = None
    if tri:
        spec = TripleSpec(
            subject=_strs(tri.get("subject", []), f"{conf_path}: triples.subject"),
            relation=str(tri.get("relation", "")),
            object=_strs(tri.get("object", []), f"{conf_path}: triples.object"),
            negations=frozenset(w.casefold() for w in _strs(tri.get("negations", []), f"{conf_path}: triples.negations")),
            passive_marker=str(tri.get("passive_marker", "")).casefold(),
            pronouns=tuple(tokenize(p).folded for p in _strs(tri.get("pronouns", []), f"{conf_path}: triples.pronouns")),
            object_prepositions=frozenset(w.casefold() for w in _strs(tri.get("object_prepositions", []), f"{conf_path}: triples.object_prepositions")),
        )
    pack = DomainPack(
        name=str(conf.get("name", root.name)), version=str(conf.get("version", "0")),
        description=str(conf.get("description", "")), language=str(conf.get("language", "en")), root=root,
        facets=facets, key_term_kinds=key_kinds, triples=spec,
        gold_files={k: str(v) for k, v in (conf.get("gold") or {}).items()},
    )
    used = {k for kinds in facets.values() for k in kinds} | set(key_kinds)
    if spec:
        used |= {*spec.subject, spec.relation, *spec.object}
    missing = sorted(used - set(lexicons))
    if missing:
        raise PreceptorError("Invalid domain pack", f"{conf_path}: kind {missing[0]!r} is used but has no lexicon", "Add it under [lexicons].")
    for kind, fname in sorted(lexicons.items()):
        path = root / str(fname)
        if not path.is_file():
            raise PreceptorError("Invalid domain pack", f"{conf_path}: lexicons.{kind} = {fname!r} does not exist", f"Create {path}.")
        with path.open(encoding="utf-8", newline="") as fh:
            reader = csv.reader(fh, delimiter="\t")
            header = next(reader, None)
            if header != ["id", "group", "form", "terms"]:
                raise PreceptorError("Invalid domain pack", f"{path}:1: header must be id, group, form, terms (tab-separated)", "Rebuild the pack.")
            for lineno, row in enumerate(reader, start=2):
                if len(row) != 4:
                    raise PreceptorError("Invalid domain pack", f"{path}:{lineno}: expected 4 tab-separated fields, got {len(row)}", "Rebuild the pack.")
                entry = Entry(kind, row[0], row[1], row[2])
                for term in row[3].split("|"):
                    pack.add_term(entry, term)
    return pack
