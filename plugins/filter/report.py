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
