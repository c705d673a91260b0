"""Engine modules other tracks are still building: import them if they are there.

A screen whose engine module is missing shows a clear "not available" note instead of
failing; :func:`engine_module` raises a titled :class:`PreceptorError` saying which.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from preceptor.errors import PreceptorError

WHAT = {
    "preceptor.engine.judge": "expert judging",
    "preceptor.engine.stats": "statistics",
    "preceptor.engine.report": "reports",
    "preceptor.engine.export": "DPO export",
    "preceptor.engine.generate": "generation",
    "preceptor.engine.train.runner": "training runs",
    "preceptor.engine.systems": "system definitions",
}


def engine_module(name: str) -> ModuleType:
    """Import engine module ``name`` or raise a PreceptorError saying the feature is missing."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and (exc.name == name or name.startswith(exc.name + ".")):
            what = WHAT.get(name, name)
            raise PreceptorError(
                "Not available",
                f"{what.capitalize()} is not available in this installation ({name} is missing).",
                "Update preceptor; this part of the engine ships in a later version.",
            ) from None
        raise


def has_module(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False
