"""Imported at start-up only by the processes of ``tests/anytime.py`` (it puts this folder on
PYTHONPATH). libfaketime 0.9.10 with FAKETIME_DONT_FAKE_MONOTONIC=1 makes ``clock_nanosleep``
on the monotonic clock fail with EINVAL, which is how Python 3.11's ``time.sleep`` waits; this
sleeps with ``select`` instead (a relative timeout, on the unfaked monotonic clock)."""

import os
import select
import time

if os.environ.get("FAKETIME"):

    def _sleep(seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            select.select([], [], [], left)

    time.sleep = _sleep
