"""The file sink: one JSON object a line, appended and fsynced batch by batch, never an id twice.

**Which files are its own.** A regular file (not a device, FIFO, socket or directory, nor
anything under /proc or /sys) in which every complete line is empty or a UTF-8 JSON object
of at most ``MAX_LINE`` bytes with a string ``id``, and whose last line, if it does not end
in a newline, is the start of a line as this sink writes it (``{"id":"`` then printable
ASCII): a line cut short by a crash. Dropping that torn line is the only change made to a
file on opening; any other file is refused (``InvalidInput``) and left as it was. The file
is read in chunks, so memory stays bounded whatever it holds.

**Shared files.** Several writers (daemons, ``--once`` runs, on one database or several) may
append to one file: each batch is written under an exclusive ``flock``, after reading what
the others appended since this sink last looked, so an id another writer put there is not
written again. A write or fsync that fails (a full disk, an I/O error) is taken back and
raises ``SinkError``: nothing of the batch is recorded, and it goes out again later.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import stat
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..core.errors import InvalidInput, SinkError
from .stilldue import StillDue, everything

MAX_LINE = 4 * 2**20  # bytes; a longer line is not one of ours
CHUNK = 2**16
LOCK_WAIT = 30.0  # seconds to wait for another writer's lock
PSEUDO_FILESYSTEMS = (Path("/proc"), Path("/sys"))
# A prefix of a line as this sink writes it: `{"id":"` then printable ASCII (json.dumps escapes the rest).
_TORN = re.compile(rb'\{\s*(?:"(?:i(?:d(?:"(?:\s*:(?:\s*"[\x20-\x7e]*)?)?)?)?)?)?')


class NotASinkFile(Exception):
    """A line that this sink did not write: ``str()`` says which and why."""


def _id_of(line: bytes | bytearray, number: int) -> str | None:
    """The ``id`` of one complete line (None for an empty one); raises NotASinkFile."""
    if not line.strip():
        return None
    try:
        value = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError:
        raise NotASinkFile(f"line {number} is not UTF-8") from None
    except (ValueError, RecursionError):
        raise NotASinkFile(f"line {number} is not JSON") from None
    found = value.get("id") if isinstance(value, dict) else None
    if not isinstance(found, str):
        raise NotASinkFile(f'line {number} is not a JSON object with a string "id"')
    return found


def scan(fd: int, offset: int, number: int) -> tuple[list[str], int, int, bytes]:
    """Read ``fd`` from byte ``offset`` (the start of line ``number + 1``) to its end, in
    chunks: ``(ids, offset after the last complete line, its number, what follows it)``;
    raises NotASinkFile at the first line that is not ours."""
    ids: list[str] = []
    pending = bytearray()
    while chunk := os.pread(fd, CHUNK, offset + len(pending)):
        pending += chunk
        if b"\n" not in chunk:
            if len(pending) > MAX_LINE:
                raise NotASinkFile(f"line {number + 1} is longer than {MAX_LINE // 2**20} MiB")
            continue
        *complete, rest = pending.split(b"\n")
        for line in complete:
            number += 1
            if len(line) > MAX_LINE:
                raise NotASinkFile(f"line {number} is longer than {MAX_LINE // 2**20} MiB")
            if (found := _id_of(line, number)) is not None:
                ids.append(found)
            offset += len(line) + 1
        pending = bytearray(rest)
    return ids, offset, number, bytes(pending)


def is_torn_line(tail: bytes) -> bool:
    """Whether an unterminated last line is the start of one this sink writes (a crash cut it)."""
    return _TORN.fullmatch(tail) is not None


class FileSink:
    """Appends JSON lines to ``path``; an id already in the file is never written again, by
    this sink or by another writer sharing the file. Refuses a file that is not its own."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.spec = f"file:{path}"
        self.seen: set[str] = set()
        self.offset = 0  # bytes of the file read so far, a whole number of lines
        self.lines = 0
        self.created: list[Path] = []  # what this sink made: directories, then the file
        self.fd = -1
        try:
            self.fd = self._open()
            with self._locked():
                self._catch_up()
        except NotASinkFile as exc:
            self.discard()
            raise InvalidInput(f"--sink {self.spec}: not a sink file ({exc}); it was left as it was") from None
        except OSError as exc:
            self.discard()
            raise InvalidInput(f"--sink {self.spec}: {exc.strerror or exc}") from None

    def _open(self) -> int:
        real = Path(os.path.realpath(self.path))
        try:
            mode: int | None = os.stat(self.path).st_mode
        except FileNotFoundError:
            mode = None
        if any(real.is_relative_to(p) for p in PSEUDO_FILESYSTEMS) or not (mode is None or stat.S_ISREG(mode)):
            raise OSError(errno.EINVAL, "not a regular file on a disk")
        flags = os.O_RDWR | os.O_APPEND | os.O_CLOEXEC | os.O_NOCTTY
        if mode is None:
            for parent in reversed(self.path.parents):
                if not parent.exists():
                    parent.mkdir()
                    self.created.append(parent)
            with contextlib.suppress(FileExistsError):  # else another writer created it just now
                fd = os.open(self.path, flags | os.O_CREAT | os.O_EXCL, 0o600)
                self.created.append(self.path)
                return fd
        fd = os.open(self.path, flags | os.O_NONBLOCK)  # O_NONBLOCK: a FIFO put there since must not block
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise OSError(errno.EINVAL, "not a regular file on a disk")
        return fd

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the file's exclusive ``flock`` (shared by every writer of this file)."""
        deadline = time.monotonic() + LOCK_WAIT
        pause = 0.001
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise OSError(errno.EAGAIN, f"locked by another process for {LOCK_WAIT:g} s") from None
                time.sleep(pause)
                pause = min(pause * 2, 0.05)
        try:
            yield
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)

    def _catch_up(self) -> None:
        """Under the lock: learn the ids appended since ``offset`` and drop a torn last line
        (its writer died mid-write: no live writer is writing while we hold the lock)."""
        if os.fstat(self.fd).st_size < self.offset:  # cut back by someone (copytruncate): read it all again
            self.offset = self.lines = 0
        ids, self.offset, self.lines, tail = scan(self.fd, self.offset, self.lines)
        self.seen.update(ids)
        if tail:
            if not is_torn_line(tail):
                raise NotASinkFile(f"line {self.lines + 1} is not JSON")
            os.ftruncate(self.fd, self.offset)
            os.fsync(self.fd)

    def deliver(self, events: Sequence[dict[str, Any]], still_due: StillDue = everything) -> dict[str, str]:
        fresh: dict[str, bytes] = {}
        for e in events:
            if e["id"] not in self.seen and e["id"] not in fresh:
                fresh[e["id"]] = (json.dumps(e, separators=(",", ":")) + "\n").encode()
        refused = {i: f"a line over {MAX_LINE // 2**20} MiB" for i, line in fresh.items() if len(line) > MAX_LINE}
        if len(refused) == len(fresh):
            return refused
        try:
            with self._locked():
                self._catch_up()
                new = {i: line for i, line in fresh.items() if i not in self.seen and i not in refused}
                live = set(still_due(list(new))) if new else set()  # cancelled meanwhile: not written
                new = {i: line for i, line in new.items() if i in live}
                self._append(b"".join(new.values()))
                self.seen.update(new)  # only once they are on disk
        except NotASinkFile as exc:
            raise SinkError(f"--sink {self.spec}: no longer a sink file ({exc}); nothing was written") from None
        except OSError as exc:
            raise SinkError(f"--sink {self.spec}: cannot write: {exc.strerror or exc}") from None
        return refused

    def _append(self, data: bytes) -> None:
        """Append and fsync ``data`` (under the lock, at ``offset``, the end of the file); a
        failure takes back what was written, as far as the file system lets it."""
        if not data:
            return
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self.fd, view) :]
            os.fsync(self.fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, self.offset)
            raise
        self.offset += len(data)
        self.lines += data.count(b"\n")

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def discard(self) -> None:
        """Close, and remove what opening created if nothing was written to it (a run
        refused at start leaves no file behind)."""
        self.close()
        for made in reversed(self.created):
            with contextlib.suppress(OSError):
                if made.is_dir():
                    made.rmdir()
                elif made.stat().st_size == 0:
                    made.unlink()
        self.created = []

    def identity(self) -> tuple[int, int]:
        """(device, inode) of the open file."""
        st = os.fstat(self.fd)
        return st.st_dev, st.st_ino
