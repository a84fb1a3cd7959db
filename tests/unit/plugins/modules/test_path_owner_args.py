# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of path_owner's parameter handling and diff text (no filesystem): _classes.path_owner."""

from __future__ import annotations

from typing import Any

import pytest

from ansible_collections.permfix.containers.plugins.module_utils._classes import path_owner as path_owner_fix
from ansible_collections.permfix.containers.plugins.module_utils._core.errors import OptionError
from ansible_collections.permfix.containers.plugins.module_utils._engines.walk import OwnershipReport, Target
from ansible_collections.permfix.containers.plugins.module_utils._host.owner_spec import OwnerSpecError
from ansible_collections.permfix.containers.plugins.modules import path_owner


class FakeModule:
    """The parameters AnsibleModule would give path_owner."""

    def __init__(self, **params: Any) -> None:
        self.params: dict[str, Any] = {
            "path": "/srv/x",
            "owner": None,
            "group": None,
            "recurse": True,
            "from_owner": None,
            "strategy": "chown",
            "change_policy": "always",
            "one_file_system": True,
            "allow_hardlinks": False,
            "sample_size": 20,
            "workers": 0,
        }
        self.params.update(params)
        self.check_mode = False
        self._diff = False


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"owner": "1000", "group": "1000"}, Target(1000, 1000)),
        ({"owner": "root"}, Target(0, None)),
        ({"group": "0"}, Target(None, 0)),
        ({"owner": "5", "from_owner": "999:998"}, Target(5, None, 999, 998)),
        ({"owner": "5", "from_owner": ":998"}, Target(5, None, None, 998)),
        ({"owner": "5", "strategy": "acl"}, Target(5, None, strategy="acl")),
    ],
)
def test_target(params: dict[str, Any], expected: Target) -> None:
    assert path_owner_fix.path_owner_target(FakeModule(**params).params) == expected


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"owner": "", "group": ""}, "give an owner, a group or both"),
        ({"owner": "no-such-user-here"}, "does not exist on this host"),
        ({"owner": "4294967295"}, "out of range"),
        ({"owner": "1", "from_owner": "a:b:c"}, "more than one"),
    ],
)
def test_target_errors(params: dict[str, Any], message: str) -> None:
    with pytest.raises(OwnerSpecError, match=message):
        path_owner_fix.path_owner_target(FakeModule(**params).params)


def test_options_mirror_parameters() -> None:
    module = FakeModule(owner="1", recurse=False, change_policy="on_root_mismatch", one_file_system=False,
                        allow_hardlinks=True, sample_size=3, workers=2)
    options = path_owner_fix.path_owner_options(module.params)
    assert (options.recurse, options.policy, options.one_file_system, options.allow_hardlinks, options.sample_size,
            options.workers) == (False, "on_root_mismatch", False, True, 3, 2)
    assert options.refuse_protected


def test_negative_sample_size_is_refused() -> None:
    with pytest.raises(OptionError, match="sample_size"):
        path_owner_fix.path_owner_options(FakeModule(owner="1", sample_size=-1).params)


@pytest.mark.parametrize(("added", "limit", "lines", "more"), [(0, 3, 0, None), (2, 3, 2, None), (5, 3, 4, "2 more")])
def test_diff_text_is_bounded(added: int, limit: int, lines: int, more) -> None:
    report = OwnershipReport(path="/x", real_path="/x", target=Target(1, 1), check_mode=True, sample_size=limit)
    for number in range(added):
        report.changes.add({"path": f"/x/{number}", "before": "0:0", "after": "1:1"})
    before = path_owner_fix.diff_text(report, "before")
    after = path_owner_fix.diff_text(report, "after")
    assert len(before.splitlines()) == lines == len(after.splitlines())
    if added:
        assert before.splitlines()[0] == "/x/0 0:0" and after.splitlines()[0] == "/x/0 1:1"
    if more:
        assert before.splitlines()[-1] == f"... and {more} entries"


def test_argument_spec_matches_documentation() -> None:
    import yaml

    documented = yaml.safe_load(path_owner.DOCUMENTATION)["options"]
    assert set(documented) == set(path_owner_fix.PATH_OWNER_ARGUMENT_SPEC)
    for name, spec in path_owner_fix.PATH_OWNER_ARGUMENT_SPEC.items():
        assert documented[name]["type"] == spec["type"], name
        assert documented[name].get("default") == spec.get("default"), name
        assert documented[name].get("choices") == spec.get("choices"), name
