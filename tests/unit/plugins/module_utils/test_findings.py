# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import pytest

from ansible_collections.permfix.containers.plugins.module_utils._core.findings import (
    FINDING_KEYS,
    FindingError,
    count_by,
    make_finding,
    make_id,
    sort_findings,
    validate_finding,
)


def _finding(**overrides):
    args = {"finding_class": "subid", "severity": "error", "subject": "app", "message": "app has no range"}
    args.update(overrides)
    return make_finding(**args)


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        (("bind_mount", "web", "/srv/app/data"), "bind_mount:web:/srv/app/data"),
        (("subid", None, "missing", "subuid", "app"), "subid:missing:subuid:app"),
        (("subid", "", "app"), "subid:app"),
        (("unprivileged_port", "runtime"), "unprivileged_port:runtime"),
    ],
)
def test_make_id(parts, expected):
    assert make_id(*parts) == expected


def test_make_finding_has_every_schema_key_and_a_stable_id():
    finding = _finding(id_parts=("missing", "subuid"), user="app", fixable=True, fix="add 65536 ids")
    assert tuple(finding) == FINDING_KEYS
    assert finding["id"] == "subid:missing:subuid:app"
    assert finding == _finding(id_parts=("missing", "subuid"), user="app", fixable=True, fix="add 65536 ids")
    assert validate_finding(finding) == []


def test_bind_mount_id_matches_the_design_example():
    finding = make_finding("bind_mount", "error", "/srv/app/data", "cannot write", container="web", engine="docker")
    assert finding["id"] == "bind_mount:web:/srv/app/data"


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"finding_class": "disk"}, "unknown finding class 'disk'"),
        ({"severity": "fatal"}, "unknown severity 'fatal'"),
        ({"subject": ""}, "needs a subject"),
        ({"message": ""}, "needs a message"),
    ],
)
def test_make_finding_refuses_values_outside_the_schema(overrides, error):
    with pytest.raises(FindingError, match=error):
        _finding(**overrides)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"class": "x"}, "class 'x'"),
        ({"severity": None}, "severity None"),
        ({"observed": []}, "observed must be a mapping"),
        ({"fixable": "yes"}, "fixable must be true or false"),
        ({"message": ""}, "message must be a non-empty string"),
    ],
)
def test_validate_finding_names_each_problem(change, problem):
    finding = dict(_finding(), **change)
    assert any(problem in text for text in validate_finding(finding))


def test_validate_finding_reports_missing_keys():
    finding = _finding()
    del finding["fix"]
    assert validate_finding(finding) == ["missing keys: fix"]


def test_count_by_includes_zero_counts():
    findings = [_finding(), _finding(severity="info"), _finding(severity="info")]
    assert count_by(findings, "severity", ("error", "warning", "info")) == {"error": 1, "warning": 0, "info": 2}


def test_sort_findings_puts_errors_first_then_class_and_id():
    findings = [
        _finding(severity="info", subject="b"),
        _finding(finding_class="bind_mount", severity="warning", subject="/x"),
        _finding(severity="error", subject="z"),
        _finding(finding_class="bind_mount", severity="error", subject="/a"),
    ]
    assert [f["id"] for f in sort_findings(findings)] == ["bind_mount:/a", "subid:z", "bind_mount:/x", "subid:b"]
