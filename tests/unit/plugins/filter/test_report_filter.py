# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.permfix.containers.plugins.filter.report import FilterModule

FILTERS = FilterModule().filters()


def test_filters_are_registered():
    assert set(FILTERS) == {"report", "report_markdown", "report_html", "report_summary", "report_findings"}


def test_report_filter_builds_the_report():
    report = FILTERS["report"]({"h": {"reachable": True, "findings": []}}, "2026-01-01T00:00:00Z")
    assert report["summary"]["hosts"] == 1
    assert FILTERS["report_findings"](report) == ["no findings"]
    assert FILTERS["report_markdown"](report).endswith("## Hosts without findings\n\n1: h\n")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("report", ["not", "a", "dict"], "expects a dict of host results"),
        ("report_markdown", {}, "needs a report built by permfix.containers.report"),
        ("report_summary", {"hosts": {}}, "needs a report built by permfix.containers.report"),
        ("report_findings", {}, "needs a report built by permfix.containers.report"),
    ],
)
def test_filters_explain_bad_input(name, value, message):
    args = (value, "t") if name == "report" else (value,)
    with pytest.raises(AnsibleFilterError, match=message):
        FILTERS[name](*args)


def test_report_filter_compares_with_a_previous_report():
    first = FILTERS["report"]({"h": {"reachable": True, "findings": []}}, "t0")
    report = FILTERS["report"]({"h": {"reachable": True, "findings": []}}, "t1", previous=first)
    assert report["summary"]["since_last_run"]["resolved"] == 0
    assert report["comparison"]["previous_generated_at"] == "t0"


def test_report_filter_refuses_a_report_of_another_schema():
    with pytest.raises(AnsibleFilterError, match="cannot compare with the previous report: .*schema 'other/v9'"):
        FILTERS["report"]({}, "t", {"schema": "other/v9", "hosts": {}})


def test_report_html_escapes_user_data_and_loads_nothing():
    from report_samples import fleet_results

    report = FILTERS["report"](fleet_results(hosts=8, affected=5, unreachable=1), "t")
    html = FILTERS["report_html"](report)
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "/srv/x &amp; y" in html
    assert html.count('<tr class="finding"') == 12
    assert "http://" not in html and "https://" not in html and "default-src 'none'" in html
    assert html.count("<script>") == 1 and "<link" not in html and "<img" not in html


def test_report_html_explains_bad_input():
    with pytest.raises(AnsibleFilterError, match="report_html needs a report built by permfix.containers.report"):
        FILTERS["report_html"]({"hosts": {}})
