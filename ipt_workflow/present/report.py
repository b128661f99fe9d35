"""The course report and the caseload of SPEC §13 as self-contained HTML (Jinja2 templates,
autoescaped; the charts are SVG drawn here, no script, no request), and the caseload rows.

Input is the course shape of SPEC §7 (``course_document`` / ``course_json``) and the stored
reminders with their delivery (``delivery_documents``); every instant is shown on the
course's wall clock with its weekday (``Mon 2027-01-11 10:00 GMT``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from itertools import pairwise
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from ..core.calendar import local_text
from ..core.progress import (
    PHQ9_MAX,
    REMISSION_BELOW,
    SEVERITY_BANDS,
    CourseWeek,
    course_week,
    percent,
    phq9_progress,
    phq9_text,
    severity,
)
from ..core.wallclock import zone

if TYPE_CHECKING:
    from jinja2 import Environment

#: Events that renegotiate the treatment contract: the focus, its change, more sessions.
RENEGOTIATIONS = ("set_focus", "resolve_focus", "retarget", "extend")
#: An alert stays open while it is not delivered, and for this long after it was due.
OPEN_ALERT_DAYS = 14
ACTIVE = ("intake", "assessment", "intervention", "retargeting", "termination")


@cache
def _environment() -> Environment:
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    env = Environment(
        loader=PackageLoader("ipt_workflow.present", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html", "j2"), default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env


def _local(iso: str | None, tz: ZoneInfo) -> str:
    return local_text(datetime.fromisoformat(iso).astimezone(tz)) if iso else ""


def _at(iso: str) -> datetime:
    return datetime.fromisoformat(iso)


# ---------------------------------------------------------------- course report


def report_view(doc: dict[str, Any], deliveries: Sequence[dict[str, Any]], now: datetime) -> dict[str, Any]:
    """Everything the report template shows, as plain values (texts already on the wall clock)."""
    tz = zone(doc["timezone"])
    sessions = doc["sessions"]
    ended = doc["state"] in ("completed", "withdrawn") and doc["history"]
    when = _at(doc["history"][-1]["at"]) if ended else now  # a course that ended: the week it ended in
    week = _week(sessions, when, tz)
    phq = [m for m in doc["measurements"] if m["instrument"] == "phq9"]
    progress = phq9_progress([m["score"] for m in phq])
    counts = {s: sum(x["status"] == s for x in sessions) for s in ("held", "missed", "cancelled", "planned")}
    alerts = [r for r in deliveries if r["audience"] == "therapist"]
    notices = [r for r in deliveries if r["audience"] == "client"]
    return {
        "course": doc,
        "now": local_text(now.astimezone(tz)),
        "week": (f"{doc['state']} in " if ended else "") + (week.text if week else "no sessions"),
        "counts": counts,
        "moved": sum(bool(s["original_start"]) for s in sessions),
        "sessions": [
            {
                **s,
                "start_text": _local(s["start"], tz),
                "moved_from": _local(s["original_start"], tz),
                "unrecorded": s["status"] == "planned" and _at(s["end"]) <= now,
            }
            for s in sessions
        ],
        "phases": _phases(sessions, tz),
        "timeline": timeline_svg(sessions, now, tz),
        "phq9": phq9_text(progress),
        "progress": progress,
        "change_text": percent(progress.change) if progress and progress.change is not None else "",
        "measures": [
            {**m, "at_text": _local(m["at"], tz), "severity": severity(m["score"]), "change": _change(phq[0], m, i)}
            for i, m in enumerate(phq)
        ],
        "chart": phq9_chart(phq, sessions, tz, now),
        "renegotiations": [
            {**h, "at_text": _local(h["at"], tz), "detail": _data_text(h["data"])}
            for h in doc["history"]
            if h["event"] in RENEGOTIATIONS
        ],
        "alerts": [
            {**r, "due_text": _local(r["due"], tz), "delivered_text": _local(r["delivered_at"], tz)}
            for r in alerts
            if r["status"] != "cancelled" and _at(r["due"]) <= now
        ],
        "alerts_cancelled": sum(r["status"] == "cancelled" for r in alerts),
        "alerts_later": [
            {**r, "due_text": _local(r["due"], tz)}
            for r in alerts
            if r["status"] != "cancelled" and _at(r["due"]) > now
        ],
        "notices": {s: sum(r["status"] == s for r in notices) for s in sorted({r["status"] for r in notices})},
        "history": [{**h, "at_text": _local(h["at"], tz), "detail": _data_text(h["data"])} for h in doc["history"]],
    }


def _week(sessions: Sequence[dict[str, Any]], when: datetime, tz: ZoneInfo) -> CourseWeek | None:
    """The course week of ``when`` by the course's calendar days (sessions start on local time)."""
    if not sessions:
        return None
    first, last = _at(sessions[0]["start"]).date(), _at(sessions[-1]["start"]).date()
    return course_week(first, last, when.astimezone(tz).date())


def _change(baseline: dict[str, Any], m: dict[str, Any], index: int) -> str:
    if index == 0:
        return "baseline"
    if baseline["score"] == 0:
        return f"{m['score'] - baseline['score']:+d}"
    return percent((m["score"] - baseline["score"]) / baseline["score"])


def _data_text(data: dict[str, Any]) -> str:
    """Event data as ``key: value; …`` (lists joined by commas)."""
    parts = []
    for key, value in data.items():
        shown = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
        parts.append(f"{key}: {shown}")
    return "; ".join(parts)


def _phases(sessions: Sequence[dict[str, Any]], tz: ZoneInfo) -> list[dict[str, Any]]:
    """Runs of consecutive sessions in one phase: ``{phase, first, last, start_text, end_text}``."""
    runs: list[dict[str, Any]] = []
    for s in sessions:
        if runs and runs[-1]["phase"] == s["phase"]:
            runs[-1]["last"] = s["number"]
            runs[-1]["end_text"] = _local(s["start"], tz)
        else:
            text = _local(s["start"], tz)
            runs.append({"phase": s["phase"], "first": s["number"], "last": s["number"], "start_text": text,
                         "end_text": text})  # fmt: skip
    return runs


def render_report(view: dict[str, Any]) -> str:
    """The report page (one self-contained HTML document)."""
    return _environment().get_template("report.html.j2").render(**view, version=_version())


def _version() -> str:
    from importlib.metadata import version

    return version("ipt-workflow")


# ---------------------------------------------------------------- charts


@dataclass(frozen=True)
class _Axis:
    """A time axis from ``lo`` to ``hi`` onto ``x0``..``x1`` pixels."""

    lo: datetime
    hi: datetime
    x0: float
    x1: float

    def x(self, when: datetime) -> float:
        span = (self.hi - self.lo).total_seconds() or 1.0
        return round(self.x0 + (when - self.lo).total_seconds() / span * (self.x1 - self.x0), 1)


def _time_axis(instants: Sequence[datetime], x0: float, x1: float) -> _Axis:
    lo, hi = min(instants), max(instants)
    pad = max((hi - lo) / 40, timedelta(days=1))
    return _Axis(lo - pad, hi + pad, x0, x1)


def _ticks(axis: _Axis, tz: ZoneInfo, most: int = 9) -> list[dict[str, Any]]:
    """Date ticks at local midnights, every 1, 2, 4, … weeks so there are at most ``most``."""
    lo = axis.lo.astimezone(tz)
    first = datetime(lo.year, lo.month, lo.day, tzinfo=tz) + timedelta(days=1)
    weeks = 1
    while (axis.hi - axis.lo) / timedelta(weeks=weeks) > most:
        weeks *= 2
    ticks, day = [], first
    while day <= axis.hi:
        ticks.append({"x": axis.x(day), "label": f"{day:%d %b}"})
        day = (day + timedelta(weeks=weeks)).replace(hour=0)
    return ticks


CHART = {"width": 760, "height": 320, "left": 44, "right": 150, "top": 14, "bottom": 40}


def phq9_chart(
    phq: Sequence[dict[str, Any]], sessions: Sequence[dict[str, Any]], tz: ZoneInfo, now: datetime
) -> dict[str, Any]:
    """Geometry of the PHQ-9 chart: bands, reference lines, points (x by date, y by score),
    the line through them and date ticks. With no score it still has the bands."""
    w, h = CHART["width"], CHART["height"]
    x0, x1 = CHART["left"], w - CHART["right"]
    y0, y1 = CHART["top"], h - CHART["bottom"]

    def y(score: float) -> float:
        return round(y1 - score / PHQ9_MAX * (y1 - y0), 1)

    instants = [_at(m["at"]) for m in phq] + [_at(s["start"]) for s in sessions]
    bands: list[dict[str, Any]] = [
        {"lo": lo, "hi": hi, "label": label, "y": y(hi + 1 if hi < PHQ9_MAX else PHQ9_MAX), "height": 0.0,
         "pattern": f"band-{i}", "label_y": 0.0}
        for i, (lo, hi, label) in enumerate(SEVERITY_BANDS)
    ]  # fmt: skip
    for band in bands:
        bottom = y(band["lo"])
        band["height"] = round(bottom - band["y"], 1)
        band["label_y"] = round((bottom + band["y"]) / 2 + 4, 1)
    chart: dict[str, Any] = {
        **CHART, "x0": x0, "x1": x1, "y0": y0, "y1": y1, "bands": bands, "points": [], "line": "",
        "ticks": [], "now_x": None, "y_ticks": [{"y": y(v), "label": v} for v in (0, 5, 10, 15, 20, 27)],
        "baseline": None, "labels": True,
        "refs": _spread([_ref("remission", REMISSION_BELOW, y(REMISSION_BELOW), f"remission < {REMISSION_BELOW}")]),
    }  # fmt: skip
    if not instants:
        return chart
    axis = _time_axis(instants, x0, x1)
    chart["ticks"] = _ticks(axis, tz)
    chart["now_x"] = axis.x(now) if axis.lo <= now <= axis.hi else None
    points = []
    for i, m in enumerate(phq):
        at = _at(m["at"])
        points.append({"x": axis.x(at), "y": y(m["score"]), "score": m["score"], "item9": m["item9"] or 0,
                       "index": i + 1, "severity": severity(m["score"]), "text": _local(m["at"], tz)})  # fmt: skip
    chart["points"] = points
    chart["labels"] = len(points) <= 20
    chart["line"] = " ".join(f"{p['x']},{p['y']}" for p in points)
    if phq:
        baseline = phq[0]["score"]
        chart["baseline"] = baseline
        refs = [_ref("baseline", baseline, y(baseline), f"baseline {baseline}")]
        if baseline > 0:
            half = baseline / 2
            refs.append(_ref("response", half, y(half), f"response ≤ {half:g} (−50 %)"))
        chart["refs"] = _spread([*refs, *chart["refs"]])
    return chart


_REF_STYLE = {
    "baseline": {"stroke": "#1b1f24", "width": 1.6, "dash": "9 4"},
    "response": {"stroke": "#1a6b2f", "width": 2, "dash": "2 3"},
    "remission": {"stroke": "#1a6b2f", "width": 2.5, "dash": "10 3 2 3"},
}


def _ref(kind: str, score: float, y: float, label: str) -> dict[str, Any]:
    return {"kind": kind, "score": f"{score:g}", "y": y, "label": label, "label_y": y + 4, **_REF_STYLE[kind]}


def _spread(refs: list[dict[str, Any]], gap: float = 13.0) -> list[dict[str, Any]]:
    """Reference lines with their right-hand labels moved apart so none overlap."""
    ordered = sorted(refs, key=lambda r: r["y"])
    for above, below in pairwise(ordered):
        below["label_y"] = max(below["label_y"], above["label_y"] + gap)
    return ordered


TIMELINE = {"width": 760, "height": 132, "left": 16, "right": 16}


def timeline_svg(sessions: Sequence[dict[str, Any]], now: datetime, tz: ZoneInfo) -> dict[str, Any]:
    """Geometry of the session timeline: one mark per session (x by its start) with its
    status and whether it was moved, the phase runs as labelled strips, and today."""
    w = TIMELINE["width"]
    if not sessions:
        return {**TIMELINE, "marks": [], "strips": [], "now_x": None, "ticks": []}
    starts = [_at(s["start"]) for s in sessions]
    axis = _time_axis(starts, TIMELINE["left"] + 8, w - TIMELINE["right"] - 8)
    marks = [
        {"x": axis.x(at), "number": s["number"], "status": s["status"], "phase": s["phase"],
         "moved": bool(s["original_start"]), "text": _local(s["start"], tz),
         "unrecorded": s["status"] == "planned" and _at(s["end"]) <= now}
        for s, at in zip(sessions, starts, strict=True)
    ]  # fmt: skip
    strips: list[dict[str, Any]] = []
    for m in marks:
        if strips and strips[-1]["phase"] == m["phase"]:
            strips[-1]["x_end"] = m["x"]
        else:
            strips.append({"phase": m["phase"], "x": m["x"], "x_end": m["x"]})
    for i, strip in enumerate(strips):
        strip["x"] = round(strip["x"] - 7, 1)
        strip["width"] = round(strip["x_end"] - strip["x"] + 7, 1)
        strip["pattern"] = f"phase-{i % 4}"
        # the phase name when it fits, else its first letter (the Phases table names it)
        names = (strip["phase"], strip["phase"][:5] + ".", strip["phase"][:1])
        strip["label"] = next((t for t in names if strip["width"] >= 7 * len(t) + 6), "")
    now_x = axis.x(now) if axis.lo <= now <= axis.hi else None
    return {**TIMELINE, "marks": marks, "strips": strips, "now_x": now_x, "ticks": _ticks(axis, tz)}


# ---------------------------------------------------------------- caseload


def caseload_row(doc: dict[str, Any], deliveries: Sequence[dict[str, Any]], now: datetime) -> dict[str, Any]:
    """One course of the caseload: ``{course, client, therapist, protocol, state, week,
    weeks, held, missed, phq9, phq9_text, open_alerts, next_session}`` (instants ISO 8601:
    ``next_session`` local with its offset, alert ``due`` in UTC). An alert is open while it
    is not delivered (pending or failed) and for ``OPEN_ALERT_DAYS`` after it was due."""
    sessions = doc["sessions"]
    week = _week(sessions, now, zone(doc["timezone"]))
    upcoming = [s for s in sessions if s["status"] == "planned" and _at(s["start"]) >= now]
    since = now - timedelta(days=OPEN_ALERT_DAYS)
    open_alerts = [
        {"kind": r["kind"], "due": r["due"], "status": r["status"], "session": r["session"], "rule": r["rule"]}
        for r in deliveries
        if r["audience"] == "therapist"
        and _at(r["due"]) <= now
        and (r["status"] in ("pending", "failed") or (r["status"] == "delivered" and _at(r["due"]) >= since))
    ]
    phq = [m["score"] for m in doc["measurements"] if m["instrument"] == "phq9"]
    return {
        "course": doc["id"],
        "client": doc["client"],
        "therapist": doc["therapist"],
        "protocol": f"{doc['protocol']}@{doc['protocol_version']}",
        "timezone": doc["timezone"],
        "state": doc["state"],
        "week": week.number if week else 0,
        "weeks": week.total if week else 0,
        "held": sum(s["status"] == "held" for s in sessions),
        "missed": sum(s["status"] == "missed" for s in sessions),
        "phq9": doc["phq9"],
        "phq9_text": phq9_text(phq9_progress(phq)),
        "open_alerts": open_alerts,
        "next_session": upcoming[0]["start"] if upcoming else None,
        "next_session_number": upcoming[0]["number"] if upcoming else None,
    }


def alert_groups(alerts: Sequence[dict[str, Any]], tz: ZoneInfo) -> list[str]:
    """Open alerts one line per kind, in the order first due: ``safety_alert (Mon 2026-03-02
    09:55 GMT)``, or ``attendance_unrecorded ×4, last Mon 2026-04-27 11:05 BST``."""
    kinds: dict[str, list[dict[str, Any]]] = {}
    for a in alerts:
        kinds.setdefault(a["kind"], []).append(a)
    lines = []
    for kind, found in kinds.items():
        last = _local(found[-1]["due"], tz)
        lines.append(f"{kind} ({last})" if len(found) == 1 else f"{kind} ×{len(found)}, last {last}")
    return lines


def week_text(row: dict[str, Any]) -> str:
    if not row["weeks"]:
        return "no sessions"
    return CourseWeek(row["week"], row["weeks"]).text


def caseload_view(rows: Sequence[dict[str, Any]], therapist: str | None, now: datetime, tz: ZoneInfo) -> dict[str, Any]:
    """The caseload page's values; each row's times on its course's wall clock."""
    shown = []
    for r in rows:
        ctz = zone(r["timezone"])
        shown.append({
            **r,
            "week_text": week_text(r),
            "phq9_short": _phq9_short(r["phq9"]),
            "next_text": _local(r["next_session"], ctz),
            "alerts_text": alert_groups(r["open_alerts"], ctz),
        })  # fmt: skip
    return {"rows": shown, "therapist": therapist, "now": local_text(now.astimezone(tz))}


def _phq9_short(phq9: dict[str, Any] | None) -> str:
    """``18 → 7 (−61 %)``; ``baseline 18``; ``none``: the outcome goes in a badge beside it."""
    if phq9 is None:
        return "none"
    if phq9["count"] == 1:
        return f"baseline {phq9['baseline']}"
    change = "" if phq9["change_percent"] is None else f" ({percent(phq9['change_percent'] / 100)})"
    return f"{phq9['baseline']} → {phq9['latest']}{change}"


def render_caseload(view: dict[str, Any]) -> str:
    """The caseload page (one self-contained HTML document)."""
    return _environment().get_template("caseload.html.j2").render(**view, version=_version())
