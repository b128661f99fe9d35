"""The dispatcher's re-check, shared by every sink: which of these ids may still go out (not
cancelled meanwhile, still held by this run). A sink asks it right before every attempt
and drops the others."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

StillDue = Callable[[Sequence[str]], Collection[str]]


def everything(ids: Sequence[str]) -> Collection[str]:
    """The re-check of a caller that has none: every id may go out."""
    return ids
