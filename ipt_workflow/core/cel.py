"""The CEL engine (``common-expression-language``), loaded without its package ``__init__``,
which imports an interactive shell (prompt_toolkit, rich) and costs ~110 ms per process;
and the static limits that keep a condition's evaluation cheap (the engine has no cost
limit of its own)."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import re
import sys
from types import ModuleType

#: Longest condition accepted. With comprehensions one level deep, a condition of this size
#: evaluates in a few milliseconds at most.
MAX_CONDITION_LENGTH = 500
_COMPREHENSION = re.compile(r"\.\s*(all|exists_one|exists|map|filter)\s*\(")
_STRING = re.compile(
    r"""[rRbB]{0,2}(?:'''(?:\\.|[^\\])*?'''|\"\"\"(?:\\.|[^\\])*?\"\"\"|'(?:\\.|[^'\\\n])*'|"(?:\\.|[^"\\\n])*")""",
    re.DOTALL,
)
_CLOSE = {")": "(", "]": "[", "}": "{"}


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


def cost_problem(source: str) -> str | None:
    """Why evaluating ``source`` could cost too much, or None. A comprehension (``all``,
    ``exists``, ``exists_one``, ``map``, ``filter``) iterates over a list; one nested in
    another's arguments or applied to another's result multiplies the work (four nested
    over 60 items are 13 million steps), so each may only hold plain expressions."""
    text = _STRING.sub(lambda m: "s" * len(m.group(0)), source)  # string contents are not code
    calls = [(m.start(), m.end() - 1, m.group(1)) for m in _COMPREHENSION.finditer(text)]
    spans = [(_receiver_start(text, dot), _matching(text, paren)) for dot, paren, _ in calls]
    for dot, _, name in calls:
        for (start, end), (other_dot, _, other) in zip(spans, calls, strict=True):
            if other_dot != dot and start <= dot <= end:
                return (
                    f"a comprehension inside another ('{name}' in '{other}'): all, exists, exists_one, "
                    "map and filter may not be nested or chained"
                )
    return None


def _matching(text: str, open_at: int) -> int:
    """The index of the bracket closing the one at ``open_at`` (the end of text if none)."""
    depth = 0
    for i in range(open_at, len(text)):
        if text[i] in "([{":
            depth += 1
        elif text[i] in ")]}":
            depth -= 1
            if depth == 0:
                return i
    return len(text)


def _receiver_start(text: str, dot: int) -> int:
    """Where the operand a ``.name(`` call at ``dot`` applies to begins: the member chain
    before it (names, dots, calls, indexes, literals), read backwards."""
    i = dot
    while True:
        j = i - 1
        while j >= 0 and text[j].isspace():
            j -= 1
        if j < 0:
            return 0
        if text[j] in _CLOSE:
            depth = 0
            while j >= 0:
                if text[j] in _CLOSE:
                    depth += 1
                elif text[j] in "([{":
                    depth -= 1
                    if depth == 0:
                        break
                j -= 1
            i = max(j, 0)
            if i > 0 and (text[i - 1].isalnum() or text[i - 1] in "_.)]}"):  # a call, an index, a member
                if text[i - 1] == ".":
                    i -= 1
                continue
            return i
        if text[j].isalnum() or text[j] == "_":
            while j >= 0 and (text[j].isalnum() or text[j] == "_"):
                j -= 1
            i = j + 1
            k = j
            while k >= 0 and text[k].isspace():
                k -= 1
            if k >= 0 and text[k] == ".":
                i = k
                continue
            return i
        return i
