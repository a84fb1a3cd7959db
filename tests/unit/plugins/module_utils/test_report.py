# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import json

import pytest
from report_samples import fleet_results

from ansible_collections.permfix.containers.plugins.module_utils._core.findings import make_finding
from ansible_collections.permfix.containers.plugins.module_utils._core.report import (
    ReportError,
    build_report,
    finding_lines,
    problem_template,
    problems,
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
        "since_last_run": None,
    }
    assert "comparison" not in report
    assert all("change" not in f for entry in report["hosts"].values() for f in entry["findings"])
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


def test_markdown_fleet_layout_and_escapes(report):
    text = render_markdown(report)
    assert text.startswith("# permfix.containers audit report\n")
    sections = [line for line in text.splitlines() if line.startswith("## ")]
    assert sections == ["## Summary", "## Findings by problem", "## Hosts with findings", "## Hosts without findings",
                        "## Unreachable hosts"]
    assert "| 3 | 2 | 1 | 1 | 1 | 0 |" in text
    assert "Findings by class: bind_mount 1, subid 1." in text
    assert "### web1" in text and "### db1" not in text and "### web2" not in text
    assert "## Hosts without findings\n\n1: db1\n" in text
    assert "| web2 | ssh: connection refused |" in text
    assert (
        "| error | bind_mount | /srv/app/data | web | container web cannot write /srv/app/data "
        "| chown 1000:1000 on 3 of 4 entries |"
        in text
    )
    assert "1000 subordinate UIDs \\| fewer" in text
    assert "not fixable automatically" in text
    assert "| error | bind_mount | container {container} cannot write {subject} | 1 | 1: web1 |" in text
    assert "since" not in text.lower() and "change" not in text


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


# --- since last run ----------------------------------------------------------------------

def _finding(host_tag: str, severity: str = "error", cls: str = "bind_mount") -> dict:
    return make_finding(cls, severity, f"/srv/{host_tag}", f"cannot write /srv/{host_tag}", container="web")


A = _finding("a")
B = _finding("b", "warning", "subid")
C = _finding("c", "info", "named_volume")
D = _finding("d")


def _hosts(**spec):
    """``name=[findings]`` for a reachable host, ``name=None`` for an unreachable one,
    ``name=("partial", [findings])`` for one whose audit failed part-way."""
    hosts = {}
    for name, value in spec.items():
        if value is None:
            hosts[name] = {"reachable": False, "reason": "unreachable: ssh refused"}
        elif isinstance(value, tuple):
            hosts[name] = {"reachable": True, "reason": "bind_mount failed: boom", "findings": value[1]}
        else:
            hosts[name] = {"reachable": True, "findings": value}
    return hosts


def _ids(entries):
    return [(entry["host"], entry["id"]) for entry in entries]


@pytest.mark.parametrize(
    ("before", "after", "changes", "resolved", "unverified", "since"),
    [
        pytest.param(
            {"h1": [A, B]}, {"h1": [A, C]},
            {"h1": {A["id"]: "unchanged", C["id"]: "new"}},
            [("h1", B["id"])], [],
            {"new": {"error": 0, "warning": 0, "info": 1}, "unchanged": 1, "resolved": 1, "hosts_with_new": ["h1"]},
            id="one-new-one-unchanged-one-resolved",
        ),
        pytest.param(
            {"h1": [A]}, {"h1": [A], "h2": [A, D]},
            {"h1": {A["id"]: "unchanged"}, "h2": {A["id"]: "new", D["id"]: "new"}},
            [], [],
            {"new": {"error": 2, "warning": 0, "info": 0}, "unchanged": 1, "resolved": 0, "hosts_with_new": ["h2"]},
            id="same-id-on-another-host-is-new",
        ),
        pytest.param(
            {"h1": [A, B], "h2": [D]}, {"h1": None, "h2": []},
            {"h1": {}, "h2": {}},
            [("h2", D["id"])], [("h1", A["id"]), ("h1", B["id"])],
            {"new": {"error": 0, "warning": 0, "info": 0}, "unchanged": 0, "resolved": 1, "hosts_with_new": []},
            id="unreachable-now-is-unverified-not-resolved",
        ),
        pytest.param(
            {"h1": [A, B]}, {"h1": ("partial", [B])},
            {"h1": {B["id"]: "unchanged"}},
            [], [("h1", A["id"])],
            {"new": {"error": 0, "warning": 0, "info": 0}, "unchanged": 1, "resolved": 0, "hosts_with_new": []},
            id="partial-audit-is-unverified",
        ),
        pytest.param(
            {"h1": [A], "old": [D]}, {"h1": [A]},
            {"h1": {A["id"]: "unchanged"}},
            [], [],
            {"new": {"error": 0, "warning": 0, "info": 0}, "unchanged": 1, "resolved": 0, "hosts_with_new": []},
            id="host-outside-this-run-is-left-out",
        ),
        pytest.param(
            {"h1": None}, {"h1": [A], "h0": [B]},
            {"h1": {A["id"]: "new"}, "h0": {B["id"]: "new"}},
            [], [],
            {"new": {"error": 1, "warning": 1, "info": 0}, "unchanged": 0, "resolved": 0,
             "hosts_with_new": ["h0", "h1"]},
            id="unreachable-before-everything-new-hosts-sorted",
        ),
    ],
)
def test_since_last_run(before, after, changes, resolved, unverified, since):
    previous = build_report(_hosts(**before), "2026-11-21T20:00:00Z")
    report = build_report(_hosts(**after), "2026-11-22T20:00:00Z", previous)
    assert {name: {f["id"]: f["change"] for f in entry["findings"]} for name, entry in report["hosts"].items()} \
        == changes
    assert report["comparison"]["previous_generated_at"] == "2026-11-21T20:00:00Z"
    assert _ids(report["comparison"]["resolved"]) == resolved
    assert _ids(report["comparison"]["unverified"]) == unverified
    assert report["summary"]["since_last_run"] == since
    for entry in report["comparison"]["resolved"] + report["comparison"]["unverified"]:
        assert set(entry) == {"host", "id", "class", "severity", "message"}


def test_resolved_entry_carries_what_the_finding_was():
    previous = build_report(_hosts(h1=[B]), "t0")
    report = build_report(_hosts(h1=[]), "t1", previous)
    assert report["comparison"]["resolved"] == [
        {"host": "h1", "id": B["id"], "class": "subid", "severity": "warning", "message": B["message"]}
    ]


def test_comparing_with_itself_changes_nothing_and_a_report_compares_with_a_compared_one():
    first = build_report(HOSTS, "t0")
    second = build_report(HOSTS, "t1", first)
    third = build_report(HOSTS, "t2", second)
    for report in (second, third):
        assert report["summary"]["since_last_run"] == {
            "new": {"error": 0, "warning": 0, "info": 0}, "unchanged": 2, "resolved": 0, "hosts_with_new": []}
    assert json.loads(json.dumps(third)) == third


@pytest.mark.parametrize("previous", [None, {}, "", []])
def test_no_previous_report_means_no_comparison(previous):
    report = build_report(HOSTS, "t", previous)
    assert report["summary"]["since_last_run"] is None and "comparison" not in report


@pytest.mark.parametrize(
    ("previous", "message"),
    [
        ({"schema": "permfix.report/v0", "hosts": {}}, "has schema 'permfix.report/v0'; only permfix.report/v1"),
        ({"hosts": {}}, "has schema None"),
        ({"schema": "permfix.report/v1"}, "no 'hosts' mapping"),
        ({"schema": "permfix.report/v1", "hosts": {"h": {"findings": [{"class": "x"}]}}}, "host 'h' has no list"),
        ({"schema": "permfix.report/v1", "hosts": {"h": "nope"}}, "host 'h' has no list"),
        ("{\"schema\": 1}", "must be a report dict .* not str"),
        (42, "not int"),
    ],
)
def test_bad_previous_report_is_a_sentence(previous, message):
    with pytest.raises(ReportError, match=message):
        build_report(HOSTS, "t", previous)


# --- report.md for fleets ----------------------------------------------------------------

@pytest.mark.parametrize(
    ("finding", "template"),
    [
        (make_finding("bind_mount", "error", "/srv/a", "container web runs as 1000:1000 and cannot write /srv/a: "
                      "owned by 0:0, mode 0755", container="web", user="1000:1000"),
         "container {container} runs as {user} and cannot write {subject}: owned by {n}:{n}, mode {n}"),
        (make_finding("subid", "warning", "app", "app has 1000 subordinate UIDs in /etc/subuid; apps fail", user="app"),
         "{subject} has {n} subordinate UIDs in /etc/subuid; apps fail"),
        (make_finding("bind_mount", "error", "/srv/app/data", "container app cannot write /srv/app/data",
                      container="app"),
         "container {container} cannot write {subject}"),
        (make_finding("unprivileged_port", "info", "net.ipv4.ip_unprivileged_port_start",
                      "net.ipv4.ip_unprivileged_port_start is 1024 on ipv4 hosts"),
         "{subject} is {n} on ipv4 hosts"),
        (make_finding("named_volume", "warning", "data", "volume data of db (metadata) is 999", container="db"),
         "volume {subject} of {container} (metadata) is {n}"),
    ],
    ids=["owner-numbers", "user-is-subject", "container-inside-subject", "no-digits-inside-words", "whole-words"],
)
def test_problem_template(finding, template):
    assert problem_template(finding) == template


def test_problems_group_across_hosts_with_the_worst_severity():
    one = make_finding("bind_mount", "warning", "/a", "cannot write /a", container="x")
    two = make_finding("bind_mount", "error", "/b", "cannot write /b", container="y")
    other = make_finding("subid", "info", "app", "app is fine", user="app")
    grouped = problems(build_report({"h2": {"reachable": True, "findings": [one, other]},
                                     "h1": {"reachable": True, "findings": [two]}}, "t"))
    assert grouped == [
        {"class": "bind_mount", "severity": "error", "problem": "cannot write {subject}", "findings": 2,
         "hosts": ["h1", "h2"]},
        {"class": "subid", "severity": "info", "problem": "{subject} is fine", "findings": 1, "hosts": ["h2"]},
    ]


@pytest.fixture(scope="module")
def fleet():
    previous = build_report(fleet_results(affected=4), "2026-11-21T20:00:00Z")
    return build_report(fleet_results(), "2026-11-22T20:00:00Z", previous)


def test_200_host_report_md_is_short_and_keeps_every_finding(fleet):
    text = render_markdown(fleet)
    lines = text.splitlines()
    print(f"report.md: {len(lines)} lines for {fleet['summary']['hosts']} hosts")
    assert len(lines) < 150
    assert "No findings" not in text
    findings = [(name, f) for name, entry in fleet["hosts"].items() for f in entry["findings"]]
    assert len(findings) == 12
    for name, finding in findings:
        row = [line for line in lines if line.startswith(f"| {finding['severity']} | {finding['class']} | ")
               and finding["message"].replace("<", "\\<") in line]
        assert len(row) == 1, (name, finding["id"])
    for name in fleet["hosts"]:
        assert name in text
    assert "| node199.example.com | unreachable: Failed to connect to node199.example.com port 22 |" in lines
    assert sum(1 for line in lines if line.startswith("### ")) == 5


def test_200_host_report_md_shows_since_last_run_and_resolved(fleet):
    text = render_markdown(fleet)
    assert "Since the last run (2026-11-21T20:00:00Z):" in text
    assert "| 3 | 0 | 1 | 8 | 2 | 0 |" in text
    assert "Hosts with new findings: node005.example.com." in text
    resolved = text.split("## Resolved since the last run\n", 1)[1].splitlines()
    assert resolved[3].startswith("| node004.example.com | error | bind_mount | container \\<script>")
    assert "| change |" in text and "| new |" in text and "| unchanged |" in text
