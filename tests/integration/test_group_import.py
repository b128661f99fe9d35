"""``ipt import`` with a ``group`` column (SPEC §10): a row joins that group as ``ipt group
add`` does, pre-group sessions placed clear of every other row and booking; all or nothing,
every bad row reported as ``FILE:LINE: message``; on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from ipt_workflow.core.errors import ConflictError, InvalidInput
from ipt_workflow.workflow import Workflow

HEADER = "client,therapist,protocol,start,time,tz,id,group"


def _csv(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join([HEADER, *lines]) + "\n", encoding="utf-8")
    return path


def _setup(wf: Workflow) -> None:
    wf.create_group(protocol="ipt-g-8", therapist="T-1", start="2027-04-19", time="10:00", tz="Europe/London",
                    group_id="G1", min=2, max=4)  # fmt: skip
    wf.create_group(protocol="ipt-g-8", therapist="T-2", start="2027-04-20", time="14:00", tz="Europe/London",
                    group_id="G2", min=1, max=1)  # fmt: skip
    wf.add_member("G2", client="c0", course_id="g2m0")


def test_rows_with_a_group_join_it_with_distinct_pre_group_sessions(db_url: str, tmp_path: Path) -> None:
    clock = datetime(2027, 4, 1, 9, tzinfo=UTC)
    with Workflow(db_url, clock=lambda: clock) as wf:
        _setup(wf)
        path = _csv(tmp_path / "c.csv", [
            "CL-1,T-1,ipt-16,2027-04-05,09:00,Europe/London,solo,",  # T-1's Monday 09:00-10:00 is taken
            "CL-2,,,,,,j1,G1",
            "CL-3,T-1,ipt-g-8,2027-04-19,10:00,Europe/London,j2,G1",
            "CL-4,,ipt-g-8,,,,j3,G1",
        ])  # fmt: skip
        report = wf.import_csv(path)
        assert report.imported == 4 and report.problems == []
        members = {m["course"]: m["state"] for m in wf.group("G1").model_dump(mode="json")["members"]}
        assert sorted(members) == ["j1", "j2", "j3"]
        pre = [wf.plan(m).sessions[0] for m in ("j1", "j2", "j3")]
        solo = [s for s in wf.plan("solo").sessions if s.status.value == "planned"]
        spans = [(s.start, s.start + timedelta(minutes=s.duration_minutes)) for s in pre + solo]
        for i, (a0, a1) in enumerate(spans):  # no two of the therapist's sessions overlap
            for b0, b1 in spans[i + 1 :]:
                assert a1 <= b0 or b1 <= a0
        first = datetime.fromisoformat(wf.group("G1").model_dump(mode="json")["sessions"][0]["start"])
        assert all(first - timedelta(days=14) <= s.start < first for s in pre)
        assert pre[0].start.isoformat() == "2027-04-05T10:00:00+01:00"  # after solo's 09:00 session
        # the group's sessions are its members' group sessions
        j1 = wf.plan("j1").sessions
        group = wf.group("G1").model_dump(mode="json")
        assert [s.start.isoformat() for s in j1[1:]] == [s["start"] for s in group["sessions"]]


def test_bad_group_rows_are_reported_by_line_and_nothing_is_written(
    db_url: str, raw_engine: Engine, tmp_path: Path
) -> None:
    clock = datetime(2027, 4, 1, 9, tzinfo=UTC)
    with Workflow(db_url, clock=lambda: clock) as wf:
        _setup(wf)
        path = _csv(tmp_path / "c.csv", [
            "CL-1,,,,,,ok1,G1",
            "CL-2,,,,,,x1,NOPE",
            "CL-3,,,,,,x2,G2",
            "CL-4,,ipt-16,,,,x3,G1",
            "CL-5,T-9,,,,,x4,G1",
            "CL-6,,,2027-04-26,,,x5,G1",
            "CL-7,T-1,ipt-16,2027-04-05,12:00,Europe/London,plain,",
        ])  # fmt: skip
        with pytest.raises(InvalidInput) as caught:
            wf.import_csv(path)
        assert str(caught.value).splitlines() == [
            f"{path}:3: group: unknown group 'NOPE'",
            f"{path}:4: group: group G2 is full (1 of 1 members)",
            f"{path}:5: protocol: ipt-16 is not a group protocol (format: individual); group G1 follows ipt-g-8",
            f"{path}:6: therapist: T-9 is not group G1's (T-1)",
            f"{path}:7: start: 2027-04-26 is not group G1's start (2027-04-19)",
        ]
        with raw_engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM ipt_courses")).scalar() == 1  # g2m0 alone
        # skipping the bad rows imports the good ones
        report = wf.import_csv(path, skip_bad=True)
        assert report.imported == 2
        assert [m["course"] for m in wf.group("G1").model_dump(mode="json")["members"]] == ["ok1"]


def test_a_member_added_meanwhile_refuses_the_import_whole(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another writer adds a member to G1 between the import's checks and its transaction:
    the import writes nothing and says so (the room it checked may be gone)."""
    clock = datetime(2027, 4, 1, 9, tzinfo=UTC)
    with Workflow(db_url, clock=lambda: clock) as wf, Workflow(db_url, clock=lambda: clock) as other:
        _setup(wf)
        path = _csv(tmp_path / "c.csv", ["CL-1,,,,,,j1,G1", "CL-2,,,,,,j2,G1"])
        write = wf.store.write_batches

        def racing(*args: object, **kwargs: object) -> int:
            other.add_member("G1", client="late", course_id="late")
            return write(*args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(wf.store, "write_batches", racing)
        with pytest.raises(ConflictError) as caught:
            wf.import_csv(path)
        assert str(caught.value) == (
            "group 'G1' changed while the file was read (another writer added a member or moved its sessions); "
            "nothing was written: import it again"
        )
        assert [m["course"] for m in wf.group("G1").model_dump(mode="json")["members"]] == ["late"]
