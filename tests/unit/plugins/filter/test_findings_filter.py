# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.permfix.containers.plugins.filter.findings import FilterModule, select_expression
from ansible_collections.permfix.containers.plugins.module_utils._core.findings import make_finding
from ansible_collections.permfix.containers.plugins.module_utils._core.report import build_report

FILTERS = FilterModule().filters()

SUBID = make_finding("subid", "error", "app", "app has no subordinate UIDs", id_parts=("missing", "subuid"),
                     user="app", fixable=True, fix="allocate 65536")
MOUNT = make_finding("bind_mount", "error", "/srv/data", "web cannot write /srv/data", container="web",
                     engine="docker", fixable=True, fix="chown 1000:1000")
PORT = make_finding("unprivileged_port", "warning", "net.ipv4.ip_unprivileged_port_start", "lost at reboot",
                    fixable=True, fix="persist 80")
INFO = make_finding("bind_mount", "info", "/srv/logs", "read-only mount is fine", container="log", engine="podman")

REPORT = build_report(
    {
        "web1": {"reachable": True, "engines": {}, "findings": [MOUNT, PORT]},
        "db1": {"reachable": True, "engines": {}, "findings": [SUBID, INFO]},
        "gone": {"reachable": False, "reason": "unreachable"},
    },
    "2026-11-22T20:00:00Z",
)


def _ids(findings):
    return sorted((f["host"], f["id"]) for f in findings)


def test_filters_are_registered():
    assert set(FILTERS) == {"findings", "findings_query", "findings_select", "findings_count_by", "findings_diff"}


@pytest.mark.parametrize("data", [REPORT, REPORT["hosts"]])
def test_findings_flattens_a_report_and_names_each_host(data):
    flat = FILTERS["findings"](data)
    assert _ids(flat) == sorted(
        [("web1", MOUNT["id"]), ("web1", PORT["id"]), ("db1", SUBID["id"]), ("db1", INFO["id"])]
    )


def test_findings_keeps_a_plain_list_as_it_is():
    assert FILTERS["findings"]([SUBID]) == [SUBID]


@pytest.mark.parametrize(
    ("criteria", "expected"),
    [
        ({"class": "subid"}, [("db1", SUBID["id"])]),
        ({"severity": "error"}, [("db1", SUBID["id"]), ("web1", MOUNT["id"])]),
        ({"severity": ["warning", "info"]}, [("db1", INFO["id"]), ("web1", PORT["id"])]),
        ({"min_severity": "warning"}, [("db1", SUBID["id"]), ("web1", MOUNT["id"]), ("web1", PORT["id"])]),
        ({"min_severity": "error", "host": "web1"}, [("web1", MOUNT["id"])]),
        ({"host": ["db1"], "class": "bind_mount"}, [("db1", INFO["id"])]),
        ({"container": "web"}, [("web1", MOUNT["id"])]),
        ({"engine": "podman"}, [("db1", INFO["id"])]),
        ({"user": "app"}, [("db1", SUBID["id"])]),
        ({"fixable": False}, [("db1", INFO["id"])]),
        ({"class": []}, []),
        ({"host": "nowhere"}, []),
        ({}, [("web1", MOUNT["id"]), ("web1", PORT["id"]), ("db1", SUBID["id"]), ("db1", INFO["id"])]),
        ({"severity": None}, [("web1", MOUNT["id"]), ("web1", PORT["id"]), ("db1", SUBID["id"]), ("db1", INFO["id"])]),
    ],
)
def test_findings_select(criteria, expected):
    assert _ids(FILTERS["findings_select"](REPORT, **criteria)) == sorted(expected)


def test_select_expression_quotes_values_it_cannot_trust():
    expression = select_expression({"container": "we`b\"x"})
    assert FILTERS["findings_select"]([dict(MOUNT, container="we`b\"x")], container="we`b\"x") != []
    assert expression.startswith("[?") and expression.endswith("]")


@pytest.mark.parametrize(
    ("criteria", "message"),
    [
        ({"colour": "red"}, "does not know colour"),
        ({"class": "volumes"}, "class must be one of"),
        ({"severity": ["error", "fatal"]}, "severity must be one of"),
        ({"min_severity": "fatal"}, "min_severity must be one of"),
    ],
)
def test_findings_select_explains_bad_criteria(criteria, message):
    with pytest.raises(AnsibleFilterError, match=message):
        FILTERS["findings_select"](REPORT, **criteria)


@pytest.mark.parametrize(
    ("key", "zeros", "expected"),
    [
        ("class", True, {"bind_mount": 2, "named_volume": 0, "subid": 1, "unprivileged_port": 1}),
        ("class", False, {"bind_mount": 2, "subid": 1, "unprivileged_port": 1}),
        ("severity", True, {"error": 2, "warning": 1, "info": 1}),
        ("host", True, {"db1": 2, "web1": 2}),
        ("container", True, {"web": 1, "none": 2, "log": 1}),
        ("join(':', [host, severity])", True, {"web1:error": 1, "web1:warning": 1, "db1:error": 1, "db1:info": 1}),
    ],
)
def test_findings_count_by(key, zeros, expected):
    assert FILTERS["findings_count_by"](REPORT, key, zeros=zeros) == expected


def test_findings_query_runs_jmespath_over_the_flat_list():
    assert FILTERS["findings_query"](REPORT, "[?severity=='error'].host | sort(@)") == ["db1", "web1"]
    assert FILTERS["findings_query"](REPORT, "length(@)") == 4


@pytest.mark.parametrize(
    ("name", "args", "message"),
    [
        ("findings", (42,), "expected a permfix report"),
        ("findings", ({"hosts": {"h": "x"}},), "is not a mapping"),
        ("findings_query", (REPORT, "[?"), "invalid JMESPath expression"),
        ("findings_count_by", (REPORT, "]["), "invalid JMESPath expression"),
    ],
)
def test_filters_explain_bad_input(name, args, message):
    with pytest.raises(AnsibleFilterError, match=message):
        FILTERS[name](*args)


UNFIXABLE = make_finding("subid", "error", "a:b", "ranges of a and b overlap", id_parts=("overlap",), fixable=False)


@pytest.mark.parametrize(
    ("before", "after", "disabled", "check_mode", "fixed", "remaining", "new"),
    [
        ([SUBID, MOUNT, INFO], [], [], False, [SUBID["id"], MOUNT["id"]], [], []),
        ([SUBID, MOUNT], [MOUNT], ["bind_mount"], False, [SUBID["id"]],
         [(MOUNT["id"], "remediation of bind_mount is switched off")], []),
        ([SUBID, UNFIXABLE], [UNFIXABLE, PORT], [], False, [SUBID["id"]],
         [(UNFIXABLE["id"], "not fixable automatically: needs a person")], [PORT["id"]]),
        ([SUBID], [SUBID], [], False, [], [(SUBID["id"], "still present after the role ran")], []),
        ([SUBID, MOUNT, UNFIXABLE], None, ["subid"], True, [MOUNT["id"]],
         [(SUBID["id"], "remediation of subid is switched off"),
          (UNFIXABLE["id"], "remediation of subid is switched off")], []),
    ],
)
def test_findings_diff(before, after, disabled, check_mode, fixed, remaining, new):
    result = FILTERS["findings_diff"](before, after, disabled, check_mode)
    assert [f["id"] for f in result["fixed"]] == fixed
    assert sorted((f["id"], f["reason"]) for f in result["remaining"]) == sorted(remaining)
    assert [f["id"] for f in result["new"]] == new
