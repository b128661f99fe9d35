"""The one-line ``StoreError`` for each way a database can fail, from the driver's error or
SQLAlchemy's (standard library only, so the SQLAlchemy-free write path can use it)."""

from __future__ import annotations

from ..core.errors import DatabaseBusy, StoreError
from . import LOCK_TIMEOUT_ENV


def database_failure(exc: BaseException, where: str, wait: float) -> StoreError:
    """The one-line StoreError for a failure of the database ``where`` (a URL fit to show)
    whose lock wait is ``wait`` seconds: busy past the lock wait (``DatabaseBusy``), disk
    full, I/O error, read-only, or else its first line. Never the statement or its
    parameters (client references)."""
    orig = getattr(exc, "orig", None) or exc
    name = str(getattr(orig, "sqlite_errorname", "") or "")
    state = str(getattr(orig, "sqlstate", "") or "")
    first = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or state == "55P03" or "database is locked" in first:
        return DatabaseBusy(
            f"database '{where}' is busy: still locked by another process after {wait:g} s "
            f"({LOCK_TIMEOUT_ENV}); nothing was changed, try again later"
        )
    if name == "SQLITE_FULL" or state == "53100" or "database or disk is full" in first:
        return StoreError(f"database '{where}': the disk is full; nothing was written")
    if name.startswith("SQLITE_IOERR") or state.startswith("58") or "disk I/O error" in first:
        return StoreError(f"database '{where}': disk I/O error; nothing was written")
    if name.startswith("SQLITE_READONLY") or state == "25006" or "readonly database" in first:
        return StoreError(f"database '{where}' is read-only; nothing was written")
    return StoreError(f"database '{where}' cannot be used: {first}")
