# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller-side filters that turn per-host audit results into the permfix report."""

from __future__ import annotations

from typing import Any, Callable, TypeVar

from ansible.errors import AnsibleFilterError

from ansible_collections.permfix.containers.plugins.module_utils._core.report import (
    build_report,
    finding_lines,
    render_markdown,
    summary_lines,
)

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
    C(permfix.containers.report_summary) and C(permfix.containers.report_findings) render the
    same report as Markdown, as a short table of lines, and as one line per finding.
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
"""

EXAMPLES = r"""
- name: Build the report on the controller
  ansible.builtin.set_fact:
    permfix_report: "{{ results | permfix.containers.report(now(utc=true).strftime('%Y-%m-%dT%H:%M:%SZ')) }}"
"""

RETURN = r"""
_value:
  description: The report (schema C(permfix.report/v1)).
  type: dict
"""


_T = TypeVar("_T")


def _report(hosts: Any, generated_at: str) -> dict[str, Any]:
    if not isinstance(hosts, dict):
        raise AnsibleFilterError(
            f"permfix.containers.report expects a dict of host results, not {type(hosts).__name__}"
        )
    try:
        return build_report(hosts, str(generated_at))
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
            "report_summary": _rendering("report_summary", summary_lines),
            "report_findings": _rendering("report_findings", finding_lines),
        }
