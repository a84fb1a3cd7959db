# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the host-path option checks (_core/options.py)."""

from __future__ import annotations

import pytest

from ansible_collections.permfix.containers.plugins.module_utils._core.errors import OptionError
from ansible_collections.permfix.containers.plugins.module_utils._core.options import host_path, host_paths


def test_an_absolute_path_is_returned_as_given() -> None:
    assert host_path("/etc/subuid", "subuid_path") == "/etc/subuid"


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ({"a": 1}, "given as a string, not dict"),
        (7, "given as a string, not int"),
        (None, "given as a string, not NoneType"),
        ("", "not an empty string"),
        ("etc/subuid", "starting with /"),
        ("{'a': 1}", "starting with /"),
        ("/etc/sub\x00uid", "NUL byte"),
    ],
)
def test_a_value_that_is_not_an_absolute_path_is_refused_with_the_option_name(value: object, words: str) -> None:
    with pytest.raises(OptionError) as err:
        host_path(value, "subuid_path")
    assert str(err.value).startswith("subuid_path must")
    assert words in str(err.value)


def test_each_list_element_is_checked_and_named_by_its_index() -> None:
    assert host_paths(["/etc/sysctl.d", "/run/sysctl.d"], "sysctl_dirs") == ["/etc/sysctl.d", "/run/sysctl.d"]
    with pytest.raises(OptionError, match=r"sysctl_dirs\[1\] must be an absolute path, not an empty string"):
        host_paths(["/etc/sysctl.d", ""], "sysctl_dirs")
    with pytest.raises(OptionError, match="must be a list of absolute paths, not str"):
        host_paths("/etc/sysctl.d", "sysctl_dirs")
