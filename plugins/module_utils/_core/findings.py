# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the collection: these module_utils may change at any time; do not import them elsewhere.
"""Findings: the one record every detection in permfix.containers returns.

A finding is a plain dict (so it crosses the module/controller boundary as JSON) with the
keys of ``FINDING_KEYS``; build one with :func:`make_finding` so that the ``id`` is stable
across runs and the values are checked.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ansible_collections.permfix.containers.plugins.module_utils._core.errors import PermfixError

SCHEMA = "permfix.report/v1"

CLASSES: tuple[str, ...] = ("bind_mount", "named_volume", "subid", "unprivileged_port")
SEVERITIES: tuple[str, ...] = ("error", "warning", "info")

FINDING_KEYS: tuple[str, ...] = (
    "id",
    "class",
    "severity",
    "subject",
    "container",
    "engine",
    "user",
    "observed",
    "expected",
    "message",
    "fixable",
    "fix",
)


class FindingError(PermfixError, ValueError):
    """A finding was built with a value outside the schema."""


def make_id(finding_class: str, *parts: str | None) -> str:
    """Return a stable id: the class, then the non-empty parts, joined with ``:``.

    The parts name what the finding is about (a container, a kind of problem, a path);
    they never contain values that change between runs (counts, times).
    """
    return ":".join([finding_class] + [str(part) for part in parts if part not in (None, "")])


def make_finding(
    finding_class: str,
    severity: str,
    subject: str,
    message: str,
    *,
    id_parts: Iterable[str | None] = (),
    container: str | None = None,
    engine: str | None = None,
    user: str | None = None,
    observed: Mapping[str, Any] | None = None,
    expected: Mapping[str, Any] | None = None,
    fixable: bool = False,
    fix: str | None = None,
) -> dict[str, Any]:
    """Build one finding in the report schema.

    ``id_parts`` are what makes the id unique among the findings of one host beyond the
    class and subject, for example ``("missing", "subuid")``; the id is
    ``class:container:id_parts...:subject`` with empty parts left out.
    """
    if finding_class not in CLASSES:
        raise FindingError(f"unknown finding class {finding_class!r}; expected one of {', '.join(CLASSES)}")
    if severity not in SEVERITIES:
        raise FindingError(f"unknown severity {severity!r}; expected one of {', '.join(SEVERITIES)}")
    if not subject:
        raise FindingError("a finding needs a subject")
    if not message:
        raise FindingError("a finding needs a message")
    return {
        "id": make_id(finding_class, container, *id_parts, subject),
        "class": finding_class,
        "severity": severity,
        "subject": subject,
        "container": container,
        "engine": engine,
        "user": user,
        "observed": dict(observed or {}),
        "expected": dict(expected or {}),
        "message": message,
        "fixable": bool(fixable),
        "fix": fix,
    }


def validate_finding(finding: Mapping[str, Any]) -> list[str]:
    """Return the problems of one finding against the schema (empty when it is valid)."""
    problems = []
    missing = [key for key in FINDING_KEYS if key not in finding]
    if missing:
        problems.append(f"missing keys: {', '.join(missing)}")
    if finding.get("class") not in CLASSES:
        problems.append(f"class {finding.get('class')!r} is not one of {', '.join(CLASSES)}")
    if finding.get("severity") not in SEVERITIES:
        problems.append(f"severity {finding.get('severity')!r} is not one of {', '.join(SEVERITIES)}")
    for key in ("id", "subject", "message"):
        if not isinstance(finding.get(key), str) or not finding.get(key):
            problems.append(f"{key} must be a non-empty string")
    for key in ("observed", "expected"):
        if not isinstance(finding.get(key), Mapping):
            problems.append(f"{key} must be a mapping")
    if not isinstance(finding.get("fixable"), bool):
        problems.append("fixable must be true or false")
    return problems


def count_by(findings: Iterable[Mapping[str, Any]], key: str, names: Iterable[str]) -> dict[str, int]:
    """Count findings per value of ``key``, with every name in ``names`` present (0 if none)."""
    counts = {name: 0 for name in names}
    for finding in findings:
        value = finding.get(key)
        if value in counts:
            counts[value] += 1
    return counts


def sort_findings(findings: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Sort findings by severity (errors first), then class and id, for stable output."""
    rank = {name: index for index, name in enumerate(SEVERITIES)}
    return sorted(
        (dict(finding) for finding in findings),
        key=lambda f: (rank.get(f.get("severity", ""), len(rank)), f.get("class", ""), f.get("id", "")),
    )
