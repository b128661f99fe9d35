"""Headless Chromium from the distribution (``/usr/bin/chromium``, ``make browser`` installs
it), driven by Playwright for Python; never a downloaded browser. Without it these tests
skip, saying so; under ``CI=true`` they fail instead, so CI cannot pass without them."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("IPT_TEST_CHROMIUM", "/usr/bin/chromium")
HOW_TO_ENABLE = "run `make browser` (apt-get install -y chromium) or set IPT_TEST_CHROMIUM"


def _missing() -> str | None:
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        return f"Chromium is not installed at {CHROMIUM}"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (pip install -e '.[dev]')"
    return None


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Chromium for the session."""
    reason = _missing()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI=true requires the browser tests to run", pytrace=False)
        pytest.skip(f"{reason}: {HOW_TO_ENABLE}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()
