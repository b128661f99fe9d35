"""Offset changes of a zone, found from zoneinfo alone: the tests' oracle for DST edges."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo


@dataclass(frozen=True)
class Change:
    """One UTC-offset change of a zone, as zoneinfo reports it."""

    at: datetime  # the UTC instant of the change
    before: timedelta  # offset in force just before
    after: timedelta  # offset in force from ``at`` on
    local_day: date  # the local date of the change

    @property
    def shift(self) -> timedelta:
        return self.after - self.before

    @property
    def forward(self) -> bool:
        return self.after > self.before

    @property
    def wall_from(self) -> time:
        """Spring forward: first missing local time. Fall back: first repeated local time."""
        return (self.at + min(self.before, self.after)).time()

    def wall(self) -> datetime:
        """Naive local time where the gap or overlap starts."""
        return (self.at + min(self.before, self.after)).replace(tzinfo=None)

    @property
    def wall_to(self) -> time:
        """End (exclusive) of the gap or of the overlap, in local time."""
        return (self.at + max(self.before, self.after)).time()


@lru_cache(maxsize=256)
def changes(zone: str, year: int = 2026) -> tuple[Change, ...]:
    """Every offset change of ``zone`` in ``year``, found by an hourly scan then bisection."""
    tz = ZoneInfo(zone)
    out: list[Change] = []
    t = datetime(year, 1, 1, tzinfo=UTC)
    end = datetime(year + 1, 1, 1, tzinfo=UTC)
    prev = t.astimezone(tz).utcoffset()
    assert prev is not None
    while t < end:
        nxt = t + timedelta(hours=1)
        off = nxt.astimezone(tz).utcoffset()
        assert off is not None
        if off != prev:
            lo, hi = t, nxt  # offset(lo) == prev, offset(hi) == off
            while hi - lo > timedelta(minutes=1):
                mid = lo + timedelta(minutes=(hi - lo) // timedelta(minutes=1) // 2)
                if mid.astimezone(tz).utcoffset() == prev:
                    lo = mid
                else:
                    hi = mid
            out.append(Change(at=hi, before=prev, after=off, local_day=hi.astimezone(tz).date()))
            prev = off
        t = nxt
    return tuple(out)
