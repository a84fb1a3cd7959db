# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import json

import pytest

from ansible_collections.permfix.containers.plugins.module_utils._core.findings import make_finding
from ansible_collections.permfix.containers.plugins.module_utils._core.report import (
    build_report,
    finding_lines,
    render_markdown,
    summary_lines,
)

ERROR = make_finding("bind_mount", "error", "/srv/app/data", "container web cannot write /srv/app/data",
                     container="web", engine="docker", fixable=True, fix="chown 1000:1000 on 3 of 4 entries")
WARNING = make_finding("subid", "warning", "app", "app has 1000 subordinate UIDs | fewer than 65536", user="app")

HOSTS = {
    "web2": {"reachable": False, "reason": "ssh: connection refused"},
    "web1": {"reachable": True, "engines": {"docker": "20.10.24", "podman": None, "rootless_users": []},
             "findings": [WARNING, ERROR]},
    "db1": {"reachable": True, "engines": {"docker": None, "podman": "4.3.1", "rootless_users": ["app"]},
            "findings": []},
}


@pytest.fixture
def report():
    return build_report(HOSTS, "2026-11-22T20:00:00Z")


def test_report_schema_summary_and_host_order(report):
    assert report["schema"] == "permfix.report/v1"
    assert report["generated_at"] == "2026-11-22T20:00:00Z"
    assert list(report["hosts"]) == ["db1", "web1", "web2"]
    assert report["summary"] == {
        "hosts": 3,
        "unreachable": 1,
        "findings": {"error": 1, "warning": 1, "info": 0},
        "by_class": {"bind_mount": 1, "named_volume": 0, "subid": 1, "unprivileged_port": 0},
    }
    json.dumps(report)  # plain JSON all the way down


def test_unreachable_host_is_kept_with_its_reason_and_empty_engines(report):
    assert report["hosts"]["web2"] == {
        "reachable": False,
        "engines": {"docker": None, "podman": None, "rootless_users": []},
        "findings": [],
        "reason": "ssh: connection refused",
    }


def test_findings_are_sorted_errors_first(report):
    assert [f["severity"] for f in report["hosts"]["web1"]["findings"]] == ["error", "warning"]


def test_markdown_has_summary_a_table_per_host_and_escapes_pipes(report):
    text = render_markdown(report)
    assert text.startswith("# permfix.containers audit report\n")
    assert "| 3 | 1 | 1 | 1 | 0 |" in text
    assert "## web1" in text and "## db1" in text and "## web2" in text
    assert "**Unreachable or failed**: ssh: connection refused" in text
    assert (
        "| error | bind_mount | /srv/app/data | web | container web cannot write /srv/app/data "
        "| chown 1000:1000 on 3 of 4 entries |"
        in text
    )
    assert "fewer than 65536" in text and "1000 subordinate UIDs \\| fewer" in text
    assert "No findings." in text.split("## db1")[1].split("##")[0]
    assert "not fixable automatically" in text


def test_summary_lines_is_an_aligned_table_with_a_total(report):
    lines = summary_lines(report)
    assert lines[0].split() == ["host", "reachable", "error", "warning", "info"]
    assert lines[-1].split() == ["total", "2/3", "1", "1", "0"]
    assert [line.split()[:2] for line in lines[1:-1]] == [["db1", "yes"], ["web1", "yes"], ["web2", "NO"]]
    assert len({line.index("reachable") for line in lines[:1]}) == 1


def test_finding_lines(report):
    assert finding_lines(report) == [
        "web1: error [bind_mount] container web cannot write /srv/app/data",
        "web1: warning [subid] app has 1000 subordinate UIDs | fewer than 65536",
        "web2: not audited: ssh: connection refused",
    ]
    assert finding_lines(build_report({}, "t")) == ["no findings"]
