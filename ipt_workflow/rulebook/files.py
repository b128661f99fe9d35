"""Reading rule files: YAML with a safe loader (duplicate keys refused), validated into
``Protocol`` / ``ClinicPolicy``. A bad file is refused whole; every problem is reported as
``FILE: location (line N): message``.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ..core.errors import RuleFileError, UnknownName, shown
from ..core.policy import ClinicPolicy
from ..core.protocol import Protocol, _LocatedError, problems, version_key
from .locate import CLINIC_FILE as CLINIC_FILE
from .locate import builtin_rules_dir as builtin_rules_dir

_SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present


class _UniqueKeyLoader(_SafeLoader):  # type: ignore[valid-type,misc]
    """SafeLoader that refuses a key given twice in one mapping and reads booleans the
    YAML 1.2 way (only true/false), so ``country: NO`` stays Norway."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                kind = "list" if isinstance(key_node, yaml.SequenceNode) else "mapping"
                raise yaml.constructor.ConstructorError(
                    None, None, f"a key must be a plain name, not a {kind}", key_node.start_mark
                )
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key '{key}' is given twice", key_node.start_mark)
            seen.add(key)
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return mapping

    def construct_yaml_timestamp(self, node: yaml.ScalarNode) -> Any:
        """An unquoted date that does not exist (2026-02-30) is an error at its line."""
        try:
            return super().construct_yaml_timestamp(node)
        except ValueError as exc:
            raise yaml.constructor.ConstructorError(
                None, None, f"'{node.value}' is not a real date or time ({exc})", node.start_mark
            ) from None


_UniqueKeyLoader.add_constructor("tag:yaml.org,2002:timestamp", _UniqueKeyLoader.construct_yaml_timestamp)
_UniqueKeyLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_UniqueKeyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


@dataclass
class Rulebook:
    """Every version of every protocol, and the clinic policy, with the file each came from.

    ``versions[id]`` maps each version of a protocol to it (``load_rules`` puts them in
    semantic version order); the highest is the one new courses take. ``files[(id, version)]``
    is the file each came from."""

    versions: dict[str, dict[str, Protocol]]
    clinic: ClinicPolicy
    files: dict[tuple[str, str], Path] = field(default_factory=dict)
    clinic_file: Path | None = None
    directory: Path | None = None

    @property
    def protocols(self) -> dict[str, Protocol]:
        """The highest version of each protocol, by id."""
        return {pid: _highest(by_version) for pid, by_version in self.versions.items()}

    @property
    def sources(self) -> dict[str, Path]:
        """The file of the highest version of each protocol, by id."""
        found = ((pid, (pid, p.version)) for pid, p in self.protocols.items())
        return {pid: self.files[key] for pid, key in found if key in self.files}

    def protocol(self, protocol_id: str, version: str | None = None) -> Protocol:
        """Version ``version`` of protocol ``protocol_id`` (default: its highest version).
        Raises UnknownName listing the known protocols, or the versions of this one."""
        by_version = self.versions.get(protocol_id)
        if by_version is None:
            known = ", ".join(sorted(self.versions)) or "none"
            raise UnknownName(f"unknown protocol {shown(protocol_id)} (known: {known})")
        if version is None:
            return _highest(by_version)
        try:
            return by_version[version]
        except KeyError:
            known = ", ".join(self.known(protocol_id))
            raise UnknownName(
                f"unknown version {shown(version)} of protocol '{protocol_id}' (known: {known})"
            ) from None

    def known(self, protocol_id: str) -> list[str]:
        """The versions of ``protocol_id`` there are, in version order (none: empty)."""
        return sorted(self.versions.get(protocol_id, {}), key=version_key)

    def named(self, reference: str) -> Protocol:
        """The protocol ``ID`` (its highest version) or ``ID@VERSION``; raises UnknownName."""
        protocol_id, at, version = reference.partition("@")
        return self.protocol(protocol_id, version if at else None)

    def all_protocols(self) -> list[Protocol]:
        """Every version of every protocol: by id, then in version order."""
        return [
            self.versions[pid][v] for pid in sorted(self.versions) for v in sorted(self.versions[pid], key=version_key)
        ]


def _highest(by_version: dict[str, Protocol]) -> Protocol:
    return by_version[max(by_version, key=version_key)]


def with_versions(found: dict[tuple[str, str], Protocol]) -> dict[str, dict[str, Protocol]]:
    """``{id: {version: protocol}}`` of ``found``, each id's versions in semantic version order."""
    out: dict[str, dict[str, Protocol]] = {}
    for (pid, version), p in sorted(found.items(), key=lambda kv: (kv[0][0], version_key(kv[0][1]))):
        out.setdefault(pid, {})[version] = p
    return out


def is_clinic_file(path: Path, data: Any) -> bool:
    return path.name in (CLINIC_FILE, "clinic.yml") or (isinstance(data, dict) and "working_days" in data)


def load_file(path: Path) -> Protocol | ClinicPolicy:
    """One rule file, validated; raises RuleFileError with every problem found in it."""
    name = str(path)
    node, data = read_yaml(_read_regular(path), name)
    if not isinstance(data, dict):
        raise RuleFileError([f"{name}: (top): a rule file must be a mapping, not {type(data).__name__}"])
    model: type[Protocol] | type[ClinicPolicy] = ClinicPolicy if is_clinic_file(path, data) else Protocol
    try:
        return model.model_validate(data)
    except (ValidationError, _LocatedError) as exc:
        lines = []
        for loc, message in problems(exc):
            line = _line_of(node, loc)
            where = f"{loc} (line {line})" if line else loc
            lines.append(f"{name}: {where}: {message}")
        raise RuleFileError(lines) from None


def _read_regular(path: Path) -> str:
    """The UTF-8 text of ``path``; raises RuleFileError unless it is a regular file. Opened
    without blocking, so a FIFO (or a device) is refused instead of waited on."""
    name = str(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise RuleFileError([f"{name}: (file): {exc.strerror or exc}"]) from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise RuleFileError([f"{name}: (file): not a regular file"])
        try:
            return f.read().decode("utf-8")
        except OSError as exc:
            raise RuleFileError([f"{name}: (file): {exc.strerror or exc}"]) from None
        except UnicodeDecodeError:
            raise RuleFileError([f"{name}: (file): not UTF-8 text"]) from None


def read_yaml(text: str, name: str) -> tuple[Any, Any]:
    """(node tree, data) of YAML ``text``, read safely; raises RuleFileError
    ``NAME: line L, column C: problem`` for a syntax error, a duplicate key or a bad date."""
    loader = _UniqueKeyLoader(text)
    try:
        node = loader.get_single_node()
        return node, (loader.construct_document(node) if node is not None else None)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(yaml)"
        raise RuleFileError([f"{name}: {where}: {exc.problem or exc.context}"]) from None
    except yaml.YAMLError as exc:
        raise RuleFileError([f"{name}: (yaml): {exc}"]) from None
    finally:
        loader.dispose()


def _line_of(node: Any, loc: str) -> int | None:
    """The 1-based line of ``loc`` (``rules[2].when``) in a composed YAML tree, if found."""
    parts = [p for p in loc.replace("[", ".").replace("]", "").split(".") if p and p != "(top)"]
    line = None
    for part in parts:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if k.value == part), None)
            if match is None:
                break
            line = match[0].start_mark.line + 1
            node = match[1]
        elif isinstance(node, yaml.SequenceNode) and part.isdigit() and int(part) < len(node.value):
            node = node.value[int(part)]
            line = node.start_mark.line + 1
        else:
            break
    return line


def load_rules(directory: Path | None = None) -> Rulebook:
    """The built-in rules overlaid with every ``*.yaml`` and ``*.yml`` in ``directory``: a
    protocol there replaces the built-in one of the same id and version (other versions sit
    beside it), and a clinic policy there replaces the built-in ``clinic.yaml``. Raises
    RuleFileError listing the problems of every bad file, and of two files with one
    ``(id, version)``."""
    builtin = builtin_rules_dir()
    base = directory or builtin
    if not base.is_dir():
        raise RuleFileError([f"{base}: (directory): not a directory of rule files"])
    loaded = overlay(base)
    if loaded.errors:
        raise RuleFileError(loaded.errors)
    assert loaded.clinic is not None  # the built-in rules hold one
    return Rulebook(
        versions=with_versions(loaded.protocols), clinic=loaded.clinic, files=loaded.sources,
        clinic_file=loaded.clinic_path, directory=base,
    )  # fmt: skip


def overlay(base: Path) -> _Directory:
    """What ``load_rules(base)`` reads: the built-in rules, then ``base`` over them (the
    problems are those of ``base``, and of the built-in rules should they be broken)."""
    builtin = builtin_rules_dir()
    out, _ = _load_directory(builtin)
    if base.resolve() == builtin.resolve():
        return out
    own, _ = _load_directory(base)
    out.errors.extend(own.errors)
    out.protocols.update(own.protocols)
    out.sources.update(own.sources)
    if own.clinic is not None:
        out.clinic, out.clinic_path = own.clinic, own.clinic_path
    return out


@dataclass
class _Directory:
    protocols: dict[tuple[str, str], Protocol] = field(default_factory=dict)
    sources: dict[tuple[str, str], Path] = field(default_factory=dict)
    clinic: ClinicPolicy | None = None
    clinic_path: Path | None = None
    errors: list[str] = field(default_factory=list)


def _load_directory(base: Path) -> tuple[_Directory, list[str]]:
    """(what the rule files in ``base`` hold with the problems of the set, files that loaded
    and fit the set). One ``(id, version)`` defined twice and a second clinic policy are problems."""
    out = _Directory()
    ok: list[str] = []
    for path in sorted([*base.glob("*.yaml"), *base.glob("*.yml")]):
        try:
            loaded = load_file(path)
        except RuleFileError as exc:
            out.errors.extend(exc.problems)
            continue
        if isinstance(loaded, ClinicPolicy):
            if out.clinic_path is not None:
                out.errors.append(f"{path}: (file): a second clinic policy (the first is {out.clinic_path})")
                continue
            out.clinic, out.clinic_path = loaded, path
        elif (key := (loaded.id, loaded.version)) in out.protocols:
            out.errors.append(
                f"{path}: {_located(path, 'version')}: protocol '{loaded.id}' version {shown(loaded.version)} "
                f"is also defined in {out.sources[key]}"
            )
            continue
        else:
            out.protocols[key] = loaded
            out.sources[key] = path
        ok.append(str(path))
    return out, ok


def check_paths(paths: list[Path]) -> tuple[list[str], list[str]]:
    """(files that loaded, problems) for rule files or directories of them; a directory is
    checked as ``load_rules`` reads it."""
    ok: list[str] = []
    bad: list[str] = []
    for p in paths:
        if p.is_dir():
            loaded, fine = _load_directory(p)
            ok.extend(fine)
            bad.extend(loaded.errors)
            continue
        try:
            load_file(p)
            ok.append(str(p))
        except RuleFileError as exc:
            bad.extend(exc.problems)
    return ok, bad


def _located(path: Path, loc: str) -> str:
    """``loc (line N)`` for ``loc`` in the rule file ``path`` (read again: a file that loaded)."""
    node, _ = read_yaml(_read_regular(path), str(path))
    line = _line_of(node, loc)
    return f"{loc} (line {line})" if line else loc


def rules_listing(base: Path) -> dict[str, Any]:
    """What ``load_rules(base)`` gives, as data: ``{directory, protocols: [{id, version,
    default, source}], clinic: {source}}``, protocols by id then version order (the default
    is the highest version). Lists what loaded even when some files did not."""
    loaded = overlay(base)
    versions = with_versions(loaded.protocols)
    return {
        "directory": str(base),
        "protocols": [
            {"id": pid, "version": v, "default": v == list(by_version)[-1], "source": str(loaded.sources[(pid, v)])}
            for pid, by_version in versions.items()
            for v in by_version
        ],
        "clinic": {"source": str(loaded.clinic_path) if loaded.clinic_path else None},
    }
