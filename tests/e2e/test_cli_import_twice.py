"""Import you can run twice (issue 15 item 4): a second import of the same rows imports
nothing and says so; each row's course id is reported (``--json``, ``--ids FILE``); the
warnings of ``course create`` come per ``FILE:LINE``."""

from __future__ import annotations

import json
from pathlib import Path

from .conftest import RunIpt, error_line
from .test_cli_courses import ok

HEADER = "client,therapist,protocol,start,time,tz,id"
ROWS = [
    "CL-1,T-1,ipt-16,2027-01-04,10:00,Europe/London,",  # no id: matched by client + protocol + start
    "CL-2,T-1,ipt-16,2027-01-09,11:00,Europe/London,given-2",  # a Saturday
    "CL-3,T-2,ipt-16@1.0.0,2027-01-05,19:00,Europe/London,",  # after working hours
]
NOW = ("--now", "2027-01-01T09:00")


def write(path: Path, rows: list[str]) -> Path:
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    return path


def test_a_second_import_of_the_same_file_imports_nothing_and_says_so(ipt: RunIpt, tmp_path: Path) -> None:
    csv = write(tmp_path / "c.csv", ROWS)
    first = ipt("import", csv, *NOW, "--ids", tmp_path / "ids.csv")
    assert ok(first) == "imported 3 of 3 courses\n"
    assert first.stderr.splitlines() == [
        f"warning: {csv}:3: slot: Saturday is not one of the clinic's working days (mon, tue, wed, thu, fri)",
        f"warning: {csv}:4: slot: 19:00 is outside the clinic's working hours (08:00-18:00)",
    ]
    ids = (tmp_path / "ids.csv").read_text().splitlines()
    assert ids[0] == "line,id,status" and len(ids) == 4
    lines = [row.split(",") for row in ids[1:]]
    assert [(line, status) for line, _, status in lines] == [("2", "imported"), ("3", "imported"), ("4", "imported")]
    assert lines[1][1] == "given-2" and lines[0][1].startswith("crs_")
    listed = {c["id"] for c in json.loads(ok(ipt("course", "list", "--json")))}
    assert listed == {cid for _, cid, _ in lines}

    again = ipt("import", csv, *NOW, "--json")
    report = json.loads(ok(again))
    assert (report["imported"], report["existing"], report["rows"], report["problems"]) == (0, 3, 3, [])
    assert [(r["line"], r["id"], r["status"]) for r in report["courses"]] == [
        (int(line), cid, "existing") for line, cid, _ in lines
    ]
    assert again.stderr == ""  # nothing imported: nothing to warn about
    assert ok(ipt("import", csv, *NOW)) == "imported 0 of 3 courses, 3 already imported (left as they are)\n"
    assert len(json.loads(ok(ipt("course", "list", "--json")))) == 3

    # a file with one new row among the old ones imports just that one
    grown = write(tmp_path / "more.csv", [*ROWS, "CL-4,T-2,ipt-16,2027-01-06,12:00,Europe/London,"])
    assert ok(ipt("import", grown, *NOW)) == "imported 1 of 4 courses, 3 already imported (left as they are)\n"


def test_one_client_twice_in_a_file_is_a_bad_row_and_a_taken_id_still_refused(ipt: RunIpt, tmp_path: Path) -> None:
    twice = write(tmp_path / "twice.csv", [ROWS[0], ROWS[0]])
    line = error_line(ipt("import", twice, *NOW))
    assert line == f"error: {twice}:3: the same client, protocol and start (or group) as line 2"
    assert ok(ipt("import", write(tmp_path / "one.csv", ROWS[1:2]), *NOW)) == "imported 1 of 1 courses\n"
    taken = write(tmp_path / "taken.csv", ["CL-9,T-1,ipt-16,2027-01-11,11:00,Europe/London,given-2"])
    assert error_line(ipt("import", taken, *NOW)) == f"error: {taken}:2: id: course 'given-2' already exists"


def test_a_bad_ids_path_is_refused_before_anything_is_imported(ipt: RunIpt, tmp_path: Path) -> None:
    csv = write(tmp_path / "c.csv", ROWS[:1])
    result = ipt("--db", tmp_path / "x.sqlite", "import", csv, *NOW, "--ids", tmp_path / "missing" / "ids.csv")
    assert result.returncode == 1 and result.stderr.startswith("error: --ids")
    assert not (tmp_path / "x.sqlite").exists()
