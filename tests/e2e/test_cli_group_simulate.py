"""``ipt simulate --group FILE`` (SPEC §10): a group and its members run through a file of
events with no store, deterministically."""

from __future__ import annotations

import json
from pathlib import Path

from .conftest import RunIpt, error_line
from .test_cli_courses import ok

GROUP = """\
protocol: ipt-g-8
start: 2027-04-19
time: "10:00"
tz: Europe/London
id: G1
min: 4
members: [m1, m2, m3, {id: m4, pre: "2027-04-16T15:00"}]
events:
  - {at: "2027-04-12T10:05", event: complete_intake, member: m1}
  - {at: "2027-04-19T11:35", event: hold_session, data: {absent: [m2]}}
  - {at: "2027-04-20T09:00", event: withdraw, member: m3}
  - {at: "2027-04-26T11:35", event: hold_session}
  - {at: "2027-04-27T09:00", event: reschedule_session, data: {number: 3, start: "2027-05-05T10:00"}}
"""


def test_a_group_runs_deterministically(ipt: RunIpt, tmp_path: Path) -> None:
    path = tmp_path / "group.yaml"
    path.write_text(GROUP, encoding="utf-8")
    first = ok(ipt("simulate", "--group", path, "--json"))
    assert ok(ipt("simulate", "--group", path, "--json")) == first  # ids and all
    data = json.loads(first)
    group = data["group"]
    assert [s["status"] for s in group["sessions"][:3]] == ["held", "held", "planned"]
    assert group["sessions"][0]["absent"] == ["m2"] and group["sessions"][0]["present"] == ["m1", "m3", "m4"]
    assert group["sessions"][1]["present"] == ["m1", "m2", "m4"]  # m3 withdrew
    assert group["sessions"][2]["start"] == "2027-05-05T10:00:00+01:00"  # moved for everyone
    members = {m["id"]: m for m in data["members"]}
    assert members["m3"]["state"] == "withdrawn"
    # pre-group sessions: m4 at its instant, the others in distinct free slots before the group
    pre = {m: members[m]["sessions"][0]["start"] for m in ("m1", "m2", "m4")}
    assert pre["m4"] == "2027-04-16T15:00:00+01:00" and len(set(pre.values())) == 3
    assert all(p < "2027-04-19" for p in pre.values())
    # every active member's group session 3 (member session 4) is at the new time, told of the move
    for m in ("m1", "m2", "m4"):
        s4 = next(s for s in members[m]["sessions"] if s["number"] == 4)
        assert s4["start"] == "2027-05-05T10:00:00+01:00"
        assert any(r["kind"] == "session_moved" and r["session"] == 4 for r in members[m]["reminders"])
    # the withdrawal took the group below min 4: the therapist is told
    assert any(r["kind"] == "group_size_review" for r in members["m3"]["reminders"])
    table = ok(ipt("simulate", "--group", path))
    assert "group G1" in table and "Wed 2027-05-05 10:00 BST" in table and "withdrawn" in table


def test_a_bad_group_file_is_one_line(ipt: RunIpt, tmp_path: Path) -> None:
    path = tmp_path / "group.yaml"
    path.write_text(GROUP.replace("member: m3", "member: m9"), encoding="utf-8")
    assert error_line(ipt("simulate", "--group", path)) == (
        f"error: {path}: group.events[2].member: 'm9' is not one of the members"
    )
    path.write_text(GROUP.replace("absent: [m2]", "absent: [zz]"), encoding="utf-8")
    line = error_line(ipt("simulate", "--group", path))
    assert line.startswith(f"error: {path}: events[1]: ") and "'zz' is not a member of group G1" in line
