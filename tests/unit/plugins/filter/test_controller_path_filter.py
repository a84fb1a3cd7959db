# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import os

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.permfix.containers.plugins.filter.controller_path import controller_path


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("permfix-report", "{cwd}/permfix-report"),
        ("./reports/../permfix-report", "{cwd}/permfix-report"),
        ("/srv/reports/", "/srv/reports"),
        ("/srv//reports/./x", "/srv/reports/x"),
    ],
)
def test_relative_paths_join_the_working_directory(tmp_path, monkeypatch, path, expected):
    monkeypatch.chdir(tmp_path)
    assert controller_path(path) == expected.format(cwd=os.getcwd())


def test_home_is_expanded(monkeypatch):
    monkeypatch.setenv("HOME", "/home/ops")
    assert controller_path("~/r", "permfix_report_dir") == "/home/ops/r"


@pytest.mark.parametrize("value", ["", "  ", None, 3, ["a"], "a\0b"])
def test_bad_values_name_the_variable(value):
    with pytest.raises(AnsibleFilterError, match="permfix_report_dir"):
        controller_path(value, "permfix_report_dir")
