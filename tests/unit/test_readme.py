"""The README's Python examples are run as they stand, so they cannot drift from the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_readme_has_the_core_and_the_database_examples() -> None:
    assert len(BLOCKS) >= 2
    assert "Workflow(" in BLOCKS[1]


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the database example writes clinic.sqlite here
    monkeypatch.delenv("IPT_DB", raising=False)
    namespace: dict[str, object] = {}
    exec(compile(BLOCKS[index], f"README.md example {index + 1}", "exec"), namespace)  # the README's own code
    assert namespace["course"] is not None
