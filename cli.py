"""The ``ipt`` command line. Heavy modules are imported inside commands so ``ipt --help``
stays fast; every command builds what it needs from ``ctx.obj`` (the ``App``) and calls
one function of the library.

Exit status: 0 done; 1 refused or invalid data (one line on stderr per problem, no
traceback, nothing written); 2 usage error.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from datetime import datetime, timedelta

    from ipt_workflow.core.policy import ClinicPolicy
    from ipt_workflow.delivery.sinks import Sink
    from ipt_workflow.rulebook.files import Rulebook
    from ipt_workflow.storage.sql import SqlStore

F = TypeVar("F", bound=Callable[..., Any])


class App:
    """Settings read once, and the things built from them on first use."""

    def __init__(self, rules_dir: str | None, db: str | None) -> None:
        self.rules_dir = Path(rules_dir) if rules_dir else None
        self.db = db

    @cached_property
    def rules(self) -> Rulebook:
        from ipt_workflow.rulebook.files import load_rules

        return load_rules(self.rules_dir)

    @cached_property
    def store(self) -> SqlStore:
        """The database for a command that writes: created (empty, mode 0600) if need be."""
        return self._open(create=True)

    @cached_property
    def existing_store(self) -> SqlStore:
        """The database for a command that only reads or changes what is there: a missing
        SQLite file is refused ("no database at PATH"), never created."""
        return self._open(create=False)

    def light_store(self, create: bool) -> SqlStore:
        """``store`` (``create``) or ``existing_store`` for ``course create`` and ``course
        event``: on an SQLite file at the current schema, without SQLAlchemy (``storage.lite``)."""
        return self._open(create, light=True)

    def _open(self, create: bool, light: bool = False) -> SqlStore:
        from ipt_workflow.bootstrap import light_store_for, store_for

        store = (light_store_for if light else store_for)(self.db, create=create)
        click.get_current_context().call_on_close(store.close)
        store.ensure_schema()
        return store

    def now(self, text: str | None) -> datetime:
        """``--now`` read as an instant (naive: UTC), else the clock."""
        from ipt_workflow.bootstrap import utc_now
        from ipt_workflow.core.wallclock import parse_instant

        return parse_instant(text, None, "--now") if text else utc_now()


class IptCommand(click.Command):
    """Refuses control characters in every option and argument (exit 1, one line that names
    the option and never repeats the value), so no message can be split or carry them.
    ``--data`` is JSON, where a newline is only white space; its strings are checked after."""

    def invoke(self, ctx: click.Context) -> Any:
        for param in self.params:
            values = ctx.params.get(param.name or "")
            for value in values if isinstance(values, tuple) else (values,):
                if param.name != "data_text" and isinstance(value, str | Path) and not str(value).isprintable():
                    from ipt_workflow.core.errors import InvalidInput, shown

                    bad = next(ch for ch in str(value) if not ch.isprintable())
                    raise InvalidInput(f"{_param_name(param)}: control characters are not allowed ({shown(bad)[1:-1]})")
        try:
            return super().invoke(ctx)
        except Exception as exc:
            from ipt_workflow.core.errors import IptError

            if isinstance(exc, IptError):
                setattr(exc, OPTION_LINES, option_lines(exc, option_names(ctx)))
            raise


def _param_name(param: click.Parameter) -> str:
    return param.opts[0] if isinstance(param, click.Option) else param.human_readable_name


OPTION_LINES = "_ipt_option_lines"
#: Library parameters whose option is not spelled after them.
LIBRARY_OPTIONS = {"url": "--db"}


def option_names(ctx: click.Context) -> dict[str, str]:
    """Each library parameter name a command's options stand for, to the option: ``start`` ->
    ``--from`` (``ipt reminders --from``), ``course_id`` -> ``--id``, ``time`` -> ``--time``;
    the options of the command and of the groups above it."""
    chain: list[click.Context] = []
    c: click.Context | None = ctx
    while c is not None:
        chain.append(c)
        c = c.parent
    names = dict(LIBRARY_OPTIONS)
    for each in reversed(chain):  # the command's own options win over its groups'
        for param in each.command.params:
            if isinstance(param, click.Option):
                for key in {param.name or "", *(o.lstrip("-").replace("-", "_") for o in param.opts)} - {""}:
                    names[key] = param.opts[0]
    return names


def option_lines(exc: Exception, names: dict[str, str]) -> list[str]:
    """The lines of a library error, saying the options instead of the library's parameter
    names: the name a line starts with (``start: ...``) and those the error ``names``."""
    import re

    lines = []
    mentioned = [n for n in getattr(exc, "names", ()) if n in names]
    for line in str(exc).split("\n"):
        head, sep, rest = line.partition(": ")
        if sep and head in names:
            line = f"{names[head]}{sep}{rest}"
        for name in mentioned:
            line = re.sub(rf"(?<![\w-]){re.escape(name)}(?![\w-])", names[name], line)
        lines.append(line)
    return lines


class IptGroup(click.Group):
    """Turns the engine's own errors into one line each on stderr and exit status 1; a
    database failure that escaped the store is one line too (never its SQL or parameters)."""

    command_class = IptCommand
    group_class = type  # subgroups are IptGroups

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as exc:
            from ipt_workflow.core.errors import IptError

            if not isinstance(exc, IptError) and not _database_failure(exc):
                raise
            lines = getattr(exc, OPTION_LINES, None) or str(exc).split("\n")
            for line in lines if isinstance(exc, IptError) else [_database_line(exc)]:
                click.echo(f"error: {_printable(line)}", err=True)
            ctx.exit(1)


def _database_failure(exc: BaseException) -> bool:
    """An error of SQLAlchemy or of a database driver."""
    return type(exc).__module__.split(".")[0] in ("sqlalchemy", "sqlite3", "psycopg")


def _database_line(exc: BaseException) -> str:
    from ipt_workflow.storage.engine import database_error

    return str(database_error(exc, "(the --db database)"))


def _printable(line: str) -> str:
    """One line fit for a terminal: every control character escaped."""
    from ipt_workflow.core.errors import shown

    return line if line.isprintable() else shown(line)[1:-1]


class Reference(click.ParamType[str]):
    """A course id, client reference or therapist id: 1-64 letters, digits, '.', '_', ':' or
    '-', starting with a letter or digit. A bad one is refused with exit 1 (it is data), and a
    client reference is never repeated in the message."""

    name = "id"

    def __init__(self, echo: bool = True) -> None:
        self.echo = echo

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        from ipt_workflow.core.references import check_reference

        return check_reference(str(value), _param_name(param) if param else "ID", echo=self.echo)


ID = Reference()
CLIENT = Reference(echo=False)


NOW_HELP = "Act as if it were this instant (ISO 8601; without an offset: UTC)."
PROTOCOL_HELP = "Protocol id (its highest version), or ID@VERSION, e.g. ipt-16@1.0.0."


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
@click.option(
    "--db",
    envvar="IPT_DB",
    metavar="URL|PATH",
    help="postgresql:// URL, sqlite:/// URL or SQLite file (env IPT_DB; default: the user data directory).",
)
@click.version_option(package_name="ipt-workflow", prog_name="ipt")
@click.pass_context
def cli(ctx: click.Context, rules_dir: str | None, db: str | None) -> None:
    """ipt-workflow: scheduling and workflow for courses of Interpersonal Psychotherapy."""
    ctx.obj = App(rules_dir, db)


# ---------------------------------------------------------------- protocols


@cli.group()
def protocols() -> None:
    """The protocols loaded from the rules directory."""


@protocols.command("list")
@json_option
@click.pass_obj
def protocols_list(app: App, as_json: bool) -> None:
    """List every version of every protocol with its sessions and phases (``default``: the
    version new courses take)."""
    from ipt_workflow.present.views import protocol_summary

    defaults = app.rules.protocols
    rows = [{**protocol_summary(p), "default": defaults[p.id] is p} for p in app.rules.all_protocols()]
    if as_json:
        emit_json(rows)
        return
    from ipt_workflow.present.tables import print_protocols

    print_protocols(rows)


@protocols.command("show")
@click.argument("protocol_id", metavar="ID[@VERSION]")
@json_option
@click.option("--format", "fmt", type=click.Choice(["table", "json", "fhir"]), default=None,
              help="table (default), json (as --json) or fhir (a FHIR R4 PlanDefinition).")  # fmt: skip
@click.pass_obj
def protocols_show(app: App, protocol_id: str, as_json: bool, fmt: str | None) -> None:
    """Show one protocol (ID: its highest version; ID@VERSION: that one): sessions, phases,
    reminders, guards and rules."""
    from ipt_workflow.present.views import protocol_json

    protocol = app.rules.named(protocol_id)
    if fmt == "fhir":
        from ipt_workflow.interop.fhir import plan_definition

        emit_json(plan_definition(protocol, app.rules.clinic.fhir))
        return
    data = protocol_json(protocol)
    if as_json or fmt == "json":
        emit_json(data)
        return
    from ipt_workflow.present.tables import print_protocol

    print_protocol(data, str(app.rules.files.get((protocol.id, protocol.version), "")))


@cli.group()
def schema() -> None:
    """JSON Schemas of what ipt-workflow emits."""


@schema.command("events")
@click.option("--type", "event_type", type=click.Choice(["reminder", "alert", "digest"]),
              help="One event type's schema (default: all, by type).")  # fmt: skip
def schema_events(event_type: str | None) -> None:
    """Print the JSON Schema (draft 2020-12) of each daemon output line type."""
    from ipt_workflow.interop.event_schemas import event_schema, event_schemas

    emit_json(event_schema(event_type) if event_type else event_schemas())


# ---------------------------------------------------------------- rules


@cli.group()
def rules() -> None:
    """Rule files: check them before you use them."""


@rules.command("check")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@json_option
@click.pass_obj
def rules_check(app: App, paths: tuple[Path, ...], as_json: bool) -> None:
    """Check rule files (default: the rules directory). Exit 1 if any is invalid. For each
    directory, list every protocol version and the clinic policy it gives (over the built-in
    rules), with the file each came from."""
    from ipt_workflow.rulebook.files import builtin_rules_dir, check_paths, rules_listing

    targets = list(paths) or [app.rules_dir or builtin_rules_dir()]
    missing = [str(p) for p in targets if not p.exists()]
    ok, bad = check_paths([p for p in targets if p.exists()])
    bad = [f"{m}: (file): no such file or directory" for m in missing] + bad
    listings = [rules_listing(p) for p in targets if p.is_dir()]
    if as_json:
        emit_json({"ok": ok, "problems": bad, "rules": listings})
    else:
        for name in ok:
            click.echo(f"ok {name}")
        for listing in listings:
            for p in listing["protocols"]:
                default = " (default)" if p["default"] else ""
                click.echo(f"protocol {p['id']} {p['version']}{default}: {p['source']}")
            if listing["clinic"]["source"]:
                click.echo(f"clinic policy: {listing['clinic']['source']}")
        for line in bad:
            click.echo(f"error: {line}", err=True)
    if bad:
        sys.exit(1)


@rules.command("migrate")
@click.option("--protocol", "protocol_id", required=True, metavar="ID", help="The protocol whose courses move.")
@click.option("--to", "version", required=True, metavar="VERSION", help="The version they move onto.")
@click.option("--course", "course_ids", multiple=True, type=ID, metavar="ID",
              help="Only this course (repeatable); default: every running course of the protocol.")  # fmt: skip
@click.option("--dry-run", is_flag=True, help="Print what would change; write nothing.")
@click.option("--now", metavar="ISO", help=NOW_HELP)
@json_option
@click.pass_obj
def rules_migrate(
    app: App, protocol_id: str, version: str, course_ids: tuple[str, ...], dry_run: bool, now: str | None,
    as_json: bool,
) -> None:  # fmt: skip
    """Move running courses (active or paused) onto another version of their protocol: state and
    history kept, plan and reminders recomputed, one transaction per course. Prints what changes
    per course; a course the version cannot take is refused with the reason and left as it was."""
    from ipt_workflow import rulechanges

    rules = app.rules
    rulechanges.target_version(rules, protocol_id, version)  # before the database is opened
    report = rulechanges.migrate(app.existing_store, rules, protocol_id, version, app.now(now),
                                 list(course_ids) or None, dry_run)  # fmt: skip
    _print_changes(report, as_json)


@cli.command("replan")
@click.option("--course", "course_ids", multiple=True, type=ID, metavar="ID",
              help="Only this course (repeatable); default: every running course planned under other "
                   "rules.")  # fmt: skip
@click.option("--dry-run", is_flag=True, help="Print what would change; write nothing.")
@click.option("--now", metavar="ISO", help=NOW_HELP)
@json_option
@click.pass_obj
def replan_command(app: App, course_ids: tuple[str, ...], dry_run: bool, now: str | None, as_json: bool) -> None:
    """Apply the rules in force (a changed clinic policy: leads, quiet hours, holidays, closures,
    buffer, attendance) to running courses whose plans were made under other rules; prints per
    course the sessions moved and the reminders added, cancelled and moved, compared with the
    plan as stored. One transaction per course."""
    from ipt_workflow import rulechanges

    rules = app.rules
    report = rulechanges.replan(app.existing_store, rules, app.now(now), list(course_ids) or None, dry_run)
    _print_changes(report, as_json)


def _print_changes(report: Any, as_json: bool) -> None:
    """A replan's or migration's report: JSON, or a block per course and a summary line."""
    if as_json:
        emit_json(report.json())
        return
    from datetime import datetime

    from ipt_workflow.core.calendar import local_text
    from ipt_workflow.core.wallclock import zone

    would = {"migrated": "would migrate", "replanned": "would replan"}
    lines: list[str] = []
    add = lines.append
    for c in report.courses:

        def local(text: str, tz: str = c.timezone) -> str:
            return local_text(datetime.fromisoformat(text).astimezone(zone(tz)))

        verb = would.get(c.status, c.status) if report.dry_run else c.status
        target = f" -> {c.to}" if c.to and c.to != c.version else ""
        reason = f": {c.reason}" if c.reason else ""
        add(f"{c.course} ({c.protocol} {c.version}{target}): {verb}{reason}")
        for s in c.sessions_added:
            add(f"  session {s['number']} added: {local(s['start'])}")
        for s in c.sessions_removed:
            add(f"  session {s['number']} removed: {local(s['start'])}")
        for s in c.sessions_moved:
            add(f"  session {s['number']} moved: {local(s['from'])} -> {local(s['to'])}")
        for r in c.reminders_added:
            add(f"  reminder added: {r['kind']} session {r['session']} due {r['due']} ({r['id']})")
        for r in c.reminders_cancelled:
            add(f"  reminder cancelled: {r['kind']} session {r['session']} due {r['due']} ({r['id']})")
        for r in c.reminders_moved:
            add(f"  reminder moved: {r['kind']} session {r['session']} due {r['from']} -> {r['to']} ({r['id']})")
        if len(lines) >= 10_000:  # written in blocks: a line at a time is most of the time for 100,000 courses
            click.echo("\n".join(lines))
            lines.clear()
    if lines:
        click.echo("\n".join(lines))
    counts = report.counts()
    done = [f"{counts[k]} {k}" for k in ("migrated", "replanned", "unchanged", "refused") if counts[k]]
    prefix = "dry run (nothing written): " if report.dry_run else ""
    click.echo(prefix + (", ".join(done) or "no course to change"))


# ---------------------------------------------------------------- diagram


@cli.command()
@click.option(
    "--protocol", "protocol_id", default="ipt-16", show_default=True, metavar="ID[@VERSION]", help=PROTOCOL_HELP
)
@click.option("--format", "fmt", type=click.Choice(["mermaid", "dot"]), default="mermaid", show_default=True)
@json_option
@click.pass_obj
def diagram(app: App, protocol_id: str, fmt: str, as_json: bool) -> None:
    """Draw the lifecycle of a protocol (Mermaid stateDiagram-v2 or Graphviz dot); with --json,
    its states and transitions as data, with the drawing."""
    from ipt_workflow.present.diagram import draw, lifecycle_json

    protocol = app.rules.named(protocol_id)
    text = draw(protocol, fmt)
    if as_json:
        emit_json({**lifecycle_json(protocol), "format": fmt, "diagram": text})
        return
    click.echo(text)


# ---------------------------------------------------------------- simulate


@cli.command()
@click.option("--protocol", "protocol_id", metavar="ID[@VERSION]", help=PROTOCOL_HELP + " Required without --group.")
@click.option("--start", metavar="DATE", help="Date of the first session (YYYY-MM-DD). Required without --group.")
@click.option("--time", "slot", metavar="HH:MM", help="Local time of the weekly slot. Required without --group.")
@click.option("--tz", metavar="ZONE", help="IANA time zone, e.g. Europe/London. Required without --group.")
@click.option("--events", "events_file", type=click.Path(path_type=Path), metavar="FILE",
              help="YAML or JSON list of {at, event, data}.")  # fmt: skip
@click.option("--group", "group_file", type=click.Path(path_type=Path), metavar="FILE",
              help="Run a group instead: YAML or JSON {protocol, start, time, tz, members, events}.")  # fmt: skip
@click.option("--id", "course_id", type=ID, default="sim", show_default=True, help="Course id to simulate with.")
@click.option("--now", metavar="ISO", help="End the run at this instant (reminders due by then count as sent).")
@json_option
@click.pass_obj
def simulate(
    app: App,
    protocol_id: str | None,
    start: str | None,
    slot: str | None,
    tz: str | None,
    events_file: Path | None,
    group_file: Path | None,
    course_id: str,
    now: str | None,
    as_json: bool,
) -> None:
    """Run one course (or a group: --group) through a list of events with no store, and print the result."""
    if group_file is not None:
        given = [name for name, value in (("--protocol", protocol_id), ("--start", start), ("--time", slot),
                                          ("--tz", tz), ("--events", events_file)) if value is not None]  # fmt: skip
        if given:
            raise click.UsageError(f"{given[0]} is not taken with --group (the group file says it)")
        simulate_group(app, group_file, now, as_json)
        return
    missing = next((n for n, v in (("--protocol", protocol_id), ("--start", start), ("--time", slot), ("--tz", tz))
                    if v is None), None)  # fmt: skip
    if missing is not None:
        raise click.UsageError(f"Missing option '{missing}' (or give --group FILE).")
    assert protocol_id is not None and start is not None and slot is not None and tz is not None
    from ipt_workflow import simulation
    from ipt_workflow.core.errors import InvalidInput
    from ipt_workflow.core.planner import slot_warnings
    from ipt_workflow.core.wallclock import parse_date, parse_instant, parse_time, zone
    from ipt_workflow.present.views import history_json, reminder_json, session_json

    try:
        zone_info = zone(tz)
    except InvalidInput as exc:
        raise InvalidInput(f"--tz: {exc}") from None
    start_date = parse_date(start, "--start")
    slot_time = parse_time(slot, "--time")
    end = parse_instant(now, zone_info, "--now") if now else None
    rules = app.rules
    protocol = rules.named(protocol_id)
    events: list[simulation.SimulationEvent] = []
    if events_file is not None:
        from ipt_workflow.inputs import load_data_file

        raw = load_data_file(events_file)
        try:
            events = simulation.parse_events(raw, tz)
        except InvalidInput as exc:
            raise InvalidInput(f"{events_file}: {exc}") from None
    from ipt_workflow.core.errors import IptError

    try:
        result = simulation.simulate(
            protocol, rules.clinic, start=start_date, time=slot_time, tz=tz,
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
    from ipt_workflow.present.tables import print_simulation

    print_simulation(data, tz)


def simulate_group(app: App, group_file: Path, now: str | None, as_json: bool) -> None:
    """``ipt simulate --group FILE``: the group and its members after the file's events."""
    from ipt_workflow import simulation
    from ipt_workflow.core.errors import InvalidInput, IptError
    from ipt_workflow.core.wallclock import parse_instant, zone
    from ipt_workflow.inputs import load_data_file
    from ipt_workflow.present.views import history_json, reminder_json, session_json

    raw = load_data_file(group_file)
    try:
        spec = simulation.parse_group(raw, "group")
    except InvalidInput as exc:
        raise InvalidInput(f"{group_file}: {exc}") from None
    if now is not None:
        from dataclasses import replace

        spec = replace(spec, now=parse_instant(now, zone(spec.timezone), "--now"))
    rules = app.rules
    protocol = rules.named(spec.protocol)
    try:
        result = simulation.simulate_group(protocol, rules.clinic, spec)
    except IptError as exc:
        exc.args = (f"{group_file}: {exc}",)
        raise
    from ipt_workflow.core.groups import attendance

    who = attendance(result.group)
    data = {
        "group": {
            "id": result.group.id,
            "protocol": protocol.id,
            "protocol_version": protocol.version,
            "therapist": result.group.therapist,
            "timezone": result.group.timezone,
            "state": result.group.state.value,
            "min": result.group.min,
            "max": result.group.max,
            "sessions": [
                {
                    **{k: v for k, v in session_json(s).items() if k in ("number", "start", "end", "status")},
                    "present": who.get(s.number, ([], []))[0],
                    "absent": who.get(s.number, ([], []))[1],
                }
                for s in result.sessions
            ],
        },
        "members": [
            {
                "id": m.course.id,
                "state": m.course.state.value,
                "sessions": [session_json(s) for s in m.plan.sessions],
                "reminders": [reminder_json(r) for r in m.reminders],
                "history": [history_json(h) for h in m.course.history],
            }
            for m in result.members
        ],
    }
    if as_json:
        emit_json(data)
        return
    from ipt_workflow.present.tables import print_group_simulation

    print_group_simulation(data)


# ---------------------------------------------------------------- courses

ALLOW_CLASH_HELP = "Book even over another session of the therapist, with a schedule_conflict alert."
MAX_LIMIT = 1_000_000_000  # integer options have a stated range: a huge one is a usage error
MAX_VERSION = 2**31 - 1


@cli.group()
def course() -> None:
    """Courses in the database: create, list, show, record events."""


@course.command("create")
@click.option(
    "--client", type=CLIENT, required=True, metavar="REF", help="Pseudonymous client reference (never a name)."
)
@click.option("--start", required=True, metavar="DATE", help="Date of the first session (YYYY-MM-DD).")
@click.option("--time", "slot", required=True, metavar="HH:MM", help="Local time of the weekly slot.")
@click.option("--tz", required=True, metavar="ZONE", help="IANA time zone, e.g. Europe/London.")
@click.option(
    "--protocol", "protocol_id", default="ipt-16", show_default=True, metavar="ID[@VERSION]", help=PROTOCOL_HELP
)
@click.option("--therapist", type=ID, default="unassigned", show_default=True, metavar="ID")
@click.option("--id", "course_id", type=ID, metavar="ID", help="Course id (default: a new random id).")
@click.option("--allow-clash", is_flag=True, help=ALLOW_CLASH_HELP)
@click.option("--now", metavar="ISO", help=NOW_HELP)
@json_option
@click.pass_obj
def course_create(
    app: App, client: str, start: str, slot: str, tz: str, protocol_id: str, therapist: str,
    course_id: str | None, allow_clash: bool, now: str | None, as_json: bool,
) -> None:  # fmt: skip
    """Create a course with its plan and reminders; print its id (the course with --json)."""
    from ipt_workflow import services

    rules, clock = app.rules, app.now(now)
    course_, plan_ = services.build_course(  # checked in full before a database file is made
        rules, client=client, start=start, time=slot, tz=tz, now=clock,
        protocol_id=protocol_id, therapist=therapist, course_id=course_id,
    )  # fmt: skip
    created = services.store_course(app.light_store(True), rules, course_, plan_, clock, allow_clash=allow_clash)
    for warning in created.warnings:
        click.echo(f"warning: {warning}", err=True)
    if as_json:
        from ipt_workflow.present.views import course_json

        emit_json(course_json(created.course, created.plan))
    else:
        click.echo(created.course.id)


@course.command("list")
@click.option(
    "--state",
    type=click.Choice(
        ["intake", "assessment", "intervention", "retargeting", "termination", "completed", "paused", "withdrawn"]
    ),
)
@click.option("--therapist", type=ID, metavar="ID")
@json_option
@click.pass_obj
def course_list(app: App, state: str | None, therapist: str | None, as_json: bool) -> None:
    """List courses, by id."""
    rows = app.existing_store.courses(state, therapist)
    if as_json:
        emit_json([{**r, "created_at": r["created_at"].isoformat()} for r in rows])
        return
    from ipt_workflow.present.tables import print_course_list

    print_course_list(rows)


@course.command("show")
@click.argument("course_id", type=ID, metavar="ID")
@json_option
@click.pass_obj
def course_show(app: App, course_id: str, as_json: bool) -> None:
    """Show one course: state, focus, sessions, measurements and history."""
    from ipt_workflow.bootstrap import database_url
    from ipt_workflow.storage.reads import course_document

    data = course_document(database_url(app.db), course_id)
    if data is None:  # stored before plans were kept with courses: ask the planner
        from ipt_workflow import services
        from ipt_workflow.present.views import course_json

        data = course_json(*services.show(app.existing_store, app.rules, course_id))
    if as_json:
        emit_json(data)
        return
    from ipt_workflow.present.tables import print_course

    print_course(data)


@course.command("event")
@click.argument("course_id", type=ID, metavar="ID")
@click.argument("event")
@click.option("--at", metavar="ISO", help="When it happened (default: now); without an offset: the course's zone.")
@click.option("--data", "data_text", metavar="JSON", help="Event data as a JSON object, e.g. for record_measure.")
@click.option("--expected-version", "--expect-version", "expected_version", type=click.IntRange(1, MAX_VERSION),
              metavar="N", help="Refuse (exit 1) unless the course is at version N.")  # fmt: skip
@click.option("--now", metavar="ISO", help=NOW_HELP)
@json_option
@click.pass_obj
def course_event(
    app: App, course_id: str, event: str, at: str | None, data_text: str | None,
    expected_version: int | None, now: str | None, as_json: bool,
) -> None:  # fmt: skip
    """Record EVENT on a course (one transaction); print the new state."""
    from ipt_workflow import services
    from ipt_workflow.core.wallclock import parse_instant, zone

    data = None
    if data_text is not None:
        from ipt_workflow.inputs import parse_data_option

        data = parse_data_option(data_text)
    clock = app.now(now)
    when = clock
    store = app.light_store(False)
    if at:
        current = store.load(course_id)
        when = parse_instant(at, zone(current.timezone), "--at")
    applied = services.apply_event(store, app.rules, course_id, event, when, clock, data, expected_version)
    if as_json:
        from ipt_workflow.present.views import course_json

        emit_json(course_json(applied.course, applied.plan))
        return
    c = applied.course
    added = ", ".join(sorted({r.kind for r in applied.effects.added})) or "none"
    click.echo(
        f"{c.id}: {applied.effects.history[0].from_.value if applied.effects.history[0].from_ else ''} -> "
        f"{c.state.value} (version {c.version}); reminders added {len(applied.effects.added)} ({added}), "
        f"cancelled {len(applied.effects.cancelled)}"
    )


@cli.group()
def therapist() -> None:
    """Therapists' calendars: absences (leave)."""


@therapist.group()
def absence() -> None:
    """A therapist's absences: their sessions on those days move, their clients are told."""


@absence.command("add")
@click.argument("therapist_id", type=ID, metavar="ID")
@click.option("--from", "--start", "start", required=True, metavar="DATE", help="First day away (YYYY-MM-DD).")
@click.option("--until", required=True, metavar="DATE", help="Last day away (YYYY-MM-DD), included.")
@click.option("--reason", metavar="TEXT", help="A note for staff (never about a client).")
@click.option("--now", metavar="ISO", help=NOW_HELP)
@json_option
@click.pass_obj
def absence_add(
    app: App, therapist_id: str, start: str, until: str, reason: str | None, now: str | None, as_json: bool
) -> None:
    """Record an absence and move the therapist's planned sessions out of it; print its id."""
    from ipt_workflow import absences

    absences.check_absence(therapist_id, start, until, reason)  # checked before a database file is made
    done = absences.add_absence(app.store, app.rules, therapist_id, start, until, app.now(now), reason)
    _absence_done(done, "moved", as_json)


@absence.command("list")
@click.argument("therapist_id", type=ID, metavar="[ID]", required=False)
@json_option
@click.pass_obj
def absence_list(app: App, therapist_id: str | None, as_json: bool) -> None:
    """List absences (of one therapist), by first day."""
    from ipt_workflow import absences
    from ipt_workflow.present.views import absence_json

    found = [absence_json(a) for a in absences.list_absences(app.existing_store, therapist_id)]
    if as_json:
        emit_json(found)
        return
    from ipt_workflow.present.tables import print_absences

    print_absences(found)


@absence.command("remove")
@click.argument("absence_id", type=ID, metavar="ABSENCE_ID")
@click.option("--now", metavar="ISO", help=NOW_HELP)
@json_option
@click.pass_obj
def absence_remove(app: App, absence_id: str, now: str | None, as_json: bool) -> None:
    """Delete an absence; the sessions it moved go back to their series times."""
    from ipt_workflow import absences

    done = absences.remove_absence(app.existing_store, app.rules, absence_id, app.now(now))
    _absence_done(done, "moved back", as_json)


def _absence_done(done: Any, verb: str, as_json: bool) -> None:
    if as_json:
        from ipt_workflow.present.views import absence_json

        emit_json({**absence_json(done.absence), "courses": done.courses, "moved": done.moved})
        return
    click.echo(done.absence.id)
    click.echo(f"{done.moved} planned session(s) of {done.courses} course(s) {verb}", err=True)


@cli.command("plan")
@click.argument("course_id", type=ID, metavar="ID")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "ics"]), default="table", show_default=True)
@click.option("--now", metavar="ISO", help="DTSTAMP of the calendar export (default: now).")
@json_option
@click.pass_obj
def plan_command(app: App, course_id: str, fmt: str, now: str | None, as_json: bool) -> None:
    """A course's sessions and reminders as a table, JSON (--json is --format json), or iCalendar."""
    if as_json:
        fmt = "json"
    from ipt_workflow import services
    from ipt_workflow.present.views import reminder_json, session_json

    course_, plan_ = services.show(app.existing_store, app.rules, course_id)
    if fmt == "ics":
        from ipt_workflow.core.planner import dropped_sessions
        from ipt_workflow.interop.ics import course_calendar

        dropped = dropped_sessions(course_, services.protocol_of(app.rules, course_), app.rules.clinic)
        sys.stdout.buffer.write(course_calendar(course_, plan_, app.now(now), dropped))
        return
    data = {
        "course": course_.id,
        "state": course_.state.value,
        "sessions": [session_json(s) for s in plan_.sessions],
        "reminders": [reminder_json(r) for r in plan_.reminders],
    }
    if fmt == "json":
        emit_json(data)
        return
    from ipt_workflow.present.tables import print_plan

    print_plan(data, course_.timezone)


@cli.command("reminders")
@click.option("--course", "course_id", type=ID, metavar="ID")
@click.option("--from", "--start", "start", metavar="ISO", help="Due at or after (without an offset: UTC).")
@click.option("--until", metavar="ISO", help="Due before (without an offset: UTC).")
@click.option("--status", type=click.Choice(["pending", "delivered", "skipped", "cancelled", "failed"]))
@click.option("--limit", type=click.IntRange(1, MAX_LIMIT), default=1000, show_default=True, help="At most this many.")
@json_option
@click.pass_obj
def reminders_command(
    app: App, course_id: str | None, start: str | None, until: str | None, status: str | None, limit: int,
    as_json: bool,
) -> None:  # fmt: skip
    """Stored reminders in due order."""
    from ipt_workflow.core.wallclock import parse_instant
    from ipt_workflow.storage.reads import reminder_documents

    lo = parse_instant(start, None, "--from") if start else None
    hi = parse_instant(until, None, "--until") if until else None
    from ipt_workflow.bootstrap import database_url

    db = database_url(app.db)
    data = reminder_documents(db, course=course_id, start=lo, until=hi, status=status, limit=limit + 1)
    if len(data) > limit:
        data = data[:limit]
        click.echo(f"warning: more than {limit} reminders match; showing the first {limit} (see --limit)", err=True)
    if as_json:
        emit_json(data)
        return
    from ipt_workflow.present.tables import print_reminders

    print_reminders(data, course_zones(db, {r["course"] for r in data}))


@cli.command("agenda")
@click.option("--therapist", type=ID, metavar="ID", help="Only the sessions this therapist gives (default: all).")
@click.option(
    "--from", "--start", "start", metavar="DATE", help="First day, in the clinic's zone (default: this week's Monday)."
)
@click.option("--until", metavar="DATE", help="Last day, included (default: a week from --from).")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "ics"]), default="table", show_default=True)
@click.option("--now", metavar="ISO", help="Act as if it were this instant: which week is this week; ICS DTSTAMP.")
@json_option
@click.pass_obj
def agenda_command(
    app: App, therapist: str | None, start: str | None, until: str | None, fmt: str, now: str | None, as_json: bool
) -> None:
    """Planned and past sessions of every course over some days, in start order."""
    from ipt_workflow.agenda import agenda, agenda_window, stored_sessions
    from ipt_workflow.bootstrap import database_url
    from ipt_workflow.rulebook.locate import clinic_timezone

    clock = app.now(now)
    lo, hi = agenda_window(clinic_timezone(app.rules_dir), clock, start, until)
    found = agenda(database_url(app.db), therapist, lo, hi, lambda c: stored_sessions(app.existing_store, app.rules, c))
    name = f"IPT agenda {therapist}" if therapist else "IPT agenda"
    if fmt == "ics" and not as_json:
        from ipt_workflow.agenda import agenda_calendar

        sys.stdout.buffer.write(agenda_calendar(app.existing_store, app.rules, found.rows, clock, name))
    elif fmt == "json" or as_json:
        emit_json(found.rows)
    else:
        from datetime import timedelta

        from ipt_workflow.present.tables import print_agenda

        days = f"{lo:%a %Y-%m-%d} to {hi - timedelta(days=1):%a %Y-%m-%d}"
        print_agenda(found.rows, found.zones, f"Agenda{f' of {therapist}' if therapist else ''}: {days}")


@cli.command("slots")
@click.option("--therapist", type=ID, required=True, metavar="ID")
@click.option(
    "--from", "--start", "start", required=True, metavar="DATE", help="Try first sessions in the week from this day."
)
@click.option("--protocol", "protocol_id", metavar="ID", help="Protocol of the new course (default: ipt-16).")
@click.option("--weekdays", metavar="mon,tue,..", help="Weekdays to try (default: the clinic's working days).")
@click.option("--between", metavar="HH:MM-HH:MM", help="When sessions may run (default: the working hours).")
@click.option("--step", default="15m", show_default=True, metavar="DURATION", help="Between start times tried.")
@click.option("--limit", type=click.IntRange(1, MAX_LIMIT), default=10, show_default=True, help="At most this many.")
@click.option("--tz", metavar="ZONE", help="Time zone of the new course (default: the clinic's).")
@click.option("--now", metavar="ISO", help=NOW_HELP)
@json_option
@click.pass_obj
def slots_command(
    app: App, therapist: str, start: str, protocol_id: str | None, weekdays: str | None, between: str | None,
    step: str, limit: int, tz: str | None, now: str | None, as_json: bool,
) -> None:  # fmt: skip
    """Weekly slots where every session of a new course fits the working hours and the
    therapist's bookings, earliest first."""
    from ipt_workflow.agenda import slot_query, slots

    rules, clock = app.rules, app.now(now)
    query = slot_query(rules, therapist=therapist, start=start, protocol=protocol_id, weekdays=weekdays,
                       between=between, step=step, limit=limit, tz=tz)  # fmt: skip
    rows = slots(app.existing_store, rules, query, clock)
    if as_json:
        emit_json(rows)
        return
    from ipt_workflow.present.tables import print_slots

    print_slots(rows, query.timezone, f"Free slots of {therapist} for {query.protocol} ({query.timezone})")


@cli.command("report")
@click.argument("course_id", type=ID, metavar="ID")
@click.option("--out", type=click.Path(path_type=Path), metavar="FILE", help="Write the HTML here (default: stdout).")
@click.option("--now", metavar="ISO", help="Act as if it were this instant: today's mark, the course week.")
@click.pass_obj
def report_command(app: App, course_id: str, out: Path | None, now: str | None) -> None:
    """One course as a self-contained HTML page: header, phases and sessions, the PHQ-9
    chart, foci, alerts and their delivery, the history with rule ids."""
    from ipt_workflow.bootstrap import database_url
    from ipt_workflow.reports import check_out, course_report, write_page

    clock = app.now(now)
    if out is not None:
        check_out(out)  # before the database is read
    html = course_report(database_url(app.db), course_id, clock, _planned_shape(app))
    if out is None:
        click.echo(html, nl=False)
        return
    write_page(out, html)
    click.echo(f"report of course {course_id} written to {out}", err=True)


@cli.command("caseload")
@click.option("--therapist", type=ID, metavar="ID", help="Only this therapist's courses (default: every therapist's).")
@click.option("--out", type=click.Path(path_type=Path), metavar="FILE", help="Write an HTML page here.")
@click.option("--now", metavar="ISO", help="Act as if it were this instant: weeks, open alerts, next sessions.")
@json_option
@click.pass_obj
def caseload_command(app: App, therapist: str | None, out: Path | None, now: str | None, as_json: bool) -> None:
    """Every active course: state, week n of N, held and missed, PHQ-9 baseline to latest
    (response/remission), open alerts, next session."""
    from ipt_workflow.bootstrap import database_url
    from ipt_workflow.reports import caseload, caseload_html, check_out, write_page

    clock = app.now(now)
    if out is not None:
        check_out(out)  # before the database is read
    rows = caseload(database_url(app.db), therapist, clock, _planned_shape(app))
    if out is not None:
        from ipt_workflow.rulebook.locate import clinic_timezone

        write_page(out, caseload_html(rows, therapist, clock, clinic_timezone(app.rules_dir)))
        click.echo(f"caseload of {len(rows)} courses written to {out}", err=True)
    if as_json:
        emit_json(rows)
    elif out is None:
        from ipt_workflow.present.tables import print_caseload

        print_caseload(rows, f"Caseload{f' of {therapist}' if therapist else ''} ({len(rows)} active)")


def _planned_shape(app: App) -> Callable[[str], dict[str, Any]]:
    """The course shape from the planner, for a course stored before plans were kept."""

    def shape(course_id: str) -> dict[str, Any]:
        from ipt_workflow import services
        from ipt_workflow.present.views import course_json

        return course_json(*services.show(app.existing_store, app.rules, course_id))

    return shape


def course_zones(db: str, ids: set[str]) -> dict[str, str]:
    """The time zone of each course in ``ids`` that exists (one indexed read per 500 ids, on
    the quick path: no rules, no models)."""
    from ipt_workflow.storage.reads import open_query

    ordered, zones = sorted(ids), dict[str, str]()
    if not ordered:
        return zones
    with open_query(db) as query:
        for i in range(0, len(ordered), 500):
            params = {f"c{j}": c for j, c in enumerate(ordered[i : i + 500])}
            names = ", ".join(f":{k}" for k in params)
            rows = query(f"SELECT id, timezone FROM ipt_courses WHERE id IN ({names})", params)
            zones.update({r["id"]: r["timezone"] for r in rows})
    return zones


@cli.group("group")
def group_cmd() -> None:
    """Group IPT (SPEC §10): one schedule for a cohort, a course for each member."""


@group_cmd.command("create")
@click.option("--protocol", "protocol_id", required=True, metavar="ID[@VERSION]", help=PROTOCOL_HELP)
@click.option("--therapist", type=ID, required=True, metavar="ID")
@click.option("--cotherapist", type=ID, metavar="ID")
@click.option("--start", required=True, metavar="DATE", help="Date of the first group session (YYYY-MM-DD).")
@click.option("--time", "slot", required=True, metavar="HH:MM", help="Local time of the weekly group session.")
@click.option("--tz", required=True, metavar="ZONE", help="IANA time zone, e.g. Europe/London.")
@click.option("--id", "group_id", type=ID, metavar="ID", help="Group id (default: a new random id).")
@click.option("--min", "min_size", type=int, default=4, show_default=True, help="Fewest active members.")
@click.option("--max", "max_size", type=int, default=12, show_default=True, help="Most members.")
@click.option("--allow-clash", is_flag=True, help=ALLOW_CLASH_HELP)
@click.option("--now", metavar="ISO", help=NOW_HELP)
@json_option
@click.pass_obj
def group_create(
    app: App, protocol_id: str, therapist: str, cotherapist: str | None, start: str, slot: str, tz: str,
    group_id: str | None, min_size: int, max_size: int, allow_clash: bool, now: str | None, as_json: bool,
) -> None:  # fmt: skip
    """Create a group with its schedule; print its id (the group with --json)."""
    from ipt_workflow import groups

    rules, clock = app.rules, app.now(now)
    created = groups.create_group(
        app.store, rules, protocol_id=protocol_id, therapist=therapist, cotherapist=cotherapist, start=start,
        time=slot, tz=tz, now=clock, group_id=group_id, min_size=min_size, max_size=max_size, allow_clash=allow_clash,
    )  # fmt: skip
    for warning in created.warnings:
        click.echo(f"warning: {warning}", err=True)
    if as_json:
        emit_json(groups.group_json(app.store, rules, created.group.id))
    else:
        click.echo(created.group.id)


@group_cmd.command("add")
@click.argument("group_id", type=ID, metavar="GROUP")
@click.option("--client", type=CLIENT, required=True, metavar="REF", help="Pseudonymous client reference.")
@click.option("--id", "course_id", type=ID, metavar="COURSE", help="Course id (default: a new random id).")
@click.option("--pre", multiple=True, metavar="ISO", help="Start of a pre-group individual session (repeatable).")
@click.option("--allow-clash", is_flag=True, help=ALLOW_CLASH_HELP)
@click.option("--now", metavar="ISO", help=NOW_HELP)
@json_option
@click.pass_obj
def group_add(
    app: App, group_id: str, client: str, course_id: str | None, pre: tuple[str, ...], allow_clash: bool,
    now: str | None, as_json: bool,
) -> None:  # fmt: skip
    """Add a member: create their course; print its id (the course with --json)."""
    from ipt_workflow import groups

    added = groups.add_member(
        app.existing_store, app.rules, group_id, client=client, now=app.now(now), course_id=course_id,
        pre=list(pre), allow_clash=allow_clash,
    )  # fmt: skip
    if as_json:
        from ipt_workflow.present.views import course_json

        emit_json(course_json(added.course, added.plan))
    else:
        click.echo(added.course.id)


@group_cmd.command("show")
@click.argument("group_id", type=ID, metavar="GROUP")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "ics"]), default="table", show_default=True)
@click.option("--now", metavar="ISO", help="DTSTAMP of the calendar export (default: now).")
@json_option
@click.pass_obj
def group_show(app: App, group_id: str, fmt: str, now: str | None, as_json: bool) -> None:
    """Show a group: its sessions with attendance, and its members (or its calendar: --format ics)."""
    from ipt_workflow import groups

    if fmt == "ics" and not as_json:
        sys.stdout.buffer.write(groups.group_ics(app.existing_store, app.rules, group_id, app.now(now)))
        return
    data = groups.group_json(app.existing_store, app.rules, group_id)
    if as_json or fmt == "json":
        emit_json(data)
        return
    from ipt_workflow.present.tables import print_group

    print_group(data)


@group_cmd.command("list")
@json_option
@click.pass_obj
def group_list(app: App, as_json: bool) -> None:
    """List groups, by id."""
    rows = app.existing_store.groups()
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        click.echo(
            f"{r['id']}  {r['protocol']}  {r['therapist']}  {r['state']}  from {r['start']}  "
            f"{r['members']} members ({r['min']}-{r['max']})"
        )


@group_cmd.command("event")
@click.argument("group_id", type=ID, metavar="GROUP")
@click.argument("event")
@click.option("--at", metavar="ISO", help="When it happened (default: now); without an offset: the group's zone.")
@click.option("--data", "data_text", metavar="JSON", help='Event data, e.g. {"absent": ["crs_1"]}.')
@click.option("--now", metavar="ISO", help=NOW_HELP)
@json_option
@click.pass_obj
def group_event_command(
    app: App, group_id: str, event: str, at: str | None, data_text: str | None, now: str | None, as_json: bool
) -> None:
    """Record EVENT for the group and its members (one transaction)."""
    from ipt_workflow import groups
    from ipt_workflow.core.wallclock import parse_instant, zone

    data = None
    if data_text is not None:
        from ipt_workflow.inputs import parse_data_option

        data = parse_data_option(data_text)
    clock = app.now(now)
    store = app.existing_store
    when = clock
    if at:
        when = parse_instant(at, zone(store.load_group(group_id).timezone), "--at")
    done = groups.apply_group_event(store, app.rules, group_id, event, when, clock, data)
    if as_json:
        emit_json(groups.group_json(store, app.rules, group_id))
        return
    click.echo(f"{done.group.id}: {event} ({len(done.members)} members; version {done.group.version})")


@cli.command("import")
@click.argument("csv_file", metavar="FILE.csv", type=click.Path(path_type=Path))
@click.option("--skip-bad", is_flag=True, help="Import the good rows, report the bad (default: all or nothing).")
@click.option("--allow-clash", is_flag=True, help=ALLOW_CLASH_HELP)
@click.option("--now", metavar="ISO", help=NOW_HELP)
@click.option("--ids", "ids_file", metavar="FILE", type=click.Path(path_type=Path),
              help="Write each row's course id to FILE (CSV: line,id,status).")  # fmt: skip
@json_option
@click.pass_obj
def import_command(
    app: App, csv_file: Path, skip_bad: bool, allow_clash: bool, now: str | None, ids_file: Path | None, as_json: bool
) -> None:
    """Create many courses from a CSV: client, therapist, protocol, start, time, tz[, id, group].

    Rows a former import stored (the same id, else the same client, protocol and start, or
    client and group) are left alone and counted as already imported: run it twice safely."""
    from ipt_workflow import importing
    from ipt_workflow.inputs import check_regular_file

    rules, clock = app.rules, app.now(now)
    check_regular_file(csv_file)  # before a database file is made
    if ids_file is not None:
        from ipt_workflow.reports import check_out

        check_out(ids_file, "--ids")
    store = app.store
    if sys.stderr.isatty():
        from rich.progress import Progress

        with Progress(transient=True) as bar:
            task = bar.add_task("planning courses", total=None)
            report = importing.import_csv(
                store, rules, csv_file, clock, skip_bad=skip_bad, allow_clash=allow_clash,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )  # fmt: skip
    else:
        report = importing.import_csv(store, rules, csv_file, clock, skip_bad=skip_bad, allow_clash=allow_clash)
    for line in report.warnings:
        click.echo(f"warning: {line}", err=True)
    for line in report.problems:
        click.echo(f"error: {line}", err=True)
    if ids_file is not None:
        from ipt_workflow.reports import write_page

        lines = ["line,id,status", *(f"{r.line},{r.id or ''},{r.status}" for r in report.courses)]
        write_page(ids_file, "\n".join(lines) + "\n", "--ids")
    if as_json:
        emit_json(report.model_dump(mode="json"))
        return
    refused = f", {len(report.problems)} refused" if report.problems else ""
    existing = f", {report.existing} already imported (left as they are)" if report.existing else ""
    click.echo(f"imported {report.imported} of {report.rows} courses{refused}{existing}")


# ---------------------------------------------------------------- daemon


class Seconds(click.FloatRange):
    """A finite number of seconds within a range: ``nan``, ``inf`` and ``1e308`` are usage errors."""

    name = "seconds"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        import math

        seconds = super().convert(value, param, ctx)
        if not math.isfinite(seconds):
            self.fail(f"{value!r} is not a number of seconds.", param, ctx)
        return seconds


@cli.command()
@click.option("--sink", "sinks", multiple=True, metavar="SPEC",
              help="stdout (default), file:PATH or webhook:URL; repeatable.")  # fmt: skip
@click.option("--once", is_flag=True, help="Emit everything due at --now (default: the clock) and exit: for cron.")
@click.option("--now", metavar="ISO",
              help="Start the daemon's clock at this instant (ISO 8601; without an offset: UTC); it runs on "
                   "from there at real speed. With --once: dispatch as of this instant. Not a what-if: what "
                   "is due then really goes out and is recorded (see --dry-run).")  # fmt: skip
@click.option("--dry-run", is_flag=True,
              help="With --once: print on stdout what would go out at --now; record nothing.")  # fmt: skip
@click.option("--sweep", "sweep_seconds", type=Seconds(min=0.05, max=86400), default=5.0, show_default=True,
              help="Seconds between polls of the store (the safety sweep).")  # fmt: skip
@click.option("--lock-wait", type=Seconds(min=0, max=3600), default=None,
              help="Seconds to wait for another process's lock on the database (default: IPT_LOCK_TIMEOUT, "
                   "else 30); then --once fails (exit 1) and the daemon logs a line and tries again at the "
                   "next sweep.")  # fmt: skip
@click.option("--lease", "lease_seconds", type=Seconds(min=0.1, max=86400), default=300.0, hidden=True,
              help="Seconds a claimed batch is leased, renewed while it is delivered (for tests).")  # fmt: skip
@click.option("--health-file", type=click.Path(path_type=Path), help="Touched on every loop.")
@click.option("--batch", type=click.IntRange(1, 10_000), default=1000, show_default=True,
              help="Reminders claimed, written and recorded together.")  # fmt: skip
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info",
              show_default=True,
              help="Log lines on stderr from this level up (URLs never show credentials or query).")  # fmt: skip
@click.option("--metrics", "metrics_at", metavar="HOST:PORT",
              help="Serve Prometheus metrics at http://HOST:PORT/metrics (not with --once).")  # fmt: skip
@click.pass_obj
def daemon(
    app: App,
    sinks: tuple[str, ...],
    once: bool,
    now: str | None,
    dry_run: bool,
    sweep_seconds: float,
    lock_wait: float | None,
    lease_seconds: float,
    health_file: Path | None,
    batch: int,
    log_level: str,
    metrics_at: str | None,
) -> None:
    """Emit due reminders and alerts to the sinks, one JSON object a line, until SIGTERM or
    SIGINT (exit 0 after the batch in flight; 1 if the SQLite file is deleted). --once: emit
    what is due and exit (safe to run every minute from cron, and when two runs overlap)."""
    if dry_run and not once:
        raise click.UsageError("--dry-run needs --once (it shows what one run would send)")
    if dry_run and any(spec != "stdout" for spec in sinks):
        raise click.UsageError("--dry-run prints on stdout only and takes no other --sink")
    import logging
    from datetime import timedelta

    from ipt_workflow.bootstrap import store_for
    from ipt_workflow.delivery.daemon import clock_from, precise_clock
    from ipt_workflow.delivery.sinks import WebhookSink, open_sinks
    from ipt_workflow.storage.sqlite_file import wait_for_locks

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # A line per wake-up, and a warning whenever a wake-up finds the dispatcher busy: noise.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    if metrics_at is not None and once:
        raise click.UsageError("--metrics needs the long-running daemon (not --once)")
    listen = metrics_address(metrics_at) if metrics_at is not None else None
    clinic = app.rules.clinic
    start = app.now(now) if now else None  # a bad --now is refused before any sink file is made
    if health_file is not None:
        check_health_file(health_file)
    # All sinks are checked before any is opened, and before anything is claimed.
    targets: list[Sink] = [] if dry_run else open_sinks(sinks or ("stdout",))
    if lock_wait is None:
        from ipt_workflow.storage import lock_timeout

        lock_wait = lock_timeout()
    store = store_for(app.db, lock_wait=lock_wait)
    click.get_current_context().call_on_close(store.close)
    wait_for_locks(store.engine, lock_wait)
    lease = timedelta(seconds=lease_seconds)
    from ipt_workflow.rulechanges import RulesWatch

    watch = RulesWatch(store, app.rules, app.rules_dir)
    try:
        if once:
            at = start or precise_clock()
            with once_errors(store, lock_wait):
                run_once(store, clinic, at, targets, batch, lease, dry_run, watch)
            return
        from ipt_workflow.delivery.daemon import Daemon

        clock = clock_from(start) if start else precise_clock
        metrics = None
        sending: list[Sink] = list(targets)
        if listen is not None:
            from ipt_workflow.delivery.metrics import Metrics
            from ipt_workflow.delivery.webhook import redact

            metrics = Metrics()
            sending = metrics.wrap(
                targets, [redact(s) if s.startswith("webhook:") else s for s in sinks or ("stdout",)]
            )
            metrics.serve(*listen)
        running = Daemon(store, sending, clock, sweep_seconds, health_file, clinic, batch=batch, lease=lease,
                         lock_wait=lock_wait, check=watch, metrics=metrics)  # fmt: skip
        for target in targets:
            if isinstance(target, WebhookSink):
                target.stopping = running.stopping  # after SIGTERM: no new request, only the one in flight
        status = running.run()
    finally:
        for target in targets:
            target.close()
    if status:
        sys.exit(status)


def metrics_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` of ``--metrics`` (``[::1]:9100`` for IPv6); a bad one is a usage error."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise click.UsageError(f"--metrics {text!r}: not HOST:PORT (e.g. 127.0.0.1:9100)")
    return host, int(port)


def run_once(
    store: SqlStore, clinic: ClinicPolicy, at: datetime, targets: list[Sink], batch: int, lease: timedelta,
    dry_run: bool, check: Any = None,
) -> None:  # fmt: skip
    """``ipt daemon --once``: record today's digests so far, send what is due at ``at``, and
    say how it went on stderr; with ``dry_run`` print on stdout what would go out, record nothing."""
    store.ensure_schema()
    if dry_run:
        from ipt_workflow.delivery.digests import unrecorded_digests
        from ipt_workflow.delivery.dispatch import preview
        from ipt_workflow.delivery.sinks import StdoutSink

        events, skipped = preview(store, at, unrecorded_digests(store, clinic, at), check.preview if check else None)
        StdoutSink().deliver(events)
        digests = sum(e["type"] == "digest" for e in events)
        click.echo(f"dry run: would deliver {len(events) - digests}, skip {skipped}, send {digests} digests; "
                   "nothing recorded", err=True)  # fmt: skip
        return
    from ipt_workflow.delivery.digests import record_digests
    from ipt_workflow.delivery.dispatch import dispatch_due

    record_digests(store, clinic, at)
    result = dispatch_due(store, at, targets, batch=batch, lease=lease, check=check)
    summary = f"delivered {result.delivered}, skipped {result.skipped}"
    extra = [f"{n} {what}" for n, what in ((result.digests, "digests"), (result.retried, "to retry"),
                                           (result.failed, "failed"), (result.dropped, "dropped")) if n]  # fmt: skip
    click.echo(", ".join([summary, *extra]), err=True)


@contextmanager
def once_errors(store: SqlStore, lock_wait: float) -> Iterator[None]:
    """A database error in ``--once`` is one ``error:`` line (exit 1), saying how long a lock was waited for."""
    from sqlalchemy.exc import SQLAlchemyError

    from ipt_workflow.core.errors import StoreError
    from ipt_workflow.storage.engine import describe
    from ipt_workflow.storage.sqlite_file import is_locked

    try:
        yield
    except (SQLAlchemyError, StoreError) as exc:
        if is_locked(exc):
            raise StoreError(f"database '{describe(store.engine)}' is locked by another process: waited "
                             f"{lock_wait:g} s (--lock-wait); try again later") from None  # fmt: skip
        if isinstance(exc, StoreError):
            raise
        reason = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [type(exc).__name__])[0]
        raise StoreError(f"database '{describe(store.engine)}' cannot be used: {reason}") from None


def check_health_file(path: Path) -> None:
    """Raise InvalidInput unless ``path`` can be created or touched (checked at start, so the
    daemon does not claim reminders and then die at its first touch)."""
    import os

    from ipt_workflow.core.errors import InvalidInput

    parent = path.parent
    if path.is_dir():
        raise InvalidInput(f"--health-file {path}: is a directory")
    if not parent.is_dir():
        raise InvalidInput(f"--health-file {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise InvalidInput(f"--health-file {path}: not writable")


# ---------------------------------------------------------------- FHIR (SPEC §12)


@cli.group("export")
def export_group() -> None:
    """Export courses for other systems."""


@export_group.command("fhir")
@click.argument("course_ids", nargs=-1, type=ID, metavar="[ID ...]")
@click.option("--all", "every", is_flag=True, help="Every course.")
@click.option("--since", metavar="ISO", help="Only courses changed at or after this instant.")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), help="Write to FILE (default: stdout).")
@click.pass_obj
def export_fhir(app: App, course_ids: tuple[str, ...], every: bool, since: str | None, out: Path | None) -> None:
    """Print a FHIR R4 transaction Bundle of the courses (conditional creates on stable
    identifiers, urn:uuid: references): PlanDefinition, CarePlan, Appointment,
    CommunicationRequest and Observation resources."""
    from ipt_workflow.core.wallclock import parse_instant
    from ipt_workflow.exchange import export_entries
    from ipt_workflow.interop.fhir import transaction_text

    if not course_ids and not every:
        raise click.UsageError("name course IDs or give --all")
    if course_ids and every:
        raise click.UsageError("course IDs and --all exclude each other")
    after = parse_instant(since, None, "--since") if since else None
    entries = export_entries(app.existing_store, app.rules, course_ids, every, after)  # raises before any output
    pieces = transaction_text(entries)  # written as made: a Bundle of every course is never held whole
    if out is None:
        for piece in pieces:
            sys.stdout.write(piece)
        sys.stdout.write("\n")
        sys.stdout.flush()
        return
    tmp = out.with_name(out.name + ".tmp")
    try:
        with tmp.open("w", encoding="utf-8") as f:
            f.writelines(pieces)
            f.write("\n")
        tmp.replace(out)  # all or nothing: never half a Bundle in FILE
    finally:
        tmp.unlink(missing_ok=True)


@cli.group("ingest")
def ingest_group() -> None:
    """Take in what other systems recorded."""


@ingest_group.command("fhir")
@click.argument("source", metavar="FILE|-")
@click.option("--now", metavar="ISO", help=NOW_HELP)
@json_option
@click.pass_obj
def ingest_fhir(app: App, source: str, now: str | None, as_json: bool) -> None:
    """Apply a FHIR Bundle or resource (JSON): Appointment status fulfilled/arrived, noshow,
    cancelled or a moved start, and PHQ-9 Observations/QuestionnaireResponses become course
    events. All or nothing; a resource version seen before is skipped."""
    from ipt_workflow.core.errors import InvalidInput
    from ipt_workflow.exchange import ingest_fhir as ingest

    name = "stdin" if source == "-" else source
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{name}: cannot be read ({type(exc).__name__})") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{name}: line {exc.lineno} column {exc.colno}: not JSON ({exc.msg})") from None
    report = ingest(app.store, app.rules, document, app.now(now))
    if as_json:
        emit_json({"applied": [{"position": p, "course": c, "event": e} for p, c, e in report.applied],
                   "already": report.already, "unchanged": report.unchanged})  # fmt: skip
        return
    for position, course_id, event in report.applied:
        click.echo(f"{position}: {event} on {course_id}")
    click.echo(f"applied {len(report.applied)}, already applied {report.already}, unchanged {report.unchanged}",
               err=True)  # fmt: skip


def main() -> None:
    cli(prog_name="ipt")


if __name__ == "__main__":
    main()
