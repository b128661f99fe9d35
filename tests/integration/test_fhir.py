"""FHIR R4 out and in (SPEC §12): every exported resource validates with the ``fhir.resources``
R4B models, references resolve inside the Bundle, identifiers are stable; an EHR's changes come
back as course events, all or nothing, each resource version once, bad resources named."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fhir.resources.R4B import get_fhir_model_class

from ipt_workflow import Workflow
from ipt_workflow.core.errors import InvalidInput
from ipt_workflow.delivery.dispatch import dispatch_due
from ipt_workflow.delivery.sinks import CallableSink
from ipt_workflow.interop.fhir import PHQ9_ITEM9, PHQ9_PANEL, PHQ9_TOTAL

T0 = datetime(2027, 1, 1, 9, 0, tzinfo=UTC)
IPT = str(Path(sys.executable).parent / "ipt")
SESSION = "urn:ipt-workflow:session"
COURSE = "urn:ipt-workflow:course"


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def wf(tmp_path: Path, clock: Clock) -> Iterator[Workflow]:
    with Workflow(str(tmp_path / "x.sqlite"), clock=clock) as w:
        yield w


def busy_course(wf: Workflow, clock: Clock) -> None:
    """A course with held, missed, cancelled, moved and planned sessions, PHQ-9s (one with
    item 9), delivered, skipped, cancelled and pending reminders and a safety alert."""
    wf.create_course(client="CL-1", start="2027-01-11", time="10:00", tz="Europe/London", therapist="T-07",
                     course_id="c-1")  # fmt: skip
    wf.apply("c-1", "record_measure", {"instrument": "phq9", "score": 14, "item9": 0}, at=T0)
    wf.apply("c-1", "complete_intake", at=T0)
    dispatch_due(wf.store, datetime(2027, 1, 10, 10, 0, tzinfo=UTC), [CallableSink(lambda e: None)])
    for n, event in ((1, "hold_session"), (2, "miss_session")):
        clock.now = datetime(2027, 1, 11, 11, 0, tzinfo=UTC) + timedelta(weeks=n - 1)
        wf.apply("c-1", event, {"number": n})
    clock.now = datetime(2027, 1, 19, 12, 0, tzinfo=UTC)
    wf.apply("c-1", "cancel_session", {"number": 3})
    wf.apply("c-1", "reschedule_session", {"number": 4, "start": "2027-02-02T15:00"})
    wf.apply("c-1", "record_measure", {"instrument": "phq9", "score": 11, "item9": 1})


def entries(bundle: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


def appointment(bundle: dict[str, Any], number: int) -> dict[str, Any]:
    value = f"c-1/{number}"
    return next(a for a in entries(bundle, "Appointment") if a["identifier"][0]["value"] == value)


def test_every_exported_resource_validates_and_every_reference_resolves(wf: Workflow, clock: Clock) -> None:
    busy_course(wf, clock)
    bundle = wf.export_fhir(["c-1"])
    get_fhir_model_class("Bundle").model_validate(bundle)
    kinds = set()
    for entry in bundle["entry"]:
        resource = entry["resource"]
        kinds.add(resource["resourceType"])
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
        assert entry["fullUrl"].startswith("urn:uuid:")
        ident = resource["identifier"][0]
        condition = "identifier=" + quote(f"{ident['system']}|{ident['value']}", safe=":/|@")
        assert entry["request"] == {"method": "POST", "url": resource["resourceType"], "ifNoneExist": condition}
    assert kinds == {"PlanDefinition", "CarePlan", "Appointment", "CommunicationRequest", "Observation"}
    urls = {e["fullUrl"] for e in bundle["entry"]}
    assert len(urls) == len(bundle["entry"])
    text = json.dumps(bundle)
    local = {part.split('"')[0] for part in text.split('"reference": "')[1:]}
    assert local and local <= urls  # every reference inside the Bundle resolves
    assert bundle["type"] == "transaction"


def test_the_mapping(wf: Workflow, clock: Clock) -> None:
    busy_course(wf, clock)
    bundle = wf.export_fhir(["c-1"])
    [plan_def] = entries(bundle, "PlanDefinition")
    assert (plan_def["url"], plan_def["version"]) == ("urn:ipt-workflow:protocol:ipt-16", "1.0.0")
    [careplan] = entries(bundle, "CarePlan")
    assert careplan["instantiatesCanonical"] == ["urn:ipt-workflow:protocol:ipt-16|1.0.0"]
    assert careplan["status"] == "active"
    assert careplan["subject"] == {"identifier": {"system": "urn:ipt-workflow:client", "value": "CL-1"},
                                   "type": "Patient"}  # fmt: skip
    assert len(careplan["activity"]) == len(entries(bundle, "Appointment"))
    statuses = [appointment(bundle, n)["status"] for n in (1, 2, 3, 4, 5)]
    assert statuses == ["fulfilled", "noshow", "cancelled", "booked", "booked"]
    moved = appointment(bundle, 4)
    assert (moved["start"], moved["end"]) == ("2027-02-02T15:00:00+00:00", "2027-02-02T15:50:00+00:00")
    assert {p["actor"]["identifier"]["value"] for p in moved["participant"]} == {"CL-1", "T-07"}
    requests = entries(bundle, "CommunicationRequest")
    by_status = {r["status"] for r in requests}
    assert {"completed", "revoked", "active"} <= by_status
    [safety] = [r for r in requests if r["payload"][0]["contentString"] == "safety_alert"]
    assert safety["priority"] == "stat"
    assert safety["category"][0]["coding"][0]["code"] == "alert"
    assert {r["category"][0]["coding"][0]["code"] for r in requests} == {"reminder", "alert"}
    observations = entries(bundle, "Observation")
    assert [(o["valueInteger"], o["component"][0]["valueInteger"]) for o in observations] == [(14, 0), (11, 1)]
    for o in observations:
        assert o["code"]["coding"][0]["code"] == PHQ9_TOTAL
        assert o["component"][0]["code"]["coding"][0]["code"] == PHQ9_ITEM9
        assert o["category"][0]["coding"][0]["code"] == "survey"


def test_exporting_twice_gives_the_same_bundle(wf: Workflow, clock: Clock) -> None:
    busy_course(wf, clock)
    assert wf.export_fhir(["c-1"]) == wf.export_fhir(every=True)


def test_protocols_show_format_fhir_is_a_plan_definition() -> None:
    out = subprocess.run([IPT, "protocols", "show", "ipt-b-8", "--format", "fhir"],
                         capture_output=True, text=True, check=True)  # fmt: skip
    resource = json.loads(out.stdout)
    get_fhir_model_class("PlanDefinition").model_validate(resource)
    assert resource["url"].endswith(":protocol:ipt-b-8")


def server_copy(resource: dict[str, Any], rid: str, version: str, updated: str) -> dict[str, Any]:
    """The resource as a FHIR server hands it back: with an id, meta.versionId and lastUpdated."""
    return {**copy.deepcopy(resource), "id": rid, "meta": {"versionId": version, "lastUpdated": updated}}


def batch(*resources: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}


def test_round_trip_export_change_ingest(wf: Workflow, clock: Clock) -> None:
    busy_course(wf, clock)
    bundle = wf.export_fhir(["c-1"])
    clock.now = datetime(2027, 2, 9, 12, 0, tzinfo=UTC)
    held = {**server_copy(appointment(bundle, 4), "a4", "2", "2027-02-02T16:00:00Z"), "status": "fulfilled"}
    moved = {**server_copy(appointment(bundle, 6), "a6", "3", "2027-02-01T09:00:00Z"),
             "start": "2027-02-17T09:30:00Z", "end": "2027-02-17T10:20:00Z"}  # fmt: skip
    noshow = {**server_copy(appointment(bundle, 5), "a5", "2", "2027-02-08T11:00:00Z"), "status": "noshow"}
    phq = server_copy(entries(bundle, "Observation")[0], "o9", "1", "2027-02-03T11:00:00Z")
    phq.update(effectiveDateTime="2027-02-03T10:00:00Z", valueInteger=8)
    phq["component"][0]["valueInteger"] = 0
    report = wf.ingest_fhir(batch(held, moved, noshow, phq))
    assert [(p, e) for p, _, e in report.applied] == [
        ("entry[0].resource", "hold_session"), ("entry[1].resource", "reschedule_session"),
        ("entry[2].resource", "miss_session"), ("entry[3].resource", "record_measure"),
    ]  # fmt: skip
    course = wf.course("c-1")
    status = {s.number: s.status.value for s in wf.plan("c-1").sessions}
    assert (status[4], status[5]) == ("held", "missed")
    six = next(s for s in wf.plan("c-1").sessions if s.number == 6)
    assert six.start.isoformat() == "2027-02-17T09:30:00+00:00"
    assert (course.measurements[-1].score, course.measurements[-1].at) == (8, datetime(2027, 2, 3, 10, 0, tzinfo=UTC))
    events = [h.event for h in course.history]
    assert events[-4:] == ["hold_session", "reschedule_session", "miss_session", "record_measure"]
    # The same versions again: applied once. A new version repeating a status: nothing to do.
    again = wf.ingest_fhir(batch(held, moved, noshow, phq))
    # The move's version changes nothing either: session 6 is already there. Each counts as already applied.
    assert (again.applied, again.already, again.unchanged) == ([], 4, 0)
    newer = {**held, "meta": {"versionId": "3", "lastUpdated": "2027-02-09T11:30:00Z"}}
    third = wf.ingest_fhir(batch(newer))
    assert (third.applied, third.already, third.unchanged) == ([], 1, 1)
    assert [h.event for h in wf.course("c-1").history] == events
    # The export now says what the EHR said.
    after = wf.export_fhir(["c-1"])
    assert (appointment(after, 4)["status"], appointment(after, 5)["status"]) == ("fulfilled", "noshow")


def test_a_questionnaire_response_records_a_phq9(wf: Workflow, clock: Clock) -> None:
    busy_course(wf, clock)
    clock.now = datetime(2027, 2, 3, 12, 0, tzinfo=UTC)
    answers = [1, 1, 2, 0, 1, 1, 0, 1, 2]  # item 9 last
    items = [{"linkId": f"/4451{i}-x", "answer": [{"valueInteger": a}]} for i, a in enumerate(answers[:8])]
    items.append({"linkId": f"/{PHQ9_ITEM9}",
                  "answer": [{"valueCoding": {"system": "http://loinc.org", "code": "LA6570-1"}}]})  # fmt: skip
    response = {
        "resourceType": "QuestionnaireResponse", "id": "qr1", "meta": {"versionId": "1"},
        "questionnaire": f"http://loinc.org/q/{PHQ9_PANEL}", "status": "completed",
        "authored": "2027-02-03T10:00:00+00:00",
        "basedOn": [{"identifier": {"system": COURSE, "value": "c-1"}}],
        "item": items,
    }  # fmt: skip
    get_fhir_model_class("QuestionnaireResponse").model_validate(response)
    report = wf.ingest_fhir(response)
    assert report.applied == [("resource", "c-1", "record_measure")]
    m = wf.course("c-1").measurements[-1]
    assert (m.score, m.item9) == (sum(answers), 2)
    assert "safety_alert" in [r.kind for r in wf.reminders(course="c-1", status="pending")]


BAD: list[tuple[str, Any, str]] = [
    ("no id", {"id": None}, "entry[0].resource.id: missing (the server's id names the resource version ingested)"),
    ("no version", {"meta": {}},
     "entry[0].resource.meta.versionId: missing (each version of a resource is applied once)"),
    ("not our identifier", {"identifier": [{"system": "urn:other", "value": "x"}]},
     f"entry[0].resource.identifier: none with system {SESSION}"),
    ("unknown session", {"identifier": [{"system": SESSION, "value": "c-1/99"}]},
     "entry[0].resource.identifier.value: no session 99 of course 'c-1'"),
    ("unknown course", {"identifier": [{"system": SESSION, "value": "nope/2"}]},
     "entry[0].resource.identifier.value: no session 2 of course 'nope'"),
    ("bad value", {"identifier": [{"system": SESSION, "value": "c-1"}]},
     "entry[0].resource.identifier.value: 'c-1' is not COURSE/NUMBER"),
    ("bad status", {"status": "teleported"}, "entry[0].resource.status: 'teleported' is not an Appointment status"),
    ("no status", {"status": None}, "entry[0].resource.status: missing"),
    ("naive start", {"start": "2027-02-17T09:30"}, "entry[0].resource.start: '2027-02-17T09:30' has no UTC offset"),
    ("bad start", {"start": "soon"}, "entry[0].resource.start: 'soon' is not an ISO 8601 instant"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "change", "line"), BAD, ids=[b[0] for b in BAD])
def test_a_bad_appointment_is_one_line_and_nothing_is_applied(
    wf: Workflow, clock: Clock, what: str, change: dict[str, Any], line: str
) -> None:
    busy_course(wf, clock)
    bundle = wf.export_fhir(["c-1"])
    clock.now = datetime(2027, 2, 3, 12, 0, tzinfo=UTC)
    bad = server_copy(appointment(bundle, 5), "a5", "2", "2027-02-03T11:00:00Z")
    bad.update(change)
    good = {**server_copy(appointment(bundle, 4), "a4", "2", "2027-02-02T16:00:00Z"), "status": "fulfilled"}
    before = wf.course("c-1")
    with pytest.raises(InvalidInput) as raised:
        wf.ingest_fhir(batch(bad, good))
    assert str(raised.value) == line
    assert wf.course("c-1") == before  # the good one was not applied either


BAD_MEASURES: list[tuple[str, Any, str]] = [
    ("no item 9", {"component": []}, f"entry[0].resource.component: no item 9 (LOINC {PHQ9_ITEM9}): "
                                     "a safety alert depends on it"),
    ("score too high", {"valueInteger": 28}, "entry[0].resource.valueInteger: 28 is outside 0..27"),
    ("score not a number", {"valueInteger": "12"}, "entry[0].resource.valueInteger: missing or not a whole number"),
    ("not final", {"status": "preliminary"}, "entry[0].resource.status: 'preliminary': only a final PHQ-9 is recorded"),
    ("no course", {"basedOn": []}, f"entry[0].resource.basedOn: no CarePlan identifier with system {COURSE}"),
    ("no time", {"effectiveDateTime": None}, "entry[0].resource.effectiveDateTime: missing"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "change", "line"), BAD_MEASURES, ids=[b[0] for b in BAD_MEASURES])
def test_a_bad_phq9_observation_is_one_line(
    wf: Workflow, clock: Clock, what: str, change: dict[str, Any], line: str
) -> None:
    busy_course(wf, clock)
    bundle = wf.export_fhir(["c-1"])
    bad = server_copy(entries(bundle, "Observation")[0], "o1", "2", "2027-02-03T11:00:00Z")
    bad.update(change)
    with pytest.raises(InvalidInput) as raised:
        wf.ingest_fhir(batch(bad))
    assert str(raised.value) == line


def test_a_refused_event_names_the_resource_and_several_bad_ones_each_get_a_line(wf: Workflow, clock: Clock) -> None:
    busy_course(wf, clock)
    bundle = wf.export_fhir(["c-1"])
    clock.now = datetime(2027, 2, 3, 12, 0, tzinfo=UTC)
    early = {**server_copy(appointment(bundle, 8), "a8", "2", "2027-02-03T11:00:00Z"), "status": "fulfilled"}
    item9 = server_copy(entries(bundle, "Observation")[0], "o1", "2", "2027-02-03T11:00:00Z")
    item9["valueInteger"], item9["component"][0]["valueInteger"] = 1, 3
    with pytest.raises(InvalidInput) as raised:
        wf.ingest_fhir(batch(early, item9))
    lines = str(raised.value).split("\n")
    assert len(lines) == 2
    assert lines[0].startswith("entry[0].resource: hold_session: ") and "session 8 starts" in lines[0]
    assert lines[1].startswith("entry[1].resource: record_measure: ") and "item9" in lines[1]


def test_the_cli_ingests_from_a_file_or_stdin_and_refuses_with_exit_1(tmp_path: Path, clock: Clock) -> None:
    db = tmp_path / "cli.sqlite"
    with Workflow(str(db), clock=clock) as w:
        busy_course(w, clock)
    exported = subprocess.run([IPT, "--db", str(db), "export", "fhir", "c-1", "--out", str(tmp_path / "b.json")],
                              capture_output=True, text=True)  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    bundle = json.loads((tmp_path / "b.json").read_text())
    held = {**server_copy(appointment(bundle, 4), "a4", "2", "2027-02-02T16:00:00Z"), "status": "fulfilled"}
    (tmp_path / "in.json").write_text(json.dumps(batch(held)))
    now = ["--now", "2027-02-03T12:00:00Z"]
    run = subprocess.run([IPT, "--db", str(db), "ingest", "fhir", str(tmp_path / "in.json"), *now],
                         capture_output=True, text=True)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout == "entry[0].resource: hold_session on c-1\n"
    again = subprocess.run([IPT, "--db", str(db), "ingest", "fhir", "-", *now, "--json"], input=json.dumps(batch(held)),
                           capture_output=True, text=True)  # fmt: skip
    assert json.loads(again.stdout) == {"applied": [], "already": 1, "unchanged": 0}
    bad_bundle = {"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Appointment"}}, {}]}
    bad = subprocess.run([IPT, "--db", str(db), "ingest", "fhir", "-", *now], input=json.dumps(bad_bundle),
                         capture_output=True, text=True)  # fmt: skip
    assert bad.returncode == 1
    assert bad.stderr.splitlines() == [
        "error: entry[0].resource.id: missing (the server's id names the resource version ingested)",
        "error: entry[1].resource: missing",
    ]
    junk = subprocess.run([IPT, "--db", str(db), "ingest", "fhir", "-"], input="{", capture_output=True, text=True)
    assert (junk.returncode, junk.stderr) == (
        1,
        "error: stdin: line 1 column 2: not JSON (Expecting property name enclosed in double quotes)\n",
    )
    usage = subprocess.run([IPT, "--db", str(db), "export", "fhir"], capture_output=True, text=True)
    assert usage.returncode == 2


def test_a_bundle_of_2000_updates_is_one_transaction_each_event_applied_once(
    wf: Workflow, clock: Clock, tmp_path: Path
) -> None:
    """200 courses, 10 Appointment updates each (sessions 1-10 held, missed or cancelled),
    the entries interleaved across courses: one write transaction; each course gets its 10
    events in session order, once; a bad last entry writes nothing; the Bundle again changes
    nothing."""
    from sqlalchemy import event, func, select

    from ipt_workflow.storage import schema as t

    rows = ["client,therapist,protocol,start,time,tz"]
    rows += [f"CL-{i:03d},T-{i:03d},ipt-16,2027-01-11,10:00,Europe/London" for i in range(200)]
    (tmp_path / "c.csv").write_text("\n".join(rows) + "\n")
    assert wf.import_csv(tmp_path / "c.csv").imported == 200
    ids = [c.id for c in wf.courses()]
    bundle = wf.export_fhir(ids)
    by_value = {a["identifier"][0]["value"]: a for a in entries(bundle, "Appointment")}
    statuses = ["fulfilled", "noshow", "cancelled"]
    updates = [
        {**server_copy(by_value[f"{cid}/{n}"], f"a-{cid}-{n}", "2", "2027-03-20T10:00:00Z"),
         "status": statuses[(i + n) % 3]}
        for n in range(1, 11)
        for i, cid in enumerate(ids)
    ]  # fmt: skip
    assert len(updates) == 2000
    clock.now = datetime(2027, 3, 21, 12, 0, tzinfo=UTC)
    late = copy.deepcopy(updates[-1])
    late.update(id="late", status="fulfilled")
    late["meta"]["lastUpdated"] = "2027-04-01T00:00:00Z"  # after now: refused, and with it the whole Bundle
    history = {cid: len(wf.course(cid).history) for cid in ids}
    with pytest.raises(InvalidInput, match=r"^entry\[2000\]\.resource: hold_session: entry\[2000\]\.resource: at: "):
        wf.ingest_fhir(batch(*updates, late))
    assert all(len(wf.course(cid).history) == history[cid] for cid in ids)

    writes: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.startswith("BEGIN IMMEDIATE"):
            writes.append(statement)

    event.listen(wf.store.engine, "before_cursor_execute", count)
    try:
        report = wf.ingest_fhir(batch(*updates))
    finally:
        event.remove(wf.store.engine, "before_cursor_execute", count)
    assert len(writes) == 1
    assert [p for p, _, _ in report.applied] == [f"entry[{i}].resource" for i in range(2000)]
    assert (report.already, report.unchanged) == (0, 0)
    kinds = {"fulfilled": ("hold_session", "held"), "noshow": ("miss_session", "missed"),
             "cancelled": ("cancel_session", "cancelled")}  # fmt: skip
    for i, cid in enumerate(ids):
        expected = [kinds[statuses[(i + n) % 3]] for n in range(1, 11)]
        course = wf.course(cid)
        assert [(h.event, h.data["number"]) for h in course.history[history[cid] :]] == [
            (event_name, n) for n, (event_name, _) in zip(range(1, 11), expected, strict=True)
        ]
        status = {s.number: s.status.value for s in wf.plan(cid).sessions}
        assert [status[n] for n in range(1, 11)] == [state for _, state in expected]
    with wf.store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(t.ingested)).scalar() == 2000
    again = wf.ingest_fhir(batch(*updates))
    assert (again.applied, again.already) == ([], 2000)
    assert sum(len(wf.course(cid).history) for cid in ids) == sum(history.values()) + 2000


def test_the_cli_writes_the_bundle_it_streams_exactly_as_json_dumps_would(wf: Workflow, clock: Clock,
                                                                          tmp_path: Path) -> None:  # fmt: skip
    busy_course(wf, clock)
    wf.create_course(client="CL-2", start="2027-01-12", time="09:00", tz="Pacific/Chatham", therapist="T-08",
                     course_id="c-2")  # fmt: skip
    db = str(wf.store.engine.url.database)
    for args in (["--all"], ["c-2", "c-1", "c-2"], ["c-1", "--since", "2030-01-01T00:00:00Z"]):
        ids = [a for a in args if a.startswith("c-")]
        since = datetime(2030, 1, 1, tzinfo=UTC) if "--since" in args else None
        expected = json.dumps(wf.export_fhir(ids, every="--all" in args, since=since), indent=2,
                              ensure_ascii=False) + "\n"  # fmt: skip
        run = subprocess.run([IPT, "--db", db, "export", "fhir", *args], capture_output=True, text=True)
        assert (run.returncode, run.stdout) == (0, expected), run.stderr
        out = tmp_path / "b.json"
        run = subprocess.run([IPT, "--db", db, "export", "fhir", *args, "--out", str(out)], capture_output=True)
        assert run.returncode == 0 and out.read_text(encoding="utf-8") == expected
    assert len(json.loads(expected)["entry"]) == 0  # --since after every change: an empty Bundle
    missing = subprocess.run([IPT, "--db", db, "export", "fhir", "c-1", "nope", "--out", str(tmp_path / "n.json")],
                             capture_output=True, text=True)  # fmt: skip
    assert (missing.returncode, missing.stdout, missing.stderr) == (1, "", "error: unknown course 'nope'\n")
    assert not list(tmp_path.glob("n.json*"))
