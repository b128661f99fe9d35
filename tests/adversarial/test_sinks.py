"""What a careless or hostile `--sink` / `--health-file` does to `ipt daemon`: a file that is
not a sink file is refused unchanged (nothing claimed); one file named twice is refused; two
runs sharing a file sink never write an id twice; a full disk ends a run with one `error:`
line and leaves the batch pending; an unparsable webhook URL and a health file in a missing
directory are refused before anything is claimed."""

from __future__ import annotations

import errno
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ipt_workflow import Workflow
from ipt_workflow.core.errors import IptError
from ipt_workflow.delivery.dispatch import LEASE, dispatch_due
from ipt_workflow.delivery.sinks import FileSink
from ipt_workflow.rulebook.files import builtin_rules_dir
from ipt_workflow.testing import seed_due
from tests.e2e.conftest import clean_env, error_line, ipt_command, run_ipt
from tests.sinkfiles import lines, wait_for

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
ONCE = ["daemon", "--once", "--now", NOW.isoformat()]
OURS = b'{"id":"rem_old","type":"alert","kind":"follow_up"}\n'


def rules_without_digests(tmp_path: Path) -> Path:
    rules = tmp_path / "rules"
    shutil.copytree(builtin_rules_dir(), rules)
    clinic = rules / "clinic.yaml"
    clinic.write_text(clinic.read_text().replace('cron: "0 8 * * mon-fri"', "cron: null"))
    return rules


def due_db(tmp_path: Path, n: int = 3, name: str = "x.sqlite") -> tuple[Path, list[str]]:
    """A database with ``n`` therapist alerts due in the hour before NOW."""
    db = tmp_path / name
    return db, seed_due(str(db), n, NOW - timedelta(hours=1), NOW - timedelta(minutes=1))


def untouched(db: Path) -> bool:
    """Nothing was claimed, delivered or retried: every reminder as seeded."""
    with sqlite3.connect(db) as conn:
        row = conn.execute(
            "SELECT count(*) FROM ipt_reminders WHERE status != 'pending' OR attempts > 0 OR lease_until IS NOT NULL"
        ).fetchone()
    conn.close()
    return bool(row[0] == 0)


def statuses(db: Path, ids: list[str]) -> dict[str, int]:
    """How many of ``ids`` are in each status."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT id, status FROM ipt_reminders").fetchall()
    conn.close()
    wanted = set(ids)
    out: dict[str, int] = {}
    for rid, status in rows:
        if rid in wanted:
            out[status] = out.get(status, 0) + 1
    return out


def daemon(tmp_path: Path, db: Path, *args: str | Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    rules = tmp_path / "rules"
    if not rules.exists():
        rules_without_digests(tmp_path)
    return run_ipt("--db", db, "--rules", rules, *args, cwd=tmp_path, timeout=timeout)


# ---------------------------------------------------------------- files that are not ours

NOT_OURS = {
    "notes": b"note 1\nnote 2",
    "a JSON array": b"[1, 2]\n",
    "an object without id": b'{"kind": "x"}\n',
    "an id that is not a string": b'{"id": 5}\n',
    "not UTF-8": b'{"id": "caf\xe9"}\n',
    "a foreign line after ours": OURS + b"not json\n",
    "a foreign last line without newline": OURS + b"note",
    "a torn line that is not our JSON": OURS + b'["id", "rem_',
    "a line over the cap": b'{"id":"' + b"x" * (5 * 2**20) + b'"}\n',
    "deep nesting": b'{"id":"a","x":' + b"[" * 100_000 + b"]" * 100_000 + b"}\n",
    "zeros": b"\0" * 10_000,
}


@pytest.mark.parametrize("content", list(NOT_OURS.values()), ids=list(NOT_OURS))
def test_a_file_that_is_not_a_sink_file_is_refused_unchanged(tmp_path: Path, content: bytes) -> None:
    db, _ = due_db(tmp_path)
    notes = tmp_path / "notes.txt"
    notes.write_bytes(content)
    line = error_line(daemon(tmp_path, db, *ONCE, "--sink", f"file:{notes}"))
    assert f"file:{notes}" in line and "not a sink file" in line
    assert notes.read_bytes() == content
    assert untouched(db)


def limited_memory() -> None:
    """In the child: at most 1 GiB of address space (reading /dev/full whole would fill it)."""
    resource.setrlimit(resource.RLIMIT_AS, (2**30, 2**30))


@pytest.mark.parametrize("special", ["/dev/full", "/proc/version", "fifo", "directory", "/dev/null"])
def test_a_file_that_is_not_a_regular_file_is_refused(tmp_path: Path, special: str) -> None:
    db, _ = due_db(tmp_path)
    path = Path(special)
    if special == "fifo":
        path = tmp_path / "fifo"
        os.mkfifo(path)
    elif special == "directory":
        path = tmp_path / "dir"
        path.mkdir()
    rules = rules_without_digests(tmp_path)
    result = subprocess.run(
        [*ipt_command(), "--db", str(db), "--rules", str(rules), *ONCE, "--sink", f"file:{path}"],
        cwd=tmp_path, env=clean_env(tmp_path), capture_output=True, text=True, timeout=20,
        preexec_fn=limited_memory, check=False,
    )  # fmt: skip
    line = error_line(result)
    assert f"file:{path}" in line
    assert untouched(db)


def test_a_torn_last_line_of_our_own_is_dropped_and_nothing_else(tmp_path: Path) -> None:
    db, ids = due_db(tmp_path)
    out = tmp_path / "out.jsonl"
    out.write_bytes(OURS + b'{"id":"' + ids[0].encode() + b'","type":"al')  # a run died mid-line
    result = daemon(tmp_path, db, *ONCE, "--sink", f"file:{out}")
    assert result.returncode == 0, result.stderr
    assert out.read_bytes().startswith(OURS)
    assert [e["id"] for e in lines(out)] == ["rem_old", *ids]


def test_a_file_that_is_only_blank_lines_or_empty_is_ours(tmp_path: Path) -> None:
    db, ids = due_db(tmp_path)
    out = tmp_path / "out.jsonl"
    out.write_bytes(b"")
    result = daemon(tmp_path, db, *ONCE, "--sink", f"file:{out}")
    assert result.returncode == 0, result.stderr
    assert [e["id"] for e in lines(out)] == ids


# ---------------------------------------------------------------- one file, two names


def same_file(tmp_path: Path, how: str) -> tuple[str, str]:
    first = tmp_path / "out.jsonl"
    if how == "not yet there":
        return f"file:{first}", "file:./sub/../out.jsonl"
    first.write_bytes(OURS)
    if how == "another spelling":
        return f"file:{first}", "file:./out.jsonl"
    other = tmp_path / "other.jsonl"
    if how == "hard link":
        os.link(first, other)
    else:
        other.symlink_to(first)
    return f"file:{first}", f"file:{other}"


@pytest.mark.parametrize("how", ["another spelling", "hard link", "symlink", "not yet there"])
def test_one_file_named_twice_is_refused(tmp_path: Path, how: str) -> None:
    db, _ = due_db(tmp_path)
    first, second = same_file(tmp_path, how)
    before = (tmp_path / "out.jsonl").read_bytes() if how != "not yet there" else None
    line = error_line(daemon(tmp_path, db, *ONCE, "--sink", first, "--sink", second))
    assert second in line and "same file" in line
    assert untouched(db)
    if before is None:
        assert not (tmp_path / "out.jsonl").exists()
    else:
        assert (tmp_path / "out.jsonl").read_bytes() == before


def test_a_refused_second_sink_leaves_no_file_from_the_first(tmp_path: Path) -> None:
    db, _ = due_db(tmp_path)
    notes = tmp_path / "notes.txt"
    notes.write_bytes(b"note 1\n")
    new = tmp_path / "new" / "out.jsonl"
    line = error_line(daemon(tmp_path, db, *ONCE, "--sink", f"file:{new}", "--sink", f"file:{notes}"))
    assert f"file:{notes}" in line
    assert not new.exists() and not new.parent.exists()
    assert untouched(db)


# ---------------------------------------------------------------- a file shared by writers


def event(i: str) -> dict[str, Any]:
    return {"id": i, "type": "alert", "kind": "follow_up"}


def test_a_file_sink_learns_the_ids_another_writer_appended_after_it_opened(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    a, b = FileSink(out), FileSink(out)  # both opened on an empty file
    b.deliver([event("rem_1"), event("rem_2"), event("rem_3")])
    a.deliver([event(f"rem_{i}") for i in range(1, 6)])
    with out.open("ab") as f:
        f.write(b'{"id":"rem_6","ty')  # a third writer killed mid-line
    b.deliver([event("rem_6"), event("rem_5")])
    a.close()
    b.close()
    assert [e["id"] for e in lines(out)] == [f"rem_{i}" for i in range(1, 7)]


def test_two_once_runs_sharing_one_file_write_each_id_once(tmp_path: Path) -> None:
    """Two databases holding the same reminders (the same ids), drained at once into one file."""
    db_a, ids = due_db(tmp_path, 1500, "a.sqlite")
    db_b = tmp_path / "b.sqlite"
    shutil.copyfile(db_a, db_b)
    out = tmp_path / "shared.jsonl"
    rules = rules_without_digests(tmp_path)
    once = [*ONCE, "--batch", "10", "--sink", f"file:{out}"]
    env = clean_env(tmp_path)
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    procs = [
        subprocess.Popen(
            [*ipt_command(), "--db", str(db), "--rules", str(rules), *once], cwd=tmp_path, env=env, text=True, **pipes
        )
        for db in (db_a, db_b)
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    written = [e["id"] for e in lines(out)]
    assert len(written) == len(set(written)) == len(ids)
    assert set(written) == set(ids)


# ---------------------------------------------------------------- a full disk


def failing(code: int) -> Callable[..., Any]:
    def fail(*_: object) -> Any:
        raise OSError(code, os.strerror(code))

    return fail


@pytest.mark.parametrize(("call", "code"), [("write", errno.ENOSPC), ("fsync", errno.EIO)])
def test_a_write_that_fails_records_nothing_and_the_batch_goes_out_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, call: str, code: int
) -> None:
    db, ids = due_db(tmp_path)
    out = tmp_path / "out.jsonl"
    out.write_bytes(OURS)
    sink = FileSink(out)
    with Workflow(str(db)) as wf:
        with monkeypatch.context() as m:
            m.setattr(os, call, failing(code))
            with pytest.raises(IptError, match=f"file:{out}: cannot write: {os.strerror(code)}"):
                dispatch_due(wf.store, NOW, [sink])
        assert out.read_bytes() == OURS  # a partial write is taken back
        assert statuses(db, ids) == {"pending": len(ids)}
        later = dispatch_due(wf.store, NOW + LEASE + timedelta(seconds=1), [sink])  # space again
        sink.close()
    assert later.delivered == len(ids)
    assert [e["id"] for e in lines(out)] == ["rem_old", *ids]


def full_sink_file(tmp_path: Path) -> tuple[Path, bytes, Callable[[], None]]:
    """A sink file of 2 MB (more than the database and its WAL) and, to run in a child
    process, a file size limit at that size: a write to it then fails (EFBIG, as ENOSPC would)."""
    out = tmp_path / "out.jsonl"
    out.write_bytes(OURS * (2 * 2**20 // len(OURS)))
    size = out.stat().st_size

    def small_disk() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the process is killed instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (size + 10, size + 10))

    return out, out.read_bytes(), small_disk


def test_a_full_disk_ends_a_once_run_with_one_error_line(tmp_path: Path) -> None:
    db, ids = due_db(tmp_path)
    out, before, small_disk = full_sink_file(tmp_path)
    rules = rules_without_digests(tmp_path)
    result = subprocess.run(
        [*ipt_command(), "--db", str(db), "--rules", str(rules), *ONCE, "--sink", f"file:{out}"],
        cwd=tmp_path, env=clean_env(tmp_path), capture_output=True, text=True, timeout=30,
        preexec_fn=small_disk, check=False,
    )  # fmt: skip
    line = error_line(result)
    assert f"file:{out}: cannot write" in line
    assert out.read_bytes() == before
    assert statuses(db, ids) == {"pending": len(ids)}


def test_a_full_disk_is_one_log_line_for_the_long_running_daemon(tmp_path: Path) -> None:
    """It keeps running; the batch stays pending (claimed again when its lease runs out)."""
    db, ids = due_db(tmp_path)
    out, before, small_disk = full_sink_file(tmp_path)
    rules = rules_without_digests(tmp_path)
    log = tmp_path / "daemon.log"
    args = ["daemon", "--now", NOW.isoformat(), "--sweep", "0.2", "--sink", f"file:{out}"]
    with log.open("wb") as f:
        proc = subprocess.Popen([*ipt_command(), "--db", str(db), "--rules", str(rules), *args], cwd=tmp_path,
                                env=clean_env(tmp_path), stdout=f, stderr=f, preexec_fn=small_disk)  # fmt: skip
    try:
        assert wait_for(lambda: "cannot write" in log.read_text())
        time.sleep(1)  # a few sweeps
        assert proc.poll() is None, log.read_text()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text()
    assert proc.returncode == 0 and "Traceback" not in text, text
    errors = [line for line in text.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and f"file:{out}: cannot write" in errors[0], errors
    assert out.read_bytes() == before
    assert statuses(db, ids) == {"pending": len(ids)}


# ---------------------------------------------------------------- other refusals at start


@pytest.mark.parametrize(
    "url", ["http://[::1", "http://user:hunter2@[::1/x?token=abc", "http://", "https://exa mple.org/"]
)
def test_an_unparsable_webhook_url_is_refused_before_anything_is_claimed(tmp_path: Path, url: str) -> None:
    db, _ = due_db(tmp_path)
    out = tmp_path / "out.jsonl"
    line = error_line(daemon(tmp_path, db, *ONCE, "--sink", f"file:{out}", "--sink", f"webhook:{url}"))
    assert "--sink webhook:" in line and "hunter2" not in line and "token" not in line
    assert untouched(db)
    assert not out.exists()


@pytest.mark.parametrize("where", ["missing directory", "a directory"])
def test_a_health_file_that_cannot_be_written_is_refused_at_start(tmp_path: Path, where: str) -> None:
    db, _ = due_db(tmp_path)
    out = tmp_path / "out.jsonl"
    health = tmp_path / "missing" / "health"
    if where == "a directory":
        health = tmp_path / "health"
        health.mkdir()
    args = ["daemon", "--now", NOW.isoformat(), "--sink", f"file:{out}", "--health-file", str(health)]
    line = error_line(daemon(tmp_path, db, *args, timeout=20))
    assert f"--health-file {health}" in line
    assert untouched(db)
    assert not out.exists()
