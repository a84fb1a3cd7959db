# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""meta/report.schema.json: in step with the code and with docs/report.md, and it refuses bad reports."""

from __future__ import annotations

import copy
import json
import re

import pytest
from report_samples import fleet_results

import permfix_testlib as lib
from ansible_collections.permfix.containers.plugins.module_utils._core.findings import (
    CLASSES,
    FINDING_KEYS,
    SEVERITIES,
)
from ansible_collections.permfix.containers.plugins.module_utils._core.report import build_report

SCHEMA = json.loads(lib.REPORT_SCHEMA.read_text())
DOC = (lib.REPO_ROOT / "docs" / "report.md").read_text()
EXAMPLE = json.loads(re.search(r"```json\n(.*?)```", DOC, re.S).group(1))


def _resolve(node: dict) -> dict:
    while "$ref" in node:
        node = SCHEMA["$defs"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def _declared(value, node: dict, path: str, open_keys: list[str], undeclared: list[str]) -> None:
    """Walk ``value`` along the schema: a key is declared in ``properties`` or by an
    ``additionalProperties`` schema; keys of an object the schema leaves open are collected."""
    node = _resolve(node)
    for choice in node.get("oneOf", []):
        if _resolve(choice).get("type") == ("object" if isinstance(value, dict) else None):
            node = _resolve(choice)
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}"
            if key in node.get("properties", {}):
                _declared(item, node["properties"][key], where, open_keys, undeclared)
            elif isinstance(node.get("additionalProperties"), dict):
                _declared(item, node["additionalProperties"], f"{path}.*", open_keys, undeclared)
            elif node.get("additionalProperties") is False:
                undeclared.append(where)
            else:
                open_keys.append(where)
    elif isinstance(value, list) and "items" in node:
        for item in value:
            _declared(item, node["items"], f"{path}[]", open_keys, undeclared)


def test_docs_example_validates_and_every_field_is_declared():
    lib.validate_report(EXAMPLE, "docs/report.md's example")
    open_keys: list[str] = []
    undeclared: list[str] = []
    _declared(EXAMPLE, SCHEMA, "", open_keys, undeclared)
    assert undeclared == []
    # only the class-specific observations are free-form
    assert {re.sub(r"\.[^.]+$", "", key) for key in open_keys} <= {
        ".hosts.*.findings[].observed", ".hosts.*.findings[].expected", ".hosts.*.findings[].advice[]"}
    for additive in ("evidence", "confidence", "advice", "change", "comparison", "since_last_run", "unverified"):
        assert f'"{additive}"' in json.dumps(EXAMPLE), additive


def test_schema_is_in_step_with_the_code():
    defs = SCHEMA["$defs"]
    assert tuple(defs["class"]["enum"]) == CLASSES
    assert tuple(defs["severity"]["enum"]) == SEVERITIES
    assert tuple(defs["finding"]["required"]) == FINDING_KEYS
    assert tuple(defs["summary"]["properties"]["by_class"]["required"]) == CLASSES
    assert SCHEMA["properties"]["schema"]["const"] == "permfix.report/v1"


@pytest.mark.parametrize("compared", [False, True], ids=["plain", "compared"])
def test_generated_200_host_report_validates(compared):
    previous = build_report(fleet_results(affected=4), "t0") if compared else None
    report = build_report(fleet_results(), "2026-11-22T20:00:00Z", previous)
    assert ("comparison" in report) is compared
    lib.validate_report(json.loads(json.dumps(report)))


def _without(report: dict, *path) -> dict:
    broken = copy.deepcopy(report)
    node = broken
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return broken


@pytest.mark.parametrize(
    ("path", "error"),
    [
        (("hosts", "web1", "findings", 0, "message"), "at hosts/web1/findings/0: 'message' is a required property"),
        (("summary",), "at (top): 'summary' is a required property"),
        (("hosts", "web2", "reason"), "at hosts/web2: 'reason' is a required property"),
        (("comparison", "resolved"), "at comparison: 'resolved' is a required property"),
    ],
)
def test_schema_fails_a_report_with_a_missing_required_field(path, error):
    with pytest.raises(AssertionError) as caught:
        lib.validate_report(_without(EXAMPLE, *path), "the broken report")
    print(caught.value)
    assert error in str(caught.value)


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (lambda r: r["hosts"]["web1"]["findings"][0]["observed"]["evidence"][0].update(source="guess"),
         "'guess' is not one of ['inspect', 'log', 'image', 'host']"),
        (lambda r: r["hosts"]["web1"]["findings"][0]["observed"].update(confidence="sure"), "'sure' is not one of"),
        (lambda r: r["hosts"]["web1"]["findings"][0].update(change="gone"),
         "'gone' is not one of ['new', 'unchanged']"),
        (lambda r: r["hosts"]["web1"]["findings"][0].update(colour="red"), "'colour' was unexpected"),
        (lambda r: r["hosts"]["web1"]["findings"][0].update({"class": "typo"}), "'typo' is not one of"),
        (lambda r: r.update(schema="permfix.report/v2"), "'permfix.report/v1' was expected"),
        (lambda r: r["summary"].update(since_last_run={"new": 1}), "is not valid under any of the given schemas"),
    ],
    ids=["evidence-source", "confidence", "change", "undeclared-field", "class", "schema", "since-last-run"],
)
def test_schema_fails_bad_values(change, error):
    broken = copy.deepcopy(EXAMPLE)
    change(broken)
    errors = lib.report_schema_errors(broken)
    assert any(error in line for line in errors), errors


def test_old_v1_reports_without_additive_fields_still_validate():
    old = copy.deepcopy(EXAMPLE)
    del old["comparison"], old["summary"]["since_last_run"]
    finding = old["hosts"]["web1"]["findings"][0]
    del finding["advice"], finding["change"], finding["observed"]["evidence"], finding["observed"]["confidence"]
    assert lib.report_schema_errors(old) == []
