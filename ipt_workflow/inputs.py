"""Reading what a user hands over: files (regular files only, with a size bound), JSON and
YAML (with bounds on nesting, size and numbers), so a careless or hostile input gets one
line naming it instead of a hang, a traceback or an exhausted machine.

Bounds: ``--data`` at most 64 KiB; an events file at most 4 MiB; both at most 32 levels of
nesting and 100,000 values (YAML aliases count each time they are used); integers at most
4,300 digits (Python's own limit); no control characters in strings.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from .core.errors import InvalidInput, RuleFileError, shown

KiB = 1024
MiB = 1024 * KiB
MAX_DATA_BYTES = 64 * KiB
MAX_EVENTS_BYTES = 4 * MiB
MAX_DEPTH = 32
MAX_VALUES = 100_000


def read_regular_file(path: Path, *, limit: int | None = None, encoding: str = "utf-8") -> str:
    """The text of ``path``; refuses (InvalidInput naming it) anything but a regular file
    (a FIFO would block, a device never end), a file over ``limit`` bytes, bad encoding."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # opening a FIFO must not wait for a writer
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise InvalidInput(f"{path}: not a regular file")
        if limit is not None and info.st_size > limit:
            raise InvalidInput(f"{path}: larger than {_size(limit)} (the bound for this file)")
        try:
            data = f.read() if limit is None else f.read(limit + 1)
        except OSError as exc:
            raise InvalidInput(f"{path}: cannot read: {exc.strerror or exc}") from None
    if limit is not None and len(data) > limit:
        raise InvalidInput(f"{path}: larger than {_size(limit)} (the bound for this file)")
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{path}: cannot read: not {encoding} text (byte {exc.start})") from None


def check_regular_file(path: Path) -> None:
    """Refuse (InvalidInput naming it) a path that is missing or not a regular file, before
    anything else is done; ``read_regular_file`` checks again as it reads."""
    try:
        info = os.stat(path)
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise InvalidInput(f"{path}: not a regular file")


def _size(limit: int) -> str:
    return f"{limit // MiB} MiB" if limit >= MiB else f"{limit // KiB} KiB"


def parse_json(text: str, where: str) -> Any:
    """JSON within the bounds of this module; raises InvalidInput starting with ``where``."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{where}: not JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    except RecursionError:
        raise InvalidInput(f"{where}: nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:
        raise InvalidInput(f"{where}: {_value_error(exc)}") from None
    check_shape(value, where)
    return value


def parse_data_option(text: str, where: str = "--data") -> Any:
    """Event data given on the command line: at most 64 KiB of JSON."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_DATA_BYTES:
        raise InvalidInput(f"{where}: more than {_size(MAX_DATA_BYTES)}")
    return parse_json(text, where)


def load_data_file(path: Path) -> Any:
    """YAML (safe) or JSON (by suffix ``.json``) from a regular file of at most 4 MiB;
    raises InvalidInput naming the file (and line, where the parser says)."""
    text = read_regular_file(path, limit=MAX_EVENTS_BYTES)
    if path.suffix.lower() == ".json":
        return parse_json(text, str(path))
    from .rulebook.files import read_yaml

    try:
        value = read_yaml(text, str(path))[1]
    except RuleFileError as exc:
        if "nesting depth" in str(exc):
            raise InvalidInput(f"{path}: nested deeper than {MAX_DEPTH} levels") from None
        raise InvalidInput(str(exc)) from None
    except RecursionError:
        raise InvalidInput(f"{path}: nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:
        raise InvalidInput(f"{path}: {_value_error(exc)}") from None
    check_shape(value, str(path))
    return value


def _value_error(exc: ValueError) -> str:
    if "digits" in str(exc):
        return "a number has more than 4,300 digits"
    return (str(exc).strip().splitlines() or ["bad value"])[0]


def check_shape(value: Any, where: str) -> None:
    """Refuse data nested deeper than ``MAX_DEPTH``, with more than ``MAX_VALUES`` values (an
    alias bomb is counted as it would be expanded), or with control characters in a string."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    seen = 0
    while stack:
        item, depth = stack.pop()
        seen += 1
        if seen > MAX_VALUES:
            raise InvalidInput(f"{where}: more than {MAX_VALUES:,} values")
        if isinstance(item, dict):
            children = [*item.keys(), *item.values()]
        elif isinstance(item, list):
            children = item
        else:
            if isinstance(item, str) and not item.isprintable():
                raise InvalidInput(f"{where}: a string has a control character ({_first_control(item)})")
            continue
        if depth >= MAX_DEPTH:
            raise InvalidInput(f"{where}: nested deeper than {MAX_DEPTH} levels")
        stack.extend((child, depth + 1) for child in children)


def _first_control(text: str) -> str:
    return shown(next(ch for ch in text if not ch.isprintable()))[1:-1]
