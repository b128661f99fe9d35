"""Where the rules are, and the clinic's time zone read quickly: standard library and PyYAML
only, so a read-only command (``ipt agenda``) need not validate every rule file to know
which week "this week" is."""

from __future__ import annotations

import re
from pathlib import Path

from ..core.errors import InvalidInput, RuleFileError
from ..core.wallclock import zone

CLINIC_FILE = "clinic.yaml"


def builtin_rules_dir() -> Path:
    """The built-in ``rules/``: inside the installed package (the wheel maps the repo's
    ``rules/`` to ``ipt_workflow/rules``), else next to the package in a checkout."""
    here = Path(__file__).resolve().parent.parent  # the ipt_workflow package
    for candidate in (here / "rules", here.parent / "rules"):
        if (candidate / CLINIC_FILE).is_file():
            return candidate
    raise RuleFileError([f"{here / 'rules'}: (directory): the built-in rules are missing from this install"])


def clinic_timezone(directory: Path | None) -> str:
    """The clinic policy's ``timezone`` in the rules ``directory`` (default: the built-in
    rules), read from its ``clinic.yaml``: the one top-level ``timezone:`` line (no YAML
    parser needed), else the file read as YAML. Anything unusual (no such file there, a file
    that does not read, no valid zone in it) goes the long way, through ``load_rules``,
    which raises the same RuleFileError any command would."""
    base = directory or builtin_rules_dir()
    path = base / CLINIC_FILE
    if base.is_dir() and path.is_file() and not (base / "clinic.yml").exists():
        try:
            text = path.read_text("utf-8")
            lines = _ZONE_LINE.findall(text)
            name = lines[0][1] if len(lines) == 1 else _yaml_zone(text)
            if name is not None:
                zone(name)
                return name
        except (OSError, UnicodeDecodeError, InvalidInput):
            pass
    from .files import load_rules

    return load_rules(directory).clinic.timezone


#: A top-level ``timezone: Europe/London`` line (quoted or not, with a comment or not).
_ZONE_LINE = re.compile(r"^timezone:[ \t]*(['\"]?)([A-Za-z0-9_+/-]+)\1[ \t]*(?:#.*)?$", re.MULTILINE)


def _yaml_zone(text: str) -> str | None:
    import yaml

    try:
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError:
        return None
    name = data.get("timezone") if isinstance(data, dict) else None
    return name if isinstance(name, str) else None
