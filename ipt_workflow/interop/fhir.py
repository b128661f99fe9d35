"""FHIR R4 out and in (SPEC §12), as plain JSON dicts: no I/O, no clock.

Out: ``course_resources`` maps one course (its sessions, stored reminders and PHQ-9s) to a
CarePlan, an Appointment per session, a CommunicationRequest per reminder or alert and an
Observation per PHQ-9; ``plan_definition`` maps a protocol; ``transaction`` wraps resources in
a ``transaction`` Bundle whose entries are conditional creates (``ifNoneExist`` on the stable
identifier) with ``urn:uuid:`` fullUrls derived from that identifier, so exporting twice gives
the same ids and posting twice creates nothing twice. Patient and Practitioner are referenced
by identifier (systems from clinic.yaml ``fhir:``).

In: ``read_changes`` reads a Bundle or one resource into the events they mean (Appointment
status or start -> hold/miss/cancel/reschedule_session; PHQ-9 Observation or
QuestionnaireResponse -> record_measure), or one problem line per bad resource.

Plain dicts, not ``fhir.resources`` models: those cost ~0.15 s to import and validate each
resource; the tests validate every exported resource with their R4B models instead.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from urllib.parse import quote

from ..core.model import Course, Reminder, Session
from ..core.policy import FhirSystems
from ..core.protocol import Protocol

LOINC = "http://loinc.org"
PHQ9_TOTAL = "44261-6"  # Patient Health Questionnaire 9 item (PHQ-9) total score [Reported]
PHQ9_ITEM9 = "44260-8"  # Thoughts that you would be better off dead, or of hurting yourself in some way
PHQ9_PANEL = "44249-1"  # PHQ-9 quick depression assessment panel [Reported.PHQ]
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
COMMUNICATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/communication-category"

APPOINTMENT_STATUS = {"planned": "booked", "held": "fulfilled", "missed": "noshow", "cancelled": "cancelled"}
CAREPLAN_STATUS = {"completed": "completed", "withdrawn": "revoked", "paused": "on-hold"}  # else active
REQUEST_STATUS = {"pending": "active", "delivered": "completed", "skipped": "revoked", "cancelled": "revoked",
                  "failed": "unknown"}  # fmt: skip
#: Appointment status in -> the event it records.
STATUS_EVENTS = {"fulfilled": "hold_session", "arrived": "hold_session", "checked-in": "hold_session",
                 "noshow": "miss_session", "cancelled": "cancel_session"}  # fmt: skip


def _id(systems: FhirSystems, kind: str, value: str) -> dict[str, str]:
    return {"system": f"{systems.system}:{kind}", "value": value}


def _ref(identifier: dict[str, str], resource_type: str | None = None) -> dict[str, Any]:
    """A reference by identifier (or, inside the Bundle, by fullUrl: see ``transaction``)."""
    out: dict[str, Any] = {"identifier": identifier}
    if resource_type:
        out["type"] = resource_type
    return out


def full_url(identifier: dict[str, str]) -> str:
    """The entry's ``urn:uuid:``, the same for the same identifier in every export."""
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, identifier['system'] + '|' + identifier['value'])}"


def protocol_url(systems: FhirSystems, protocol_id: str) -> str:
    return f"{systems.system}:protocol:{protocol_id}"


def session_value(course_id: str, number: int) -> str:
    return f"{course_id}/{number}"


def plan_definition(protocol: Protocol, systems: FhirSystems) -> dict[str, Any]:
    """The protocol as a PlanDefinition: one action per phase (engagement, assessment,
    intervention, termination) with its session counts in the description."""
    s, p = protocol.sessions, protocol.phases
    actions = []
    if p.engagement:
        actions.append({"id": "intake", "title": "intake", "description": f"{p.engagement} engagement session(s)"})
    actions += [
        {"id": "assessment", "title": "assessment",
         "description": f"{p.assessment.min}-{p.assessment.max} assessment session(s)"},
        {"id": "intervention", "title": "intervention", "description": "work on the ranked problem areas"},
        {"id": "termination", "title": "termination", "description": f"the last {p.termination} session(s)"},
    ]  # fmt: skip
    return {
        "resourceType": "PlanDefinition",
        "url": protocol_url(systems, protocol.id),
        "identifier": [_id(systems, "protocol", f"{protocol.id}@{protocol.version}")],
        "version": protocol.version,
        "name": "".join(part.capitalize() for part in protocol.id.split("-")),
        "title": protocol.name,
        "status": "active",
        "description": protocol.description or protocol.name,
        "type": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/plan-definition-type", "code": "clinical-protocol"}
            ]
        },
        "action": [
            *actions,
            {
                "id": "sessions",
                "title": "sessions",
                "description": f"{s.planned} planned ({s.min}-{s.max}), every {protocol.cadence_weeks} week(s), "
                f"{protocol.duration_minutes} min, {protocol.format}",
            },
        ],
    }


def _iso(value: datetime) -> str:
    return value.isoformat(timespec="seconds")


def course_resources(
    course: Course, sessions: Sequence[Session], reminders: Sequence[Reminder], systems: FhirSystems
) -> list[dict[str, Any]]:
    """CarePlan, then an Appointment per session (number order), a CommunicationRequest per
    stored reminder and alert (due order), an Observation per PHQ-9 (time order)."""
    patient = _ref({"system": systems.patient_system, "value": course.client}, "Patient")
    careplan_id = _id(systems, "course", course.id)
    appointments = [_appointment(course, s, patient, careplan_id, systems) for s in sessions]
    first = min((s.start for s in sessions), default=None)
    end = max((s.end for s in sessions), default=None)
    careplan: dict[str, Any] = {
        "resourceType": "CarePlan",
        "identifier": [careplan_id],
        "instantiatesCanonical": [f"{protocol_url(systems, course.protocol)}|{course.protocol_version}"],
        "status": CAREPLAN_STATUS.get(course.state.value, "active"),
        "intent": "plan",
        "title": f"IPT course {course.id}",
        "description": f"state {course.state.value}" + (f", focus {focus}" if (focus := course.current_focus) else ""),
        "subject": patient,
        "period": {"start": _iso(first) if first else course.start.isoformat(), **({"end": _iso(end)} if end else {})},
        "created": _iso(course.created_at),
        "author": _ref({"system": systems.practitioner_system, "value": course.therapist}, "Practitioner"),
        "activity": [{"reference": {"identifier": a["identifier"][0], "type": "Appointment"}} for a in appointments],
    }
    by_number = {s.number: a for s, a in zip(sessions, appointments, strict=True)}
    requests = [_request(course, r, patient, careplan_id, by_number, systems) for r in reminders]
    observations = [_observation(course, i, patient, careplan_id, systems) for i in range(len(course.measurements))]
    return [careplan, *appointments, *requests, *[o for o in observations if o]]


def _appointment(
    course: Course, session: Session, patient: dict[str, Any], careplan: dict[str, str], systems: FhirSystems
) -> dict[str, Any]:
    therapist = session.therapist or course.therapist
    status = APPOINTMENT_STATUS[session.status.value]
    participant = "declined" if status == "cancelled" else "accepted"
    out: dict[str, Any] = {
        "resourceType": "Appointment",
        "identifier": [_id(systems, "session", session_value(course.id, session.number))],
        "status": status,
        "description": f"IPT session {session.number} ({session.phase})",
        "start": _iso(session.start),
        "end": _iso(session.end),
        "minutesDuration": session.duration_minutes,
        "supportingInformation": [{"identifier": careplan, "type": "CarePlan"}],
        "participant": [
            {"actor": patient, "status": participant},
            {
                "actor": _ref({"system": systems.practitioner_system, "value": therapist}, "Practitioner"),
                "status": participant,
            },
        ],
    }
    if session.original_start is not None:
        out["comment"] = f"moved from {_iso(session.original_start)}"
    return out


def _request(
    course: Course,
    reminder: Reminder,
    patient: dict[str, Any],
    careplan: dict[str, str],
    appointments: dict[int, dict[str, Any]],
    systems: FhirSystems,
) -> dict[str, Any]:
    category = "reminder" if reminder.audience == "client" else "alert"
    recipient = patient if reminder.audience == "client" else _ref(
        {"system": systems.practitioner_system, "value": course.therapist}, "Practitioner")  # fmt: skip
    out: dict[str, Any] = {
        "resourceType": "CommunicationRequest",
        "identifier": [_id(systems, "reminder", reminder.id)],
        "basedOn": [{"identifier": careplan, "type": "CarePlan"}],
        "status": REQUEST_STATUS[reminder.status.value],
        "category": [{"coding": [{"system": COMMUNICATION_CATEGORY, "code": category}], "text": reminder.kind}],
        "priority": "stat" if reminder.kind == "safety_alert" else "routine",
        "subject": patient,
        "recipient": [recipient],
        "occurrenceDateTime": _iso(reminder.due),
        "payload": [{"contentString": reminder.kind}],
    }
    appointment = appointments.get(reminder.session) if reminder.session else None
    if appointment is not None:
        out["about"] = [{"identifier": appointment["identifier"][0], "type": "Appointment"}]
    return out


def _observation(
    course: Course, index: int, patient: dict[str, Any], careplan: dict[str, str], systems: FhirSystems
) -> dict[str, Any] | None:
    m = course.measurements[index]
    if m.instrument != "phq9":
        return None
    out: dict[str, Any] = {
        "resourceType": "Observation",
        "identifier": [_id(systems, "measure", f"{course.id}/phq9/{_iso(m.at)}")],
        "basedOn": [{"identifier": careplan, "type": "CarePlan"}],
        "status": "final",
        "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": "survey"}]}],
        "code": {"coding": [{"system": LOINC, "code": PHQ9_TOTAL, "display": "PHQ-9 total score"}]},
        "subject": patient,
        "effectiveDateTime": _iso(m.at),
        "valueInteger": m.score,
    }
    if m.item9 is not None:
        out["component"] = [{"code": {"coding": [{"system": LOINC, "code": PHQ9_ITEM9, "display": "PHQ-9 item 9"}]},
                             "valueInteger": m.item9}]  # fmt: skip
    return out


def transaction(resources: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """A ``transaction`` Bundle of conditional creates; a reference by identifier to a resource
    of the Bundle becomes a reference to its ``urn:uuid:`` fullUrl."""
    resources = list(resources)
    urls = resource_urls(resources)
    return {"resourceType": "Bundle", "type": "transaction", "entry": [entry(r, urls) for r in resources]}


def resource_urls(resources: Iterable[dict[str, Any]]) -> dict[tuple[str, str], str]:
    """``{(identifier system, value): urn:uuid}`` of ``resources`` (by their first identifier)."""
    urls: dict[tuple[str, str], str] = {}
    for resource in resources:
        identifier = resource["identifier"][0]
        urls[(identifier["system"], identifier["value"])] = full_url(identifier)
    return urls


def entry(resource: dict[str, Any], urls: dict[tuple[str, str], str]) -> dict[str, Any]:
    """The Bundle entry of ``resource``: a conditional create, its references by identifier to
    the resources of ``urls`` made references to their fullUrls."""
    identifier = resource["identifier"][0]
    return {
        "fullUrl": full_url(identifier),
        "resource": _local_references(resource, urls),
        "request": {
            "method": "POST",
            "url": resource["resourceType"],
            "ifNoneExist": "identifier=" + quote(f"{identifier['system']}|{identifier['value']}", safe=":/|@"),
        },
    }


def transaction_text(entries: Iterable[dict[str, Any]]) -> Iterator[str]:
    """The text of the ``transaction`` Bundle of ``entries``, piece by piece, the same as
    ``json.dumps(bundle, indent=2, ensure_ascii=False)`` (so a Bundle of any size is written
    without being held whole)."""
    yield '{\n  "resourceType": "Bundle",\n  "type": "transaction",\n  "entry": ['
    first = True
    for item in entries:
        text = json.dumps(item, indent=2, ensure_ascii=False)
        yield ("\n    " if first else ",\n    ") + text.replace("\n", "\n    ")
        first = False
    yield "]\n}" if first else "\n  ]\n}"


def _local_references(value: Any, urls: dict[tuple[str, str], str]) -> Any:
    """``value`` with every ``{identifier, type}`` reference to a Bundle resource as ``{reference: urn:uuid}``."""
    if isinstance(value, list):
        return [_local_references(v, urls) for v in value]
    if not isinstance(value, dict):
        return value
    ident = value.get("identifier")
    if set(value) <= {"identifier", "type"} and isinstance(ident, dict):
        url = urls.get((ident.get("system", ""), ident.get("value", "")))
        return value if url is None else {"reference": url, **value}  # the identifier stays: a server's copy keeps it
    return {k: _local_references(v, urls) for k, v in value.items()}


# ---------------------------------------------------------------- in


StartOf = Callable[[str, int], str | None]


@dataclass(frozen=True)
class Change:
    """One event a FHIR resource means: ``event`` with ``data`` on ``course`` at ``at`` (None:
    now), from the resource at ``position`` (``entry[3]``) of ``resource_type/resource_id``
    version ``version``; ``event`` "" when the resource changes nothing (an Appointment still
    booked at the session's start)."""

    position: str
    resource_type: str
    resource_id: str
    version: str
    course: str
    event: str
    data: dict[str, Any]
    at: datetime | None


def courses_named(document: Any, systems: FhirSystems) -> list[str]:
    """The course ids a Bundle (or resource) names, in first-seen order: those of our session
    identifiers on Appointments and of our CarePlan identifiers in ``basedOn`` (so the
    courses can be read together before ``read_changes``); a malformed resource is skipped."""
    found: dict[str, None] = {}
    resources: list[Any] = [document]
    if isinstance(document, dict) and document.get("resourceType") == "Bundle":
        entries = document.get("entry")
        resources = [e.get("resource") for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []
    session, course = f"{systems.system}:session", f"{systems.system}:course"
    for resource in resources:
        if not isinstance(resource, dict):
            continue
        idents = [i for i in resource.get("identifier") or [] if isinstance(i, dict)]
        refs = [r.get("identifier") for r in resource.get("basedOn") or [] if isinstance(r, dict)]
        for ident in [*idents, *[r for r in refs if isinstance(r, dict)]]:
            value = ident.get("value")
            if not isinstance(value, str):
                continue
            if ident.get("system") == session and "/" in value:
                found[value.rpartition("/")[0]] = None
            elif ident.get("system") == course:
                found[value] = None
    return list(found)


def read_changes(document: Any, systems: FhirSystems, starts: StartOf) -> tuple[list[Change], list[str]]:
    """The changes a Bundle (any type) or single resource means, in entry order, and one line per
    bad resource (``entry[2].resource.status: ...``). ``starts(course, number)`` gives a known
    session's local start (ISO with offset), else None: an Appointment whose start differs means
    ``reschedule_session``; one of an unknown session is a problem. Resources of other types
    are ignored."""
    changes: list[Change] = []
    problems: list[str] = []
    if not isinstance(document, dict) or not isinstance(document.get("resourceType"), str):
        return [], ["resourceType: not a FHIR resource (a JSON object with resourceType)"]
    items: list[tuple[str, Any]] = [("resource", document)]
    if document["resourceType"] == "Bundle":
        entries = document.get("entry", [])
        if not isinstance(entries, list):
            return [], ["entry: not a list"]
        items = [(f"entry[{i}].resource", e.get("resource") if isinstance(e, dict) else None)
                 for i, e in enumerate(entries)]  # fmt: skip
    for where, resource in items:
        if not isinstance(resource, dict):
            problems.append(f"{where}: missing")
            continue
        try:
            changes += [replace(c, position=where) for c in _changes_of(resource, systems, starts)]
        except _Bad as bad:
            problems.append(f"{where}.{bad.field}: {bad.message}")
    return changes, problems


class _Bad(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _meta(resource: dict[str, Any]) -> tuple[str, str]:
    rid = resource.get("id")
    if not isinstance(rid, str) or not rid:
        raise _Bad("id", "missing (the server's id names the resource version ingested)")
    meta = resource.get("meta") or {}
    version = meta.get("versionId") if isinstance(meta, dict) else None
    if not isinstance(version, str) or not version:
        raise _Bad("meta.versionId", "missing (each version of a resource is applied once)")
    return rid, version


def _our_identifier(resource: dict[str, Any], system: str) -> str:
    for i, identifier in enumerate(resource.get("identifier") or []):
        if isinstance(identifier, dict) and identifier.get("system") == system:
            value = identifier.get("value")
            if not isinstance(value, str) or not value:
                raise _Bad(f"identifier[{i}].value", "missing")
            return value
    raise _Bad("identifier", f"none with system {system}")


def _changes_of(resource: dict[str, Any], systems: FhirSystems, starts: StartOf) -> list[Change]:
    kind = resource.get("resourceType")
    if kind == "Appointment":
        return _appointment_changes(resource, systems, starts)
    if kind == "Observation":
        return _observation_changes(resource, systems)
    if kind == "QuestionnaireResponse":
        return _questionnaire_changes(resource, systems)
    if not isinstance(kind, str):
        raise _Bad("resourceType", "missing")
    return []


def _appointment_changes(resource: dict[str, Any], systems: FhirSystems, starts: StartOf) -> list[Change]:
    rid, version = _meta(resource)
    value = _our_identifier(resource, f"{systems.system}:session")
    course, _, number_text = value.rpartition("/")
    if not course or not number_text.isdigit():
        raise _Bad("identifier.value", f"'{value}' is not COURSE/NUMBER")
    number = int(number_text)
    known = starts(course, number)
    if known is None:
        raise _Bad("identifier.value", f"no session {number} of course '{course}'")
    status = resource.get("status")
    if not isinstance(status, str):
        raise _Bad("status", "missing")
    start = resource.get("start")
    meta = resource["meta"]
    at = _when(meta, "lastUpdated", "meta.lastUpdated") if "lastUpdated" in meta else None
    out: list[Change] = []
    if status in ("booked", "pending", "proposed") and start is not None:
        local = _local_start(start, known)
        if local != known[:16]:
            out.append(Change("", "Appointment", rid, version, course, "reschedule_session",
                              {"number": number, "start": local}, at))  # fmt: skip
    elif status in STATUS_EVENTS:
        out.append(Change("", "Appointment", rid, version, course, STATUS_EVENTS[status], {"number": number}, at))
    elif status not in ("booked", "pending", "proposed", "waitlist", "entered-in-error"):
        raise _Bad("status", f"'{status}' is not an Appointment status")
    return out or [Change("", "Appointment", rid, version, course, "", {"number": number}, at)]  # changes nothing


def _local_start(start: Any, known: str) -> str:
    """An Appointment's ``start`` as local wall time (``YYYY-MM-DDTHH:MM``) in the zone offset
    the session had (the course's zone; the service checks the new start against it)."""
    if not isinstance(start, str):
        raise _Bad("start", "not a string")
    try:
        instant = datetime.fromisoformat(start)
    except ValueError:
        raise _Bad("start", f"'{start}' is not an ISO 8601 instant") from None
    if instant.tzinfo is None:
        raise _Bad("start", f"'{start}' has no UTC offset")
    offset = datetime.fromisoformat(known).utcoffset()
    assert offset is not None
    return (instant - instant.utcoffset() + offset).replace(tzinfo=None).isoformat(timespec="minutes")  # type: ignore[operator]


def _course_of(resource: dict[str, Any], systems: FhirSystems) -> str:
    """The course a measure belongs to: ``basedOn`` the course's CarePlan identifier."""
    for i, ref in enumerate(resource.get("basedOn") or []):
        ident = ref.get("identifier") if isinstance(ref, dict) else None
        if isinstance(ident, dict) and ident.get("system") == f"{systems.system}:course":
            value = ident.get("value")
            if not isinstance(value, str) or not value:
                raise _Bad(f"basedOn[{i}].identifier.value", "missing")
            return value
    raise _Bad("basedOn", f"no CarePlan identifier with system {systems.system}:course")


def _codes(concept: Any) -> set[tuple[str, str]]:
    if not isinstance(concept, dict):
        return set()
    return {(c.get("system", ""), c.get("code", "")) for c in concept.get("coding") or [] if isinstance(c, dict)}


def _score(value: Any, field: str, high: int) -> int:
    """A whole number from 0 to ``high`` (``valueInteger``, or a ``valueQuantity`` of a whole value)."""
    if isinstance(value, dict) and isinstance(value.get("value"), int | float) and float(value["value"]).is_integer():
        value = int(value["value"])
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Bad(field, "missing or not a whole number")
    if not 0 <= value <= high:
        raise _Bad(field, f"{value} is outside 0..{high}")
    return int(value)


def _when(resource: dict[str, Any], field: str, name: str | None = None) -> datetime:
    text = resource.get(field)
    name = name or field
    if not isinstance(text, str):
        raise _Bad(name, "missing")
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise _Bad(name, f"'{text}' is not an ISO 8601 instant") from None
    if at.tzinfo is None:
        raise _Bad(name, f"'{text}' has no UTC offset")
    return at


def _observation_changes(resource: dict[str, Any], systems: FhirSystems) -> list[Change]:
    if (LOINC, PHQ9_TOTAL) not in _codes(resource.get("code")):
        return []  # not a PHQ-9 total: not ours to read
    rid, version = _meta(resource)
    if resource.get("status") not in ("final", "amended", "corrected"):
        raise _Bad("status", f"'{resource.get('status')}': only a final PHQ-9 is recorded")
    course = _course_of(resource, systems)
    score = _score(resource.get("valueInteger", resource.get("valueQuantity")), "valueInteger", 27)
    item9 = None
    for i, component in enumerate(resource.get("component") or []):
        if isinstance(component, dict) and (LOINC, PHQ9_ITEM9) in _codes(component.get("code")):
            item9 = _score(component.get("valueInteger", component.get("valueQuantity")),
                           f"component[{i}].valueInteger", 3)  # fmt: skip
    if item9 is None:
        raise _Bad("component", f"no item 9 (LOINC {PHQ9_ITEM9}): a safety alert depends on it")
    at = _when(resource, "effectiveDateTime")
    data = {"instrument": "phq9", "score": score, "item9": item9}
    return [Change("", "Observation", rid, version, course, "record_measure", data, at)]


def _questionnaire_changes(resource: dict[str, Any], systems: FhirSystems) -> list[Change]:
    """A PHQ-9 QuestionnaireResponse (its ``questionnaire`` names panel 44249-1): answers by
    ``linkId``, the item's LOINC code (``/44260-8`` or ``44260-8``); the total is item 44261-6
    when given, else the sum of the nine answers (``valueInteger``, or a LOINC answer code)."""
    if PHQ9_PANEL not in str(resource.get("questionnaire", "")):
        return []
    rid, version = _meta(resource)
    if resource.get("status") not in ("completed", "amended"):
        raise _Bad("status", f"'{resource.get('status')}': only a completed PHQ-9 is recorded")
    course = _course_of(resource, systems)
    items = resource.get("item") or []
    if not isinstance(items, list):
        raise _Bad("item", "not a list")
    answers: dict[str, int] = {}
    for i, item in enumerate(_flatten(items)):
        link = str(item.get("linkId", "")).lstrip("/")
        answer = (item.get("answer") or [{}])[0]
        value = answer.get("valueInteger") if isinstance(answer, dict) else None
        if value is None and isinstance(answer, dict) and isinstance(answer.get("valueCoding"), dict):
            value = _coding_score(answer["valueCoding"])
        if value is not None and link != PHQ9_PANEL:
            answers[link] = _score(value, f"item[{i}].answer[0]", 27)
    if PHQ9_ITEM9 not in answers:
        raise _Bad("item", f"no answer to item 9 (linkId {PHQ9_ITEM9})")
    item9 = _score(answers[PHQ9_ITEM9], f"item({PHQ9_ITEM9}).answer[0]", 3)
    score = answers.get(PHQ9_TOTAL)
    if score is None:
        parts = [v for k, v in answers.items() if k != PHQ9_TOTAL]
        if len(parts) != 9:
            raise _Bad("item", f"no total (linkId {PHQ9_TOTAL}) and {len(parts)} answers, not 9")
        score = sum(parts)
    score = _score(score, f"item({PHQ9_TOTAL}).answer[0]", 27)
    data = {"instrument": "phq9", "score": score, "item9": item9}
    at = _when(resource, "authored")
    return [Change("", "QuestionnaireResponse", rid, version, course, "record_measure", data, at)]


def _flatten(items: list[Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for item in items:
        if isinstance(item, dict):
            out.append(item)
            out += _flatten(item.get("item") or [])
    return out


def _coding_score(coding: dict[str, Any]) -> int | None:
    """LOINC answer codes of PHQ-9 items (LA6568-5 not at all .. LA6571-9 nearly every day)."""
    return {"LA6568-5": 0, "LA6569-3": 1, "LA6570-1": 2, "LA6571-9": 3}.get(str(coding.get("code")))
