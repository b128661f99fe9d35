"""Lifecycle diagrams drawn by ``transitions`` from the same table the engine runs.

The session bookkeeping events that never change state (hold, miss, cancel, measure,
focus, extend) are left out of the drawing; they are allowed in every active state.
"""

from __future__ import annotations

from typing import Any

from ..core.events import ALL_STATES
from ..core.lifecycle import lifecycle_for
from ..core.protocol import Protocol


def lifecycle_json(protocol: Protocol) -> dict[str, Any]:
    """``{protocol, version, states, initial, transitions: [{event, from, to, guard}]}``: the
    table the engine runs (``to`` null: the state does not change), with each CEL guard."""
    from ..core.events import TABLE

    return {
        "protocol": protocol.id,
        "version": protocol.version,
        "states": list(ALL_STATES),
        "initial": "intake",
        "transitions": [
            {
                "event": step.event,
                "from": list(step.sources),
                "to": step.dest,
                "guard": (g.source if (g := protocol.guard(step.guard)) is not None else None) if step.guard else None,
            }
            for step in TABLE
        ],
    }


def draw(protocol: Protocol, fmt: str = "mermaid") -> str:
    """The lifecycle of ``protocol`` as Mermaid ``stateDiagram-v2`` or Graphviz dot text."""
    from transitions.extensions import GraphMachine

    machine = lifecycle_for(protocol)
    rows: list[dict[str, Any]] = []
    for row in machine.definition:
        if row["dest"] is None:
            continue
        guarded = any(getattr(c, "__name__", "") == "check" for c in row["conditions"])
        drawn: dict[str, Any] = {"trigger": row["trigger"], "source": row["source"], "dest": row["dest"]}
        if guarded:
            drawn["conditions"] = ["guard"]
        rows.append(drawn)
    graph = GraphMachine(
        states=ALL_STATES,
        transitions=rows,
        initial="intake",
        auto_transitions=False,
        graph_engine="mermaid" if fmt == "mermaid" else "graphviz",
        title=f"{protocol.id} {protocol.version}",
        show_conditions=True,
    )
    diagram = graph.get_graph()
    text = diagram.draw(None) if fmt == "mermaid" else diagram.source
    return str(text).rstrip() + "\n"
