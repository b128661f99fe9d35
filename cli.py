"""The ``ipt`` command line. Heavy modules are imported inside commands so ``ipt --help``
stays fast; every command builds what it needs from ``ctx.obj`` (the ``App``) and calls
one function of the library.

Exit status: 0 done; 1 refused or invalid data (one line on stderr per problem, no
traceback, nothing written); 2 usage error.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from ipt_workflow.rulefiles import Rulebook

F = TypeVar("F", bound=Callable[..., Any])


class App:
    """Settings read once, and the things built from them on first use."""

    def __init__(self, rules_dir: str | None) -> None:
        self.rules_dir = Path(rules_dir) if rules_dir else None

    @cached_property
    def rules(self) -> Rulebook:
        from ipt_workflow.rulefiles import load_rules

        return load_rules(self.rules_dir)


class IptGroup(click.Group):
    """Turns the engine's own errors into one line each on stderr and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        from_engine: tuple[type[BaseException], ...]
        try:
            from ipt_workflow.errors import IptError

            from_engine = (IptError,)
        except ImportError:  # pragma: no cover - the package is always installed with the CLI
            from_engine = ()
        try:
            return super().invoke(ctx)
        except from_engine as exc:
            for line in str(exc).splitlines() or ["error"]:
                click.echo(f"error: {line}", err=True)
            ctx.exit(1)


def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(f)


def emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


@click.group(cls=IptGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--rules",
    "rules_dir",
    envvar="IPT_RULES",
    metavar="DIR",
    help="Directory of protocol files and clinic.yaml (env IPT_RULES; default: built-in rules/).",
)
@click.version_option(package_name="ipt-workflow", prog_name="ipt")
@click.pass_context
def cli(ctx: click.Context, rules_dir: str | None) -> None:
    """ipt-workflow: scheduling and workflow for courses of Interpersonal Psychotherapy."""
    ctx.obj = App(rules_dir)


# ---------------------------------------------------------------- protocols


@cli.group()
def protocols() -> None:
    """The protocols loaded from the rules directory."""


@protocols.command("list")
@json_option
@click.pass_obj
def protocols_list(app: App, as_json: bool) -> None:
    """List every protocol with its sessions and phases."""
    from ipt_workflow.views import protocol_summary

    rows = [protocol_summary(p) for _, p in sorted(app.rules.protocols.items())]
    if as_json:
        emit_json(rows)
        return
    from ipt_workflow.render import print_protocols

    print_protocols(rows)


@protocols.command("show")
@click.argument("protocol_id", metavar="ID")
@json_option
@click.pass_obj
def protocols_show(app: App, protocol_id: str, as_json: bool) -> None:
    """Show one protocol: sessions, phases, reminders, guards and rules."""
    from ipt_workflow.views import protocol_json

    data = protocol_json(app.rules.protocol(protocol_id))
    if as_json:
        emit_json(data)
        return
    from ipt_workflow.render import print_protocol

    print_protocol(data, str(app.rules.sources.get(protocol_id, "")))


# ---------------------------------------------------------------- rules


@cli.group()
def rules() -> None:
    """Rule files: check them before you use them."""


@rules.command("check")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@json_option
@click.pass_obj
def rules_check(app: App, paths: tuple[Path, ...], as_json: bool) -> None:
    """Check rule files (default: the rules directory). Exit 1 if any is invalid."""
    from ipt_workflow.rulefiles import builtin_rules_dir, check_paths

    targets = list(paths) or [app.rules_dir or builtin_rules_dir()]
    missing = [str(p) for p in targets if not p.exists()]
    ok, bad = check_paths([p for p in targets if p.exists()])
    bad = [f"{m}: (file): no such file or directory" for m in missing] + bad
    if as_json:
        emit_json({"ok": ok, "problems": bad})
    else:
        for name in ok:
            click.echo(f"ok {name}")
        for line in bad:
            click.echo(f"error: {line}", err=True)
    if bad:
        sys.exit(1)


# ---------------------------------------------------------------- diagram


@cli.command()
@click.option("--protocol", "protocol_id", default="ipt-16", show_default=True, metavar="ID")
@click.option("--format", "fmt", type=click.Choice(["mermaid", "dot"]), default="mermaid", show_default=True)
@click.pass_obj
def diagram(app: App, protocol_id: str, fmt: str) -> None:
    """Draw the lifecycle of a protocol (Mermaid stateDiagram-v2 or Graphviz dot)."""
    from ipt_workflow.diagram import draw

    click.echo(draw(app.rules.protocol(protocol_id), fmt))


# ---------------------------------------------------------------- simulate


@cli.command()
@click.option("--protocol", "protocol_id", required=True, metavar="ID", help="Protocol id, e.g. ipt-16.")
@click.option("--start", required=True, metavar="DATE", help="Date of the first session (YYYY-MM-DD).")
@click.option("--time", "slot", required=True, metavar="HH:MM", help="Local time of the weekly slot.")
@click.option("--tz", required=True, metavar="ZONE", help="IANA time zone, e.g. Europe/London.")
@click.option("--events", "events_file", type=click.Path(path_type=Path), metavar="FILE",
              help="YAML or JSON list of {at, event, data}.")  # fmt: skip
@click.option("--id", "course_id", default="sim", show_default=True, help="Course id to simulate with.")
@click.option("--now", metavar="ISO", help="End the run at this instant (reminders due by then count as sent).")
@json_option
@click.pass_obj
def simulate(
    app: App,
    protocol_id: str,
    start: str,
    slot: str,
    tz: str,
    events_file: Path | None,
    course_id: str,
    now: str | None,
    as_json: bool,
) -> None:
    """Run one course through a list of events with no store, and print the result."""
    from ipt_workflow import simulation
    from ipt_workflow.errors import InvalidInput
    from ipt_workflow.planner import slot_warnings
    from ipt_workflow.views import history_json, reminder_json, session_json
    from ipt_workflow.wallclock import parse_date, parse_instant, parse_time, zone

    try:
        zone_info = zone(tz)
    except InvalidInput as exc:
        raise InvalidInput(f"--tz: {exc}") from None
    start_date = parse_date(start, "--start")
    slot_time = parse_time(slot, "--time")
    end = parse_instant(now, zone_info, "--now") if now else None
    rules = app.rules
    protocol = rules.protocol(protocol_id)
    events: list[simulation.SimulationEvent] = []
    if events_file is not None:
        raw = read_data_file(events_file)
        try:
            events = simulation.parse_events(raw, tz)
        except InvalidInput as exc:
            raise InvalidInput(f"{events_file}: {exc}") from None
    from ipt_workflow.errors import IptError

    try:
        result = simulation.simulate(
            protocol, rules.clinic, start=start_date, slot=slot_time, timezone=tz,
            events=events, course_id=course_id, now=end,
        )  # fmt: skip
    except IptError as exc:
        if events_file is not None:
            exc.args = (f"{events_file}: {exc}",)  # say which file as well as which entry
        raise
    for warning in slot_warnings(result.course, rules.clinic):
        click.echo(f"warning: {warning}", err=True)
    data = {
        "id": result.course.id,
        "protocol": protocol.id,
        "protocol_version": protocol.version,
        "state": result.course.state.value,
        "focus": list(result.course.focus),
        "current_focus": result.course.current_focus,
        "sessions": [session_json(s) for s in result.plan.sessions],
        "reminders": [reminder_json(r) for r in result.reminders],
        "history": [history_json(h) for h in result.course.history],
    }
    if as_json:
        emit_json(data)
        return
    from ipt_workflow.render import print_simulation

    print_simulation(data)


def read_data_file(path: Path) -> Any:
    """YAML (safe) or JSON from ``path``; raises InvalidInput naming the file and line."""
    from ipt_workflow.errors import InvalidInput

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise InvalidInput(f"{path}: cannot read: {reason}") from None
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"{path}: line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    from ipt_workflow.errors import RuleFileError
    from ipt_workflow.rulefiles import read_yaml

    try:
        return read_yaml(text, str(path))[1]
    except RuleFileError as exc:
        raise InvalidInput(str(exc)) from None


def main() -> None:
    cli(prog_name="ipt")


if __name__ == "__main__":
    main()
