"""Therapist digests: each time the clinic's ``digest.cron`` fires (an APScheduler 3
``CronTrigger`` in the clinic's zone), every therapist with an active course gets one digest
of that day's planned sessions and their recent and failed alerts.

A digest is a row in ``ipt_digests`` whose id is derived from (therapist, local firing time),
recorded when the firing is seen and then claimed and delivered like a reminder. So it goes
out once whether one daemon, several, or a ``--once`` run every minute sees the firing; a
firing missed while nothing ran goes out late (``late: true``) when a daemon next runs that
same local day; earlier days are not replayed.

Day of week follows crontab(5) (0 and 7 are Sunday), not APScheduler 3's numbering (0 is
Monday): numbers are rewritten as day names before the trigger is built.
"""

from __future__ import annotations

import hashlib
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from ..core.policy import ClinicPolicy
from ..core.wallclock import iso_utc
from ..storage.sql import SqlStore

if TYPE_CHECKING:
    from apscheduler.triggers.cron import CronTrigger

ALERTS_SINCE = timedelta(hours=24)  # a digest lists the alerts due in the day before it
_CRON_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def cron_trigger(expr: str, zone: str) -> CronTrigger:
    """APScheduler's trigger for a (checked) crontab expression, in ``zone``.

    APScheduler 3.11 steps one microsecond past the previous firing with naive arithmetic,
    which drops ``fold``: after a firing in the repeated hour of a fall-back day (01:30 GMT
    after 01:30 BST) it returns that same firing forever and the scheduler thread spins
    (agronholm/apscheduler#1021, #1036). The subclass steps on the UTC timeline instead."""
    from apscheduler.triggers.cron import CronTrigger

    class _FoldSafeCronTrigger(CronTrigger):  # type: ignore[misc]
        def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
            if previous_fire_time is not None:
                now = max(now, datetime.fromtimestamp(previous_fire_time.timestamp() + 1, self.timezone))
            fire: datetime | None = super().get_next_fire_time(None, now)
            return fire

    minute, hour, day, month, weekday = expr.split()
    return _FoldSafeCronTrigger(
        minute=minute, hour=hour, day=day, month=month, day_of_week=_weekday_names(weekday), timezone=ZoneInfo(zone)
    )


def _weekday_names(field: str) -> str:
    """A crontab day-of-week field as APScheduler day names (``1-5`` -> ``mon,tue,wed,thu,fri``)."""
    if field == "*":
        return "*"
    days: set[int] = set()
    for part in field.lower().split(","):
        body, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if body == "*":
            low, high = 0, 6
        elif "-" in body:
            first, last = body.split("-")
            low, high = _cron_day(first), _cron_day(last)
        else:
            low = _cron_day(body)
            high = 6 if step_text else low
        if high < low:  # a range across the week's end: fri-mon, sat-sun
            high += 7
        days.update(d % 7 for d in range(low, high + 1, step))
    if len(days) == 7:
        return "*"
    return ",".join(_CRON_DAYS[d] for d in sorted(days, key=lambda d: (d - 1) % 7))


def _cron_day(value: str) -> int:
    """A crontab day of week, a name or 0-7, as 0-7 (0 and 7 are Sunday)."""
    return _CRON_DAYS.index(value) if value in _CRON_DAYS else int(value)


def fires_between(trigger: CronTrigger, start: datetime, end: datetime) -> list[datetime]:
    """The trigger's firing instants in ``[start, end]``."""
    out: list[datetime] = []
    fire = trigger.get_next_fire_time(None, start)
    while fire is not None and fire <= end:
        out.append(fire)
        fire = trigger.get_next_fire_time(fire, fire)
    return out


def fires_today(clinic: ClinicPolicy, now: datetime) -> list[datetime]:
    """The digest firings of the clinic's local day of ``now``, up to ``now``."""
    if not clinic.digest.cron:
        return []
    zone = ZoneInfo(clinic.timezone)
    midnight = datetime.combine(now.astimezone(zone).date(), time(0), zone)
    return fires_between(cron_trigger(clinic.digest.cron, clinic.timezone), midnight, now)


def digest_id(therapist: str, fire_local: str, site: str) -> str:
    """The stable id (and idempotency key) of one therapist's digest for one firing at one
    site (clinic.yaml ``site``, else the database's): two clinics never share one."""
    return "dig_" + hashlib.sha256(f"digest|{site}|{therapist}|{fire_local}".encode()).hexdigest()[:24]


def record_digests(store: SqlStore, clinic: ClinicPolicy, now: datetime) -> int:
    """Record the digests of today's firings up to ``now`` for every therapist with an active
    course (an id already recorded stays as it is); returns how many are new."""
    return store.add_digests(digests_of_today(store, clinic, now))


def unrecorded_digests(store: SqlStore, clinic: ClinicPolicy, now: datetime) -> list[dict[str, Any]]:
    """The rows ``record_digests`` would add at ``now``, read only (``ipt daemon --dry-run``)."""
    rows = digests_of_today(store, clinic, now)
    known = store.digest_ids([row["id"] for row in rows])
    return [row for row in rows if row["id"] not in known]


def digests_of_today(store: SqlStore, clinic: ClinicPolicy, now: datetime) -> list[dict[str, Any]]:
    """A digest row (``{id, therapist, fire_local, timezone, due, site}``) for each of today's firings
    up to ``now`` and each therapist with an active course."""
    fires = fires_today(clinic, now)
    if not fires:
        return []
    zone = ZoneInfo(clinic.timezone)
    therapists = store.active_therapists()
    site = clinic.site or store.site()
    rows = []
    for fire in fires:
        fire_local = fire.astimezone(zone).replace(tzinfo=None).isoformat(timespec="seconds")
        for therapist in therapists:
            rows.append({
                "id": digest_id(therapist, fire_local, site), "therapist": therapist, "fire_local": fire_local,
                "timezone": clinic.timezone, "due": fire, "site": site,
            })  # fmt: skip
    return rows


def digest_body(store: SqlStore, row: dict[str, Any]) -> dict[str, Any]:
    """What a digest carries besides the common fields: the site its id was made with (the
    database's for a digest recorded before the site was stored), the therapist, the local date,
    the planned sessions of that date (``{course, number, start}``, by start; a group's session
    once, as ``{course: null, group, number, start}``, its members' not) and the alerts
    (``{id, course, kind, due, status}``) due in the 24 hours before it or ``failed``."""
    zone = ZoneInfo(row["timezone"])
    day: date = datetime.fromisoformat(row["fire_local"]).date()
    day_start = datetime.combine(day, time(0), zone)
    day_end = datetime.combine(day + timedelta(days=1), time(0), zone)
    plans, alerts = store.digest_sources(row["therapist"], row["due"] - ALERTS_SINCE, row["due"])
    sessions = []
    for course, plan in plans:
        for session in plan:
            start = datetime.fromisoformat(session[2])
            if session[3] == "planned" and day_start <= start < day_end:
                sessions.append((start, course, session[0], session[2]))
    entries = [(start, {"course": c, "number": n, "start": s}) for start, c, n, s in sessions]
    for group, stored in store.digest_groups(row["therapist"]):  # a group's session once, not per member
        for number, iso, status, *_ in stored:
            start = datetime.fromisoformat(iso)
            if status == "planned" and day_start <= start < day_end:
                entries.append((start, {"course": None, "group": group, "number": number, "start": iso}))
    entries.sort(key=lambda e: (e[0], e[1]["course"] or e[1].get("group", ""), e[1]["number"]))
    return {
        "site": row.get("site") or store.site(),
        "therapist": row["therapist"],
        "date": day.isoformat(),
        "sessions": [e for _, e in entries],
        "alerts": [{**a, "due": iso_utc(a["due"])} for a in alerts],
    }
