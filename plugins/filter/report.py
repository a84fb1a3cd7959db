# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller-side filters that turn per-host audit results into the permfix report."""

from __future__ import annotations

from typing import Any, Callable, TypeVar

from ansible.errors import AnsibleFilterError

from ansible_collections.permfix.containers.plugins.module_utils._core.report import (
    ReportError,
    build_report,
    finding_lines,
    render_markdown,
    summary_lines,
)
from ansible_collections.permfix.containers.plugins.plugin_utils.report_html import render_html

DOCUMENTATION = r"""
name: report
short_description: Build the permfix.report/v1 report from per-host audit results
version_added: 0.1.0
author:
  - permfix.containers contributors (@permfix)
description:
  - Takes a dictionary that maps each inventory hostname to its result, where each result has
    C(reachable), C(engines) and C(findings) (and C(reason) for a host that failed), and
    returns the report that C(permfix.containers.audit) writes to C(report.json).
  - The companion filters C(permfix.containers.report_markdown),
    C(permfix.containers.report_html), C(permfix.containers.report_summary) and
    C(permfix.containers.report_findings) render the same report as Markdown, as one
    self-contained HTML page, as a short table of lines, and as one line per finding.
positional: generated_at
options:
  _input:
    description: Per-host results.
    type: dict
    required: true
  generated_at:
    description: The time stamp to record, in ISO 8601 UTC.
    type: str
    required: true
  previous:
    description:
      - The report of an earlier run (a C(permfix.report/v1) dict, for example the old
        C(report.json) read with C(from_json)) to compare with, or V(none) or empty for none.
      - With it, every finding gets C(change) (V(new) or V(unchanged), compared by host and
        finding C(id)), the report gets C(comparison) (C(previous_generated_at), the
        C(resolved) findings and the C(unverified) ones) and C(summary.since_last_run) has the
        counts (C(new) by severity, C(unchanged), C(resolved), C(hosts_with_new)).
      - A previous finding missing now is resolved only on a host that was fully audited this
        time; on a host that is unreachable now, or whose audit failed part-way, it is listed
        under C(comparison.unverified) instead. Hosts that are not in this run are left out.
      - Without it, C(summary.since_last_run) is V(none) and findings carry no C(change).
      - A report of another schema fails with a sentence that says so.
    type: dict
    required: false
"""

EXAMPLES = r"""
- name: Build the report on the controller
  ansible.builtin.set_fact:
    permfix_report: "{{ results | permfix.containers.report(now(utc=true).strftime('%Y-%m-%dT%H:%M:%SZ')) }}"

- name: Build the report and compare it with the one of the last run
  ansible.builtin.set_fact:
    permfix_report: >-
      {{ results | permfix.containers.report(now(utc=true).strftime('%Y-%m-%dT%H:%M:%SZ'),
           previous=lookup('ansible.builtin.file', 'permfix-report/report.json') | from_json) }}

- name: Alert on new errors only
  ansible.builtin.fail:
    msg: >-
      {{ permfix_report.summary.since_last_run.new.error }} new error(s) on
      {{ permfix_report.summary.since_last_run.hosts_with_new | join(', ') }}
  when:
    - permfix_report.summary.since_last_run
    - permfix_report.summary.since_last_run.new.error > 0
"""

RETURN = r"""
_value:
  description: The report (schema C(permfix.report/v1)).
  type: dict
"""


_T = TypeVar("_T")


def _report(hosts: Any, generated_at: str, previous: Any = None) -> dict[str, Any]:
    if not isinstance(hosts, dict):
        raise AnsibleFilterError(
            f"permfix.containers.report expects a dict of host results, not {type(hosts).__name__}"
        )
    try:
        return build_report(hosts, str(generated_at), previous)
    except ReportError as exc:
        raise AnsibleFilterError(f"permfix.containers.report cannot compare with the previous report: {exc}") from exc
    except (KeyError, TypeError, ValueError) as exc:
        raise AnsibleFilterError(f"permfix.containers.report could not build the report: {exc}") from exc


def _rendering(name: str, render: Callable[[Any], _T]) -> Callable[[Any], _T]:
    """The filter ``name``: ``render`` of a report, with an error that says what the filter needs."""

    def rendered(report: Any) -> _T:
        try:
            return render(report)
        except (KeyError, TypeError) as exc:
            raise AnsibleFilterError(
                f"permfix.containers.{name} needs a report built by permfix.containers.report: {exc}"
            ) from exc

    return rendered


class FilterModule:
    """permfix.containers report filters."""

    def filters(self) -> dict[str, Any]:
        return {
            "report": _report,
            "report_markdown": _rendering("report_markdown", render_markdown),
            "report_html": _rendering("report_html", render_html),
            "report_summary": _rendering("report_summary", summary_lines),
            "report_findings": _rendering("report_findings", finding_lines),
        }
