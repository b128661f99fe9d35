"""JSON Schemas (draft 2020-12) of the daemon's output lines, one per event ``type``
(``reminder``, ``alert``, ``digest``), shipped with the package (``ipt schema events``)."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

EVENT_TYPES = ("reminder", "alert", "digest")


def event_schema(event_type: str) -> dict[str, Any]:
    """The schema of one event type; KeyError for another name."""
    if event_type not in EVENT_TYPES:
        raise KeyError(event_type)
    text = resources.files(__package__).joinpath("schemas", f"{event_type}.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def event_schemas() -> dict[str, dict[str, Any]]:
    """Every event type's schema, by type."""
    return {name: event_schema(name) for name in EVENT_TYPES}
