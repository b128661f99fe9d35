# Two commands on a fresh machine with only Python: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-anytime lint bench browser clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m compileall -q ipt_workflow cli.py  # as a wheel has them, also where PYTHONDONTWRITEBYTECODE is set
	touch $(STAMP)

IPT := $(BIN)/ipt
DEMO_COURSE := --protocol ipt-16 --start 2026-03-02 --time 10:00 --tz Europe/London

DEMO_DB := .venv/demo.sqlite
DB := --db $(DEMO_DB)

demo: $(STAMP)
	$(IPT) protocols list
	$(IPT) rules check
	$(IPT) diagram --protocol ipt-16
	$(IPT) simulate $(DEMO_COURSE) --events tests/data/demo_course.yaml
	@echo "--- the same course kept in SQLite ($(DEMO_DB))"
	rm -f $(DEMO_DB) $(DEMO_DB)-wal $(DEMO_DB)-shm .venv/demo-emitted.jsonl
	$(IPT) $(DB) course create --id demo-1 --client CL-0001 --therapist T-01 $(DEMO_COURSE:--protocol ipt-16=) --now 2026-03-01T09:00
	$(IPT) $(DB) course event demo-1 complete_intake --at 2026-03-02T09:00 --now 2026-03-02T09:00
	$(IPT) $(DB) course event demo-1 record_measure --data '{"instrument": "phq9", "score": 18, "item9": 1}' --at 2026-03-02T10:55 --now 2026-03-02T10:55
	$(IPT) $(DB) course event demo-1 hold_session --at 2026-03-02T11:00 --now 2026-03-02T11:00
	$(IPT) $(DB) course event demo-1 set_focus --data '{"areas": ["role_transition", "grief"]}' --at 2026-03-09T10:50 --now 2026-03-09T10:50
	$(IPT) $(DB) course event demo-1 hold_session --at 2026-03-09T11:00 --now 2026-03-09T11:00
	$(IPT) $(DB) course event demo-1 start_intervention --at 2026-03-09T11:05 --now 2026-03-09T11:05
	$(IPT) $(DB) course event demo-1 miss_session --at 2026-03-16T11:00 --now 2026-03-16T11:00
	$(IPT) $(DB) course show demo-1
	$(IPT) $(DB) report demo-1 --now 2026-03-16T12:00 --out .venv/demo-1-report.html
	$(IPT) $(DB) caseload --therapist T-01 --now 2026-03-16T12:00
	$(IPT) $(DB) reminders --course demo-1 --from 2026-03-16T00:00 --until 2026-04-01T00:00
	$(IPT) $(DB) plan demo-1 --format ics --now 2026-03-16T12:00 > .venv/demo-1.ics
	@echo "calendar written to .venv/demo-1.ics"
	@echo "--- the daemon in cron mode: what is due by then goes out once (a second run emits nothing)"
	$(IPT) $(DB) daemon --once --now 2026-03-16T12:00 --sink file:.venv/demo-emitted.jsonl --sink stdout
	$(IPT) $(DB) daemon --once --now 2026-03-16T12:00 --sink file:.venv/demo-emitted.jsonl

# Headless Chromium from the distribution for tests/browser (Playwright drives it; no browser
# download). Installed when absent; without root the browser tests skip (they fail under CI=true).
CHROMIUM ?= /usr/bin/chromium
browser:
	@test -x $(CHROMIUM) || { apt-get update -qq && apt-get install -y -qq chromium; } \
		|| echo "warning: could not install chromium (run 'make browser' as root); the browser tests will skip"

test: $(STAMP) browser
	$(BIN)/ruff check ipt_workflow cli.py tests bench
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

# The suite under fixed wall clocks and TZ=Pacific/Chatham (libfaketime; see tests/anytime.py).
# ANYTIME_ARGS narrows it, e.g. make test-anytime ANYTIME_ARGS="-q tests/e2e".
test-anytime: $(STAMP)
	@command -v faketime >/dev/null || { apt-get update -qq && apt-get install -y -qq faketime; }
	$(BIN)/python tests/anytime.py $(ANYTIME_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check ipt_workflow cli.py tests bench
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/plan_throughput.py
	$(BIN)/python bench/simulate_wall.py
	$(BIN)/python bench/cli_help.py
	$(BIN)/python bench/report_caseload.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
