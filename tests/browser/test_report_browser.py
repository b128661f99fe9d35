"""The course report and the caseload page rendered in headless Chromium (SPEC §13): what a
clinician sees, read back from the DOM. Each case leaves a 1280 px screenshot and an A4 PDF
in the pytest tmp dir (``report-artifacts*``; the path is printed with ``-s``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ipt_workflow import Workflow
from tests.reportcourses import MARKUP, NOW, build_all, report_rules

CASES = ["none", "one", "many", "withdrawn", "completed", "chatham"]
A4_CONTENT_PX = 703  # 210 mm less the 2 x 12 mm page margins, at 96 px an inch


@pytest.fixture(scope="module")
def wf(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workflow]:
    base = tmp_path_factory.mktemp("report-courses")
    built = build_all(base / "ipt.sqlite", report_rules(base))["wf"]
    built.clock = lambda: NOW
    yield built
    built.close()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("report-artifacts")
    print(f"\nscreenshots and PDFs in {path}")
    return path


class Visit:
    """A page opened from a file, every request but the page's own refused and recorded,
    console errors and page errors recorded."""

    def __init__(self, browser: Any, path: Path, width: int = 1280) -> None:
        self.url = path.as_uri()
        self.page = browser.new_page(viewport={"width": width, "height": 900})
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.route("**/*", lambda route: route.continue_() if route.request.url == self.url else route.abort())
        self.page.goto(self.url)

    def attrs(self, selector: str, name: str) -> list[str]:
        return list(self.page.eval_on_selector_all(selector, f"els => els.map(e => e.getAttribute('{name}'))"))

    def close(self) -> None:
        assert self.requests == [self.url], f"requests beyond the page itself: {self.requests}"
        assert self.errors == [], self.errors
        self.page.close()


@pytest.mark.parametrize("case", CASES)
def test_report_in_chromium(browser: Any, wf: Workflow, artifacts: Path, case: str) -> None:
    course, plan = wf.course(case), wf.plan(case)
    phq = [m for m in course.measurements if m.instrument == "phq9"]
    path = artifacts / f"{case}.html"
    path.write_text(wf.report(case), encoding="utf-8")
    visit = Visit(browser, path)
    page = visit.page

    # The chart: one point per PHQ-9 in time order, item-9 marks, the bands, the lines.
    assert [int(s) for s in visit.attrs("svg.phq9-chart .phq-point", "data-score")] == [m.score for m in phq]
    assert len(visit.attrs("svg.phq9-chart .item9-mark", "data-item9")) == sum(bool(m.item9) for m in phq)
    bands = ["minimal", "mild", "moderate", "moderately severe", "severe"]
    assert visit.attrs("svg.phq9-chart .band", "data-band") == bands
    kinds = [c.split()[-1] for c in visit.attrs(".ref-line", "class")]
    lines = dict(zip(kinds, visit.attrs(".ref-line", "data-score"), strict=True))
    assert lines["remission"] == "5"
    if phq:
        assert lines["baseline"] == str(phq[0].score)
        assert float(lines["response"]) == phq[0].score / 2
    else:
        assert set(lines) == {"remission"}
        assert page.locator("svg.phq9-chart .no-scores").text_content() == "No PHQ-9 recorded yet"
    # ... and its text alternative: a row per score.
    rows = page.locator("table.scores tbody tr")
    assert rows.count() == max(len(phq), 1)

    # The timeline: one mark per session of the plan, with its status and whether it moved.
    assert visit.attrs(".session-mark", "data-status") == [s.status.value for s in plan.sessions]
    assert visit.attrs(".session-mark", "data-moved") == [
        "true" if s.original_start else "false" for s in plan.sessions
    ]
    assert visit.attrs("table.sessions tbody tr", "data-status") == [s.status.value for s in plan.sessions]

    # Header: on the course's wall clock, with the weekday; never a script.
    assert page.locator(".client").inner_text() == course.client
    assert page.locator(".state").inner_text() == course.state.value
    assert page.evaluate("document.scripts.length") == 0

    page.screenshot(path=str(artifacts / f"{case}.png"), full_page=True)
    # Printed: A4, one column, nothing wider than the page.
    page.emulate_media(media="print")
    page.set_viewport_size({"width": A4_CONTENT_PX, "height": 1000})
    assert page.evaluate("document.documentElement.scrollWidth") <= A4_CONTENT_PX
    pdf = artifacts / f"{case}.pdf"
    page.pdf(path=str(pdf), format="A4", print_background=True)
    assert pdf.read_bytes().startswith(b"%PDF") and pdf.stat().st_size > 5_000
    visit.close()


def test_report_shows_markup_from_the_rules_as_text(browser: Any, wf: Workflow, artifacts: Path) -> None:
    path = artifacts / "many.html"
    path.write_text(wf.report("many"), encoding="utf-8")
    visit = Visit(browser, path)
    assert MARKUP in visit.page.locator(".foci").inner_text()
    assert visit.page.evaluate("document.scripts.length") == 0
    visit.close()


def test_status_marks_differ_in_shape_not_only_colour(browser: Any, wf: Workflow, artifacts: Path) -> None:
    path = artifacts / "many.html"
    path.write_text(wf.report("many"), encoding="utf-8")
    visit = Visit(browser, path)
    shapes = {}
    for status in ("held", "missed", "cancelled", "planned"):
        shapes[status] = visit.page.eval_on_selector(
            f".session-mark[data-status={status}]",
            "g => [...g.children].filter(e => e.tagName !== 'title' && e.tagName !== 'text')"
            ".map(e => e.tagName + ':' + (e.getAttribute('stroke-dasharray') || '') + ':'"
            " + (e.getAttribute('fill') === '#fff' ? 'hollow' : 'solid')).join(',')",
        )
    assert len(set(shapes.values())) == 4, shapes
    visit.close()


def test_dates_on_the_course_wall_clock_across_a_clock_change(browser: Any, wf: Workflow, artifacts: Path) -> None:
    """Pacific/Chatham leaves daylight saving time on Sun 2026-04-05: the sessions before it
    are at 10:00 +1345, after it at 10:00 +1245 (session 4 is off Easter Monday, a clinic
    holiday, to the Tuesday)."""
    path = artifacts / "chatham.html"
    path.write_text(wf.report("chatham"), encoding="utf-8")
    visit = Visit(browser, path)
    starts = visit.page.eval_on_selector_all(
        "table.sessions tbody tr", "rows => rows.map(r => r.children[2].innerText)"
    )
    assert starts[:4] == ["Mon 2026-03-16 10:00 +1345", "Mon 2026-03-23 10:00 +1345", "Mon 2026-03-30 10:00 +1345",
                          "Tue 2026-04-07 10:00 +1245"]  # fmt: skip
    assert "Generated Sat 2026-05-02 00:45 +1245" in visit.page.locator("header").inner_text()
    visit.close()


def test_caseload_page_in_chromium(browser: Any, wf: Workflow, artifacts: Path) -> None:
    from ipt_workflow.reports import caseload_html

    rows = [r.model_dump() for r in wf.caseload("T-02")]
    path = artifacts / "caseload.html"
    path.write_text(caseload_html(rows, "T-02", NOW, "Europe/London"), encoding="utf-8")
    visit = Visit(browser, path)
    assert visit.attrs("tr.course-row", "data-course") == ["many", "one"]
    assert "remission" in visit.page.locator("tr[data-course=many] .badge").inner_text().lower()
    visit.page.screenshot(path=str(artifacts / "caseload.png"), full_page=True)
    visit.close()
