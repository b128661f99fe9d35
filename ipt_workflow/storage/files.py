"""The SQLite file on disk: where a URL points, creating it private to its owner, and making an
existing one private. Standard library only, so the quick read path can use it."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

SIDECARS = ("", "-wal", "-shm", "-journal")


def sqlite_path(url: str) -> Path | None:
    """The file behind a plain path or an ``sqlite:///`` URL; None for anything else."""
    if "://" not in url:
        return Path(url).expanduser().resolve()
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        return Path(url.removeprefix("sqlite:///").split("?", 1)[0])
    return None


def create_private_file(path: Path) -> None:
    """Create an empty file readable by its owner only (mode 0600, whatever the umask), and
    its directory (0700) if need be."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
        os.close(fd)


def make_private(path: Path) -> None:
    """The database file and its -wal, -shm and -journal files are readable by their owner
    only: a file we own that others may read is set to mode 0600; one owned by another user
    is left as it is with a warning (logged; on stderr when logging is not set up)."""
    for f in (Path(f"{path}{suffix}") for suffix in SIDECARS):
        try:
            st = f.stat()
        except OSError:
            continue
        mode = stat.S_IMODE(st.st_mode)
        if not mode & 0o077 or not stat.S_ISREG(st.st_mode):
            continue
        if st.st_uid == os.geteuid():
            try:
                os.chmod(f, 0o600)
                continue
            except OSError:
                pass
        log.warning(
            "warning: database file %s can be read by other users (mode %04o) and is not ours to change; "
            "its owner should make it mode 0600",
            f,
            mode,
        )
