"""Human output: rich tables for the command line. Shell only; the core never imports it."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.table import Table

from ..core.wallclock import zone


def _console() -> Console:
    import os
    import sys

    # COLUMNS, when set, is the width to fit; else the terminal's. Piped output is read by
    # people too: do not cut ids and dates to 80 columns there.
    columns = os.environ.get("COLUMNS", "")
    width = int(columns) if columns.isdigit() and int(columns) > 0 else None
    if width is None and not sys.stdout.isatty():
        width = 200
    return Console(highlight=False, soft_wrap=False, width=width)


def wall_time(iso: str, tz: ZoneInfo | None) -> str:
    """``Mon 2027-01-11 10:00 GMT``: the instant ``iso`` (ISO 8601 with an offset) on ``tz``'s
    wall clock with its weekday and zone abbreviation (seconds only when there are some);
    with no zone, at the offset ``iso`` carries."""
    when = datetime.fromisoformat(iso)
    if tz is not None:
        when = when.astimezone(tz)
    return when.strftime("%a %Y-%m-%d %H:%M" + (":%S" if when.second else "") + " %Z")


def _zone(name: str | None) -> ZoneInfo | None:
    return zone(name) if name else None


def print_protocols(rows: list[dict[str, Any]]) -> None:
    table = Table(title="Protocols")
    for col in ("id", "version", "name", "sessions", "cadence", "assessment", "termination", "foci"):
        table.add_column(col)
    several = {r["id"] for r in rows if not r.get("default", True)}
    for r in rows:
        s = r["sessions"]
        a = r["assessment"]
        version = r["version"] + (" (default)" if r["id"] in several and r.get("default") else "")
        table.add_row(
            r["id"], version, r["name"],
            f"{s['planned']} (min {s['min']}, max {s['max']})",
            f"every {r['cadence_weeks']} wk, {r['duration_minutes']} min",
            f"{a['min']}-{a['max']}", str(r["termination"]), str(r["focus_limit"]),
        )  # fmt: skip
    _console().print(table)


def print_protocol(p: dict[str, Any], source: str) -> None:
    console = _console()
    console.print(f"[bold]{p['id']}[/bold] {p['version']}: {p['name']}" + (f"  ({source})" if source else ""))
    if p.get("description"):
        console.print(p["description"])
    s, ph = p["sessions"], p["phases"]
    console.print(
        f"sessions {s['planned']} (min {s['min']}, max {s['max']}), every {p['cadence_weeks']} week(s), "
        f"{p['duration_minutes']} min; engagement {ph['engagement']}, assessment "
        f"{ph['assessment']['min']}-{ph['assessment']['max']}, termination {ph['termination']}; "
        f"focus limit {p['focus_limit']}"
    )
    console.print(f"problem areas: {', '.join(p['problem_areas'])}")
    kinds = Table(title="Reminder kinds")
    kinds.add_column("kind")
    kinds.add_column("audience")
    for kind, audience in sorted(p["reminder_kinds"].items()):
        kinds.add_row(kind, audience)
    console.print(kinds)
    guards = Table(title="Guards")
    guards.add_column("transition")
    guards.add_column("condition (CEL)")
    for key, cond in p["guards"].items():
        guards.add_row(key, cond)
    console.print(guards)
    rules = Table(title="Rules")
    for col in ("id", "trigger", "when", "actions"):
        rules.add_column(col)
    for r in p["rules"]:
        actions = ", ".join(
            f"emit {a['emit']}" if a.get("emit") else f"transition {a['transition']}" for a in r["actions"]
        )
        rules.add_row(r["id"], ", ".join(r["trigger"]) or "(any event)", r.get("when") or "", actions)
    console.print(rules)


def print_simulation(data: dict[str, Any], timezone: str) -> None:
    """The simulated course; every time on ``timezone``'s wall clock."""
    console, tz = _console(), zone(timezone)
    focus = ", ".join(data["focus"]) or "none"
    console.print(
        f"course [bold]{data['id']}[/bold] ({data['protocol']} {data['protocol_version']}): "
        f"state [bold]{data['state']}[/bold]; focus {focus}; current {data['current_focus'] or 'none'}"
    )
    console.print(sessions_table(data["sessions"], tz))
    reminders = Table(title="Reminders")
    for col in ("due", "kind", "audience", "session", "status", "id"):
        reminders.add_column(col)
    for r in data["reminders"]:
        session = "" if r["session"] is None else str(r["session"])
        reminders.add_row(wall_time(r["due"], tz), r["kind"], r["audience"], session, r["status"], r["id"])
    console.print(reminders)
    console.print(history_table(data["history"], tz))


def sessions_table(rows: list[dict[str, Any]], tz: ZoneInfo | None) -> Table:
    table = Table(title="Sessions")
    for col in ("#", "phase", "start", "status", "with"):
        table.add_column(col)
    for s in rows:
        extra = [p for p in s["participants"] if p != "client"] + [f"{p}?" for p in s["optional_participants"]]
        table.add_row(str(s["number"]), s["phase"], wall_time(s["start"], tz), s["status"], ", ".join(extra))
    return table


def history_table(rows: list[dict[str, Any]], tz: ZoneInfo | None) -> Table:
    table = Table(title="History")
    for col in ("at", "event", "from", "to", "rule"):
        table.add_column(col)
    for h in rows:
        table.add_row(wall_time(h["at"], tz), h["event"], h["from"] or "", h["to"], h["rule"] or "")
    return table


def reminders_table(
    rows: list[dict[str, Any]], zones: dict[str, str], title: str = "Reminders", width: int | None = None
) -> Table:
    """Reminders with their due instant in their course's zone (``zones``: course id to zone
    name; a course not in it shows UTC). When the whole table is wider than ``width`` (a
    narrow terminal) it leaves out the reminder ids (``--json`` has them), then the audience
    (the kind implies it), names a single course in the title instead of a column, and lets
    long course ids wrap; due times are never cut."""
    cells = []
    for r in rows:
        session = "" if r["session"] is None else str(r["session"])
        due = wall_time(r["due"], _zone(zones.get(r["course"])))
        cells.append({"due": due, "kind": r["kind"], "audience": r["audience"], "course": r["course"],
                      "session": session, "status": r["status"], "id": r["id"]})  # fmt: skip
    columns = ["due", "kind", "audience", "course", "session", "status", "id"]
    headers = {c: c for c in columns}
    if width is not None and _table_width(columns, headers, cells) > width:
        headers["session"] = "#"
        columns.remove("id")
        courses = {c["course"] for c in cells}
        if len(courses) == 1:
            columns.remove("course")
            title = f"{title} of course {next(iter(courses))}"
        if _table_width(columns, headers, cells) > width:
            columns.remove("audience")
    table = Table(title=title)
    for col in columns:
        table.add_column(headers[col], no_wrap=col != "course", overflow="fold")
    for c in cells:
        table.add_row(*(c[col] for col in columns))
    return table


def _table_width(columns: list[str], headers: dict[str, str], cells: list[dict[str, str]]) -> int:
    """How wide a rich table of ``columns`` is with no cell wrapped: the widest cell of each
    column, and three characters a column (padding and a rule) plus one."""
    widest = (max([len(headers[col]), *(len(c[col]) for c in cells)]) for col in columns)
    return sum(widest) + 3 * len(columns) + 1


def print_reminders(rows: list[dict[str, Any]], zones: dict[str, str]) -> None:
    console = _console()
    console.print(reminders_table(rows, zones, width=console.width))


def print_course_list(rows: list[dict[str, Any]]) -> None:
    table = Table(title=f"Courses ({len(rows)})")
    for col in ("id", "client", "therapist", "protocol", "state", "version"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["id"], r["client"], r["therapist"], r["protocol"], r["state"], str(r["version"]))
    _console().print(table)


def print_absences(rows: list[dict[str, Any]]) -> None:
    """Absences as ``absence_json`` gives them: the days with their weekdays."""
    table = Table(title=f"Absences ({len(rows)})")
    for col in ("id", "therapist", "from", "until", "reason"):
        table.add_column(col)
    for r in rows:
        first, last = date.fromisoformat(r["from"]), date.fromisoformat(r["until"])
        table.add_row(r["id"], r["therapist"], f"{first:%a %Y-%m-%d}", f"{last:%a %Y-%m-%d}", r["reason"] or "")
    _console().print(table)


def print_course(data: dict[str, Any]) -> None:
    """The course shape of SPEC §7 as tables; every time on the course's wall clock."""
    console, tz = _console(), zone(data["timezone"])
    focus = ", ".join(data["focus"]) or "none"
    console.print(
        f"course [bold]{data['id']}[/bold] (client {data['client']}, therapist {data['therapist']}; "
        f"{data['protocol']} {data['protocol_version']}, {data['timezone']}): state [bold]{data['state']}[/bold], "
        f"version {data['version']}; focus {focus}; current {data['current_focus'] or 'none'}"
    )
    if "phq9" in data:
        console.print(phq9_line(data["phq9"]))
    console.print(sessions_table(data["sessions"], tz))
    if data["measurements"]:
        table = Table(title="Measurements")
        for col in ("at", "instrument", "score", "item9", "session"):
            table.add_column(col)
        for m in data["measurements"]:
            table.add_row(
                wall_time(m["at"], tz), m["instrument"], str(m["score"]), str(m["item9"]), str(m["session"] or "")
            )
        console.print(table)
    console.print(history_table(data["history"], tz))


def phq9_line(phq9: dict[str, Any] | None) -> str:
    """``PHQ-9 18 → 7 (−61 %), response``: the course shape's ``phq9`` as one line."""
    from ..core.progress import Phq9Progress, phq9_text

    if phq9 is None:
        return phq9_text(None)
    change = None if phq9["change_percent"] is None else phq9["change_percent"] / 100
    fields = {k: phq9[k] for k in ("baseline", "latest", "count", "response", "remission")}
    return phq9_text(Phq9Progress(**fields, change=change))


def print_caseload(rows: list[dict[str, Any]], title: str) -> None:
    """Caseload rows (``present.report.caseload_row``); next sessions on their course's wall
    clock, open alerts as ``kind (due)``."""
    from ..core.progress import CourseWeek
    from .report import alert_groups

    table = Table(title=title)
    columns = ("course", "client", "therapist", "state", "week", "held", "missed", "PHQ-9", "open alerts",
               "next session")  # fmt: skip
    for col in columns:
        table.add_column(col, overflow="fold")
    for r in rows:
        tz = _zone(r["timezone"])
        week = CourseWeek(r["week"], r["weeks"]).text.removeprefix("week ") if r["weeks"] else ""
        phq = phq9_line(r["phq9"]).removeprefix("PHQ-9 ")
        alerts = "\n".join(alert_groups(r["open_alerts"], tz or zone("UTC")))
        table.add_row(r["course"], r["client"], r["therapist"], r["state"], week, str(r["held"]), str(r["missed"]),
                      phq, alerts, wall_time(r["next_session"], tz) if r["next_session"] else "")  # fmt: skip
    _console().print(table)


def print_plan(data: dict[str, Any], timezone: str) -> None:
    """A course's plan; every time on ``timezone``'s wall clock."""
    console, tz = _console(), zone(timezone)
    console.print(f"course [bold]{data['course']}[/bold]: state [bold]{data['state']}[/bold]")
    console.print(sessions_table(data["sessions"], tz))
    console.print(reminders_table(data["reminders"], {data["course"]: timezone}, width=console.width))


def print_agenda(rows: list[dict[str, Any]], zones: dict[str, str], title: str) -> None:
    """Agenda entries with their start, end and old start on their course's wall clock."""
    table = Table(title=title)
    for col in ("start", "end", "therapist", "course", "client", "#", "phase", "status", "moved from"):
        table.add_column(col)
    for r in rows:
        tz = _zone(zones.get(r["course"] or r["group"]))
        start, end = wall_time(r["start"], tz), wall_time(r["end"], tz)
        if end[:14] == start[:14]:
            end = end[15:]  # the same day: the time alone
        moved = wall_time(r["original_start"], tz) if r["original_start"] else ""
        what = r["course"] if r["course"] is not None else f"group {r['group']}"
        table.add_row(start, end, r["therapist"], what, r["client"] or "", str(r["session"]), r["phase"] or "",
                      r["status"], moved)  # fmt: skip
    _console().print(table)


def print_slots(rows: list[dict[str, Any]], timezone: str, title: str) -> None:
    """Free weekly slots: weekday and time, first and last session on ``timezone``'s wall clock."""
    tz = zone(timezone)
    table = Table(title=title)
    for col in ("weekday", "time", "first session", "last session", "moved"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["weekday"], r["time"], wall_time(r["first"], tz), wall_time(r["last"], tz), str(r["moved"]))
    _console().print(table)


def print_group(data: dict[str, Any]) -> None:
    """A group: header, sessions (local wall time) with attendance counts, members."""

    from ..core.calendar import local_text

    co = f" + {data['cotherapist']}" if data.get("cotherapist") else ""
    print(f"group {data['id']}  {data['protocol']} {data['protocol_version']}  therapist {data['therapist']}{co}")
    print(f"state {data['state']}  members {len(data['members'])} (min {data['min']}, max {data['max']})")
    for s in data["sessions"]:
        start = local_text(datetime.fromisoformat(s["start"]).astimezone(zone(data["timezone"])))
        seen = f"  present {len(s['present'])}, absent {len(s['absent'])}" if s["status"] == "held" else ""
        print(f"  {s['number']:>2}  {start}  {s['status']}{seen}")
    for m in data["members"]:
        print(f"  member {m['course']}  {m['state']}")


def print_group_simulation(data: dict[str, Any]) -> None:
    """A simulated group: its sessions (with attendance) and a line per member: state, group
    and individual sessions held and missed, reminders delivered, pending and cancelled."""
    console, g = _console(), data["group"]
    tz = zone(g["timezone"])
    console.print(
        f"group [bold]{g['id']}[/bold] ({g['protocol']} {g['protocol_version']}): state [bold]{g['state']}[/bold]; "
        f"{len(data['members'])} members (min {g['min']}, max {g['max']})"
    )
    sessions = Table(title="Group sessions")
    for col in ("#", "start", "status", "present", "absent"):
        sessions.add_column(col)
    for s in g["sessions"]:
        sessions.add_row(str(s["number"]), wall_time(s["start"], tz), s["status"], str(len(s["present"])),
                         ", ".join(s["absent"]))  # fmt: skip
    console.print(sessions)
    members = Table(title="Members")
    for col in ("course", "state", "held", "missed", "planned", "delivered", "pending", "cancelled"):
        members.add_column(col)
    for m in data["members"]:
        count = {k: sum(1 for s in m["sessions"] if s["status"] == k) for k in ("held", "missed", "planned")}
        sent = {k: sum(1 for r in m["reminders"] if r["status"] == k) for k in ("delivered", "pending", "cancelled")}
        members.add_row(m["id"], m["state"], *(str(v) for v in count.values()), *(str(v) for v in sent.values()))
    console.print(members)
