# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the collection: these module_utils may change at any time; do not import them elsewhere.
"""The audit report: report.json (schema permfix.report/v1) and report.md, built on the controller."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ansible_collections.permfix.containers.plugins.module_utils._core.errors import PermfixError
from ansible_collections.permfix.containers.plugins.module_utils._core.findings import (
    CLASSES,
    SCHEMA,
    SEVERITIES,
    count_by,
    sort_findings,
)

EMPTY_ENGINES: dict[str, Any] = {"docker": None, "podman": None, "rootless_users": []}
CHANGES: tuple[str, ...] = ("new", "unchanged")
COMPARED_KEYS: tuple[str, ...] = ("host", "id", "class", "severity", "message")


class ReportError(PermfixError, ValueError):
    """A report (the previous one to compare with, usually) that cannot be used; the message says why."""


def build_host(result: Mapping[str, Any]) -> dict[str, Any]:
    """One host's entry from what the audit collected for it.

    ``result`` has ``reachable`` (bool), ``engines`` and ``findings``; an unreachable or
    failed host has ``reachable: false`` and ``reason``.
    """
    reachable = bool(result.get("reachable", False))
    host: dict[str, Any] = {
        "reachable": reachable,
        "engines": dict(EMPTY_ENGINES, **dict(result.get("engines") or {})),
        "findings": sort_findings(result.get("findings") or []),
    }
    if not reachable or result.get("reason"):
        host["reason"] = str(result.get("reason") or "the host did not return audit results")
    return host


def previous_findings(previous: Any) -> dict[str, dict[str, Mapping[str, Any]]] | None:
    """``{host: {finding id: finding}}`` of the report to compare with, or None without one.

    ``previous`` is a report dict (``permfix.report/v1``), or None / empty for "no previous
    run". Anything else raises :class:`ReportError` with a sentence.
    """
    if previous is None or (isinstance(previous, (Mapping, str, list)) and not previous):
        return None
    if not isinstance(previous, Mapping):
        raise ReportError(
            "the previous report must be a report dict (report.json read with from_json), "
            f"not {type(previous).__name__}"
        )
    schema = previous.get("schema")
    if schema != SCHEMA:
        raise ReportError(
            f"the previous report has schema {schema!r}; only {SCHEMA} reports can be compared "
            "(move the old report.json away, or point permfix_compare_with at a newer one)"
        )
    hosts = previous.get("hosts")
    if not isinstance(hosts, Mapping):
        raise ReportError("the previous report has no 'hosts' mapping; it is not a complete report.json")
    indexed: dict[str, dict[str, Mapping[str, Any]]] = {}
    for name, entry in hosts.items():
        findings = entry.get("findings") if isinstance(entry, Mapping) else None
        if not isinstance(findings, list) or not all(
            isinstance(finding, Mapping) and isinstance(finding.get("id"), str) for finding in findings
        ):
            raise ReportError(f"the previous report's host {name!r} has no list of findings with ids")
        indexed[str(name)] = {finding["id"]: finding for finding in findings}
    return indexed


def _compared(host: str, finding: Mapping[str, Any]) -> dict[str, Any]:
    return {"host": host, **{key: finding.get(key) for key in COMPARED_KEYS[1:]}}


def _compare(entries: dict[str, dict[str, Any]], before: dict[str, dict[str, Mapping[str, Any]]],
             previous: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Mark every finding of ``entries`` new or unchanged; return ``comparison`` and ``since_last_run``.

    A previous finding that is missing now is *resolved* only on a host that was fully audited
    this time (reachable, no ``reason``). On a host that is unreachable now, or whose audit
    failed part-way, it is *unverified*: nobody looked, so nobody may call it fixed. Hosts of
    the previous report that are not in this one (outside ``--limit``) are left out.
    """
    resolved: list[dict[str, Any]] = []
    unverified: list[dict[str, Any]] = []
    new: list[Mapping[str, Any]] = []
    hosts_with_new: set[str] = set()
    unchanged = 0
    for name, entry in entries.items():
        was = before.get(name, {})
        now = set()
        for finding in entry["findings"]:
            now.add(finding["id"])
            if finding["id"] in was:
                finding["change"] = "unchanged"
                unchanged += 1
            else:
                finding["change"] = "new"
                new.append(finding)
                hosts_with_new.add(name)
        gone = [_compared(name, finding) for key, finding in was.items() if key not in now]
        (resolved if entry["reachable"] and not entry.get("reason") else unverified).extend(
            sort_findings(gone)
        )
    comparison = {
        "previous_generated_at": previous.get("generated_at"),
        "resolved": resolved,
        "unverified": unverified,
    }
    since = {
        "new": count_by(new, "severity", SEVERITIES),
        "unchanged": unchanged,
        "resolved": len(resolved),
        "hosts_with_new": sorted(hosts_with_new),
    }
    return comparison, since


def build_report(
    hosts: Mapping[str, Mapping[str, Any]], generated_at: str, previous: Any = None
) -> dict[str, Any]:
    """The whole report from ``{inventory_hostname: result}``, compared with ``previous`` when given.

    Without a previous report, ``summary.since_last_run`` is None and findings have no
    ``change``; with one, see :func:`_compare`.
    """
    before = previous_findings(previous)
    entries = {str(name): build_host(hosts[name]) for name in sorted(hosts, key=str)}
    findings = [finding for entry in entries.values() for finding in entry["findings"]]
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "generated_at": generated_at,
        "hosts": entries,
        "summary": {
            "hosts": len(entries),
            "unreachable": sum(1 for entry in entries.values() if not entry["reachable"]),
            "findings": count_by(findings, "severity", SEVERITIES),
            "by_class": count_by(findings, "class", CLASSES),
            "since_last_run": None,
        },
    }
    if before is not None:
        report["comparison"], report["summary"]["since_last_run"] = _compare(entries, before, previous)
    return report


def _cell(value: Any) -> str:
    """A value made safe for one Markdown table cell."""
    if value is None or value == "":
        return "-"
    return str(value).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _engines_line(engines: Mapping[str, Any]) -> str:
    users = ", ".join(engines.get("rootless_users") or []) or "none"
    return (
        f"docker {engines.get('docker') or 'absent'}; podman {engines.get('podman') or 'absent'}; "
        f"rootless podman users: {users}"
    )


def summary_lines(report: Mapping[str, Any]) -> list[str]:
    """A short fixed-width summary table, one line per host, for the end of a run."""
    rows: list[tuple[str, ...]] = [("host", "reachable", "error", "warning", "info")]
    for name, entry in report["hosts"].items():
        counts = count_by(entry["findings"], "severity", SEVERITIES)
        rows.append((name, "yes" if entry["reachable"] else "NO", *(str(counts[s]) for s in SEVERITIES)))
    totals = report["summary"]["findings"]
    rows.append(
        (
            "total",
            f"{report['summary']['hosts'] - report['summary']['unreachable']}/{report['summary']['hosts']}",
            *(str(totals[s]) for s in SEVERITIES),
        )
    )
    widths = [max(len(row[index]) for row in rows) for index in range(len(rows[0]))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]


def finding_lines(report: Mapping[str, Any]) -> list[str]:
    """One line per finding (host, severity, class, message), and one per unaudited host."""
    lines = []
    for name, entry in report["hosts"].items():
        if not entry["reachable"]:
            lines.append(f"{name}: not audited: {entry.get('reason')}")
        for finding in entry["findings"]:
            lines.append(f"{name}: {finding['severity']} [{finding['class']}] {finding['message']}")
    return lines or ["no findings"]


def render_markdown(report: Mapping[str, Any]) -> str:
    """report.md: the summary, then a table of findings per host."""
    summary = report["summary"]
    lines = [
        "# permfix.containers audit report",
        "",
        f"Generated at {report['generated_at']} (schema `{report['schema']}`).",
        "",
        "## Summary",
        "",
        "| hosts | unreachable | errors | warnings | info |",
        "|---:|---:|---:|---:|---:|",
        f"| {summary['hosts']} | {summary['unreachable']} | {summary['findings']['error']} "
        f"| {summary['findings']['warning']} | {summary['findings']['info']} |",
        "",
        "| class | findings |",
        "|---|---:|",
    ]
    lines += [f"| {name} | {count} |" for name, count in summary["by_class"].items()]
    for name, entry in report["hosts"].items():
        lines += ["", f"## {name}", ""]
        if not entry["reachable"]:
            lines.append(f"**Unreachable or failed**: {_cell(entry.get('reason'))}")
            continue
        lines.append(_engines_line(entry["engines"]))
        if entry.get("reason"):
            lines += ["", f"Partial result: {_cell(entry['reason'])}"]
        lines.append("")
        if not entry["findings"]:
            lines.append("No findings.")
            continue
        lines += [
            "| severity | class | subject | container | message | fix |",
            "|---|---|---|---|---|---|",
        ]
        for finding in entry["findings"]:
            fix = finding.get("fix") if finding.get("fixable") else "not fixable automatically"
            lines.append(
                f"| {finding['severity']} | {finding['class']} | {_cell(finding['subject'])} "
                f"| {_cell(finding.get('container'))} | {_cell(finding['message'])} | {_cell(fix)} |"
            )
    return "\n".join(lines) + "\n"
