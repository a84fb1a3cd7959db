# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the collection: these module_utils may change at any time; do not import them elsewhere.
"""The audit report: report.json (schema permfix.report/v1) and report.md, built on the controller."""

from __future__ import annotations

import re
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
    return str(value).replace("\\", "\\\\").replace("|", "\\|").replace("<", "\\<").replace("\n", " ")


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


def problem_template(finding: Mapping[str, Any]) -> str:
    """What is wrong, without where: the message with the finding's own subject, container and
    user replaced by ``{subject}``, ``{container}``, ``{user}`` and every number by ``{n}``.

    Findings of one class with the same template are one problem, whatever host, path,
    container or count they are about (report.md groups them so).
    """
    names = {
        str(finding[key]): "{" + key + "}"
        for key in ("user", "container", "subject")
        if finding.get(key) not in (None, "")
    }
    alternatives = [re.escape(name) for name in sorted(names, key=len, reverse=True)]
    pattern = re.compile(
        "(?<![\\w./-])(" + "|".join(alternatives) + ")(?![\\w/-])|\\b\\d+\\b" if alternatives else "\\b\\d+\\b"
    )
    return pattern.sub(lambda match: names.get(match.group(0), "{n}"), str(finding.get("message", "")))


def problems(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The findings grouped by problem (class and :func:`problem_template`), worst first.

    Each group: ``class``, ``severity`` (the worst of its findings), ``problem`` (the
    template), ``findings`` (their number) and ``hosts`` (sorted names).
    """
    rank = {name: index for index, name in enumerate(SEVERITIES)}
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for name, entry in report["hosts"].items():
        for finding in entry["findings"]:
            key = (str(finding["class"]), problem_template(finding))
            group = groups.setdefault(
                key, {"class": key[0], "severity": finding["severity"], "problem": key[1], "findings": 0, "hosts": []}
            )
            group["findings"] += 1
            if rank.get(finding["severity"], len(rank)) < rank.get(group["severity"], len(rank)):
                group["severity"] = finding["severity"]
            if name not in group["hosts"]:
                group["hosts"].append(name)
    return sorted(groups.values(), key=lambda g: (rank.get(g["severity"], len(rank)), g["class"], g["problem"]))


def _table(header: tuple[str, ...], rows: list[tuple[Any, ...]], align: str = "") -> list[str]:
    """A Markdown table; ``align`` has one letter per column (``r`` right, else left)."""
    rule = "|" + "|".join("---:" if (align[index:index + 1] == "r") else "---" for index in range(len(header))) + "|"
    return [
        "| " + " | ".join(header) + " |",
        rule,
        *("| " + " | ".join(_cell(value) for value in row) + " |" for row in rows),
    ]


def _markdown_summary(report: Mapping[str, Any]) -> list[str]:
    summary = report["summary"]
    counts = summary["findings"]
    lines = ["## Summary", ""]
    lines += _table(
        ("hosts", "audited", "unreachable", "errors", "warnings", "info"),
        [(summary["hosts"], summary["hosts"] - summary["unreachable"], summary["unreachable"],
          counts["error"], counts["warning"], counts["info"])],
        "rrrrrr",
    )
    by_class = [(name, count) for name, count in summary["by_class"].items() if count]
    lines += ["", "Findings by class: " + (", ".join(f"{name} {count}" for name, count in by_class) or "none") + "."]
    since = summary.get("since_last_run")
    if since:
        comparison = report.get("comparison") or {}
        lines += ["", f"Since the last run ({_cell(comparison.get('previous_generated_at'))}):", ""]
        lines += _table(
            ("new errors", "new warnings", "new info", "unchanged", "resolved", "not verified"),
            [(since["new"]["error"], since["new"]["warning"], since["new"]["info"], since["unchanged"],
              since["resolved"], len(comparison.get("unverified") or []))],
            "rrrrrr",
        )
        lines += ["", "Hosts with new findings: " + (", ".join(since["hosts_with_new"]) or "none") + "."]
    return lines


def _markdown_host(name: str, entry: Mapping[str, Any], compared: bool) -> list[str]:
    lines = ["", f"### {_cell(name)}", "", _engines_line(entry["engines"])]
    if entry.get("reason"):
        lines += ["", f"Partial result: {_cell(entry['reason'])}"]
    if not entry["findings"]:
        return lines
    header = ("severity", "class", "subject", "container", "message", "fix") + (("change",) if compared else ())
    rows = [
        (finding["severity"], finding["class"], finding["subject"], finding.get("container"), finding["message"],
         finding.get("fix") if finding.get("fixable") else "not fixable automatically")
        + ((finding.get("change"),) if compared else ())
        for finding in entry["findings"]
    ]
    return lines + [""] + _table(header, rows)


def render_markdown(report: Mapping[str, Any]) -> str:
    """report.md, laid out for fleets: the summary (with the since-last-run counts), the
    findings grouped by problem with the hosts they affect, a section per host with findings
    (or a partial result), the other audited hosts on one line, the unreachable hosts in one
    table, and the findings resolved since the last run."""
    hosts = report["hosts"]
    compared = bool(report["summary"].get("since_last_run"))
    lines = [
        "# permfix.containers audit report",
        "",
        f"Generated at {report['generated_at']} (schema `{report['schema']}`).",
        "",
        *_markdown_summary(report),
    ]
    grouped = problems(report)
    if grouped:
        lines += ["", "## Findings by problem", ""]
        lines += _table(
            ("severity", "class", "problem", "findings", "hosts"),
            [(g["severity"], g["class"], g["problem"], g["findings"], f"{len(g['hosts'])}: " + ", ".join(g["hosts"]))
             for g in grouped],
            "---r",
        )
    detailed = [
        name for name, entry in hosts.items() if entry["reachable"] and (entry["findings"] or entry.get("reason"))
    ]
    if detailed:
        lines += ["", "## Hosts with findings"]
        for name in detailed:
            lines += _markdown_host(name, hosts[name], compared)
    clean = [name for name, entry in hosts.items() if entry["reachable"] and name not in detailed]
    if clean:
        lines += ["", "## Hosts without findings", "", f"{len(clean)}: " + _cell(", ".join(clean))]
    unreachable = [(name, entry.get("reason")) for name, entry in hosts.items() if not entry["reachable"]]
    if unreachable:
        lines += ["", "## Unreachable hosts", ""] + _table(("host", "reason"), unreachable)
    comparison = report.get("comparison") or {}
    for title, key in (("Resolved since the last run", "resolved"),
                       ("Not verified since the last run (the host was not fully audited)", "unverified")):
        if comparison.get(key):
            lines += ["", f"## {title}", ""] + _table(
                ("host", "severity", "class", "message"),
                [(entry["host"], entry["severity"], entry["class"], entry["message"]) for entry in comparison[key]],
            )
    return "\n".join(lines) + "\n"
