# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the collection: these module_utils may change at any time; do not import them elsewhere.
"""The audit report: report.json (schema permfix.report/v1) and report.md, built on the controller."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ansible_collections.permfix.containers.plugins.module_utils._core.findings import (
    CLASSES,
    SCHEMA,
    SEVERITIES,
    count_by,
    sort_findings,
)

EMPTY_ENGINES: dict[str, Any] = {"docker": None, "podman": None, "rootless_users": []}


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


def build_report(hosts: Mapping[str, Mapping[str, Any]], generated_at: str) -> dict[str, Any]:
    """The whole report from ``{inventory_hostname: result}``."""
    entries = {name: build_host(hosts[name]) for name in sorted(hosts)}
    findings = [finding for entry in entries.values() for finding in entry["findings"]]
    return {
        "schema": SCHEMA,
        "generated_at": generated_at,
        "hosts": entries,
        "summary": {
            "hosts": len(entries),
            "unreachable": sum(1 for entry in entries.values() if not entry["reachable"]),
            "findings": count_by(findings, "severity", SEVERITIES),
            "by_class": count_by(findings, "class", CLASSES),
        },
    }


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
