"""The CEL engine (``common-expression-language``), loaded without its package ``__init__``,
which imports an interactive shell (prompt_toolkit, rich) and costs ~110 ms per process."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from types import ModuleType


def _load() -> ModuleType:
    loaded = sys.modules.get("cel.cel")
    if loaded is not None:
        return loaded
    package = importlib.util.find_spec("cel")
    if package is None or not package.submodule_search_locations:
        raise ImportError("the CEL engine (common-expression-language) is not installed")
    spec = importlib.machinery.PathFinder.find_spec("cel.cel", list(package.submodule_search_locations))
    if spec is None or spec.loader is None:
        import cel  # an unexpected layout: take the package as it is

        return cel
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules["cel.cel"] = module
    return module


cel = _load()
