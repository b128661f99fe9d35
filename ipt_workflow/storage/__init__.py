"""Storage: SQL tables, migrations, the store, and quick row-level reads."""

#: The Alembic revision this version of ipt-workflow writes and reads.
HEAD_REVISION = "0003"

#: The fields of a session in ``ipt_courses.plan`` (the SPEC §7 session shape, as lists).
PLAN_FIELDS = (
    "number", "phase", "start", "status", "duration_minutes", "format", "participants", "optional_participants",
)  # fmt: skip
