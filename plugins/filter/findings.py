# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller-side filters that select and aggregate findings with JMESPath."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.permfix.containers.plugins.module_utils._core.findings import (
    CLASSES,
    SEVERITIES,
)

try:
    import jmespath
    from jmespath.exceptions import JMESPathError
except ImportError:  # pragma: no cover - depends on the controller
    jmespath = None
    JMESPathError = Exception

SELECT_KEYS: tuple[str, ...] = ("class", "severity", "host", "container", "engine", "user", "subject", "id", "fixable")
KNOWN_VALUES: dict[str, tuple[str, ...]] = {"class": CLASSES, "severity": SEVERITIES}


def flatten(data: Any) -> list[dict[str, Any]]:
    """The findings of a report (or its hosts mapping) with ``host`` set, or a list as it is."""
    if isinstance(data, (list, tuple)):
        return [dict(item) for item in data]
    if isinstance(data, Mapping):
        nested = data.get("hosts")
        hosts: Mapping[str, Any] = nested if isinstance(nested, Mapping) else data
        findings: list[dict[str, Any]] = []
        for name in sorted(hosts):
            entry = hosts[name]
            if not isinstance(entry, Mapping):
                raise AnsibleFilterError(f"the entry for host {name} is not a mapping of reachable/engines/findings")
            findings.extend(dict(finding, host=name) for finding in entry.get("findings") or [])
        return findings
    raise AnsibleFilterError(
        f"expected a permfix report, its hosts mapping or a list of findings, not {type(data).__name__}"
    )


def _jmespath() -> Any:
    if jmespath is None:
        raise AnsibleFilterError(
            "the permfix.containers findings filters need the Python library jmespath on the controller: "
            "pip install jmespath (or add it to the execution environment)"
        )
    return jmespath


def query(data: Any, expression: str) -> Any:
    """Apply a JMESPath expression to the flat list of findings."""
    library = _jmespath()
    try:
        return library.search(str(expression), flatten(data))
    except JMESPathError as exc:
        raise AnsibleFilterError(f"invalid JMESPath expression {expression!r}: {to_native(exc)}") from exc


def _literal(value: Any) -> str:
    """A JMESPath literal for ``value`` (JSON between backticks, backticks escaped)."""
    return "`" + json.dumps(value).replace("`", "\\`") + "`"


def _condition(key: str, wanted: Any) -> str:
    field = f'"{key}"'
    if isinstance(wanted, (list, tuple, set)):
        values = list(wanted)
        if not values:
            return "`false`"
        return f"contains({_literal(values)}, {field})"
    return f"{field} == {_literal(wanted)}"


def select_expression(criteria: Mapping[str, Any]) -> str:
    """The JMESPath expression that keeps the findings matching every criterion."""
    conditions = []
    for key in SELECT_KEYS:
        if key not in criteria or criteria[key] is None:
            continue
        wanted = criteria[key]
        if key == "fixable":
            wanted = bool(wanted)
        conditions.append(_condition(key, wanted))
    min_severity = criteria.get("min_severity")
    if min_severity is not None:
        if min_severity not in SEVERITIES:
            raise AnsibleFilterError(f"min_severity must be one of {', '.join(SEVERITIES)}, not {min_severity!r}")
        conditions.append(_condition("severity", list(SEVERITIES[: SEVERITIES.index(min_severity) + 1])))
    if not conditions:
        return "[*]"
    return "[?" + " && ".join(f"({condition})" for condition in conditions) + "]"


def select(data: Any, **criteria: Any) -> list[dict[str, Any]]:
    """The findings that match every given criterion (a value, or a list of accepted values)."""
    unknown = sorted(set(criteria) - set(SELECT_KEYS) - {"min_severity"})
    if unknown:
        raise AnsibleFilterError(
            f"findings_select does not know {', '.join(unknown)}; it selects by "
            f"{', '.join(SELECT_KEYS)} and min_severity"
        )
    for key, known in KNOWN_VALUES.items():
        wanted = criteria.get(key)
        values = wanted if isinstance(wanted, (list, tuple, set)) else [] if wanted is None else [wanted]
        strange = [value for value in values if value not in known]
        if strange:
            raise AnsibleFilterError(f"{key} must be one of {', '.join(known)}, not {', '.join(map(str, strange))}")
    return list(query(data, select_expression(criteria)) or [])


def count_by(data: Any, key: str = "class", zeros: bool | None = None) -> dict[str, int]:
    """How many findings have each value of ``key`` (a field name or a JMESPath expression)."""
    field = f'"{key}"' if key.isidentifier() else key
    rows = query(data, f"[*].{{value: {field}}}")
    counts: dict[str, int] = {}
    if zeros is None or zeros:
        for known in KNOWN_VALUES.get(key, ()):
            counts[known] = 0
    for row in rows or []:
        value = row.get("value")
        label = "none" if value is None else str(value)
        counts[label] = counts.get(label, 0) + 1
    return counts


def _problems(findings: Any) -> list[dict[str, Any]]:
    return [dict(finding) for finding in flatten(findings or []) if finding.get("severity") != "info"]


def diff(
    before: Any, after: Any = None, disabled: Any = None, check_mode: bool = False
) -> dict[str, list[dict[str, Any]]]:
    """What a remediation fixed, what is left (with the reason) and what appeared, by finding id.

    Informational findings are left out. In check mode ``after`` is ignored and the fixable
    findings of the enabled classes are predicted as fixed.
    """
    off = set(disabled or [])
    previous = _problems(before)
    fixed: list[dict[str, Any]] = []
    remaining: list[dict[str, Any]] = []
    if check_mode:
        for finding in previous:
            if finding.get("class") not in off and finding.get("fixable"):
                fixed.append(finding)
            else:
                remaining.append(finding)
        new: list[dict[str, Any]] = []
    else:
        current = _problems(after)
        current_ids = {finding.get("id") for finding in current}
        previous_ids = {finding.get("id") for finding in previous}
        fixed = [finding for finding in previous if finding.get("id") not in current_ids]
        remaining = [finding for finding in current if finding.get("id") in previous_ids]
        new = [finding for finding in current if finding.get("id") not in previous_ids]
    for finding in remaining:
        if finding.get("class") in off:
            finding["reason"] = f"remediation of {finding.get('class')} is switched off"
        elif not finding.get("fixable"):
            finding["reason"] = "not fixable automatically: needs a person"
        else:
            finding["reason"] = "still present after the role ran"
        finding["line"] = (
            f"{finding.get('severity')} [{finding.get('class')}] {finding.get('message')} ({finding['reason']})"
        )
    return {"fixed": fixed, "remaining": remaining, "new": new}


class FilterModule:
    """permfix.containers findings filters (JMESPath)."""

    def filters(self) -> dict[str, Any]:
        return {
            "findings": flatten,
            "findings_query": query,
            "findings_select": select,
            "findings_count_by": count_by,
            "findings_diff": diff,
        }
